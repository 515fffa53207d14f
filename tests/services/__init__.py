"""Real services the tests start themselves (tests/services/*.py), one per test session (per xdist worker).

A service that is not installed fails the tests that need it in CI (``CI`` set: .ci/run installs every
service) and skips them, with the reason, on a developer's machine.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """``what`` (a service the test needs, and how to install it) is not here: fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run every test", pytrace=False)
    pytest.skip(f"{what} is not installed")
