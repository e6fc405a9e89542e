"""Test-wide setup: tests/ on sys.path, so test helpers import as `helpers.<module>` under
--import-mode=importlib (helpers/ holds code that trains models or counts MACs with torch:
test fixtures and oracles that must not ship in the product)."""
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
