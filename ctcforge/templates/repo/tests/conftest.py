"""Makes the repo's own modules importable from tests/, however pytest is started."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
