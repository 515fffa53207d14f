"""On PYTHONPATH, this makes ``import torch`` fail as it does where torch is not installed (tests/test_rings.py)."""

import sys

sys.modules["torch"] = None  # type: ignore[assignment]  # the documented way to block an import
