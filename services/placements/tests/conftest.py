import sys
from pathlib import Path

# The root pytest configuration imports test modules with importlib, which does not put this
# directory on sys.path; the shared fakes and builders live in placements_support.py beside it.
sys.path.insert(0, str(Path(__file__).parent))
