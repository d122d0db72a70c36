"""python -m homeward.budget [check | position | accrue | serve]"""

from homeward.budget.entrypoints.cli import main

if __name__ == "__main__":
    main()
