"""The trainer tests build their bags with test/data/bag_factory.py (shared with the dataset tests)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'data'))
