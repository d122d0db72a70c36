"""python -m homeward.budget"""


def main() -> None:
    raise SystemExit("the budget service is not built yet")


if __name__ == "__main__":
    main()
