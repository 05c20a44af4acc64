import sys
from pathlib import Path

# Make tests/harness.py importable as `harness`.
sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[2] / "shared"
