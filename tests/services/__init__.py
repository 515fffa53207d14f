"""Real services the tests run against (PostgreSQL here; S3 and haproxy beside it), each started by the
tests themselves on 127.0.0.1 with explicit ports, one per test session (per xdist worker).

The one rule they share (:func:`service_missing`): a service that cannot be started is a failure in CI
(``CI`` set, as ``.ci/run`` sets it), so that a broken image never passes by skipping; on a developer's
machine it is a skip that says what is missing.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required() -> bool:
    """Whether a missing service fails the tests (in CI) rather than skipping them."""
    return bool(os.environ.get("CI"))


def service_missing(service: str, reason: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) the test that needs ``service``, saying why it is not there."""
    if required():
        pytest.fail(f"{service} is required in CI (CI is set) but is not usable here: {reason}", pytrace=False)
    pytest.skip(f"{service} is not usable here: {reason}")
