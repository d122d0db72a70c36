import sys
from pathlib import Path

# The root pytest configuration imports test modules with importlib, which does not put this
# directory on sys.path; the front door's test helpers live in front_door_support.py beside it.
sys.path.insert(0, str(Path(__file__).parent))
