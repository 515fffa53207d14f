"""Real services the tests start for themselves (PostgreSQL, SeaweedFS's S3, haproxy), each on
127.0.0.1 with explicit free ports, stopped by the PID it started.

A service that is not installed skips its tests on a developer's machine; where
``ML_DASH_REQUIRE_SERVICES=1`` (``.ci/run`` sets it) it fails them instead, so CI never passes by
skipping what it was meant to run."""

from __future__ import annotations

import os
import socket

import pytest


def missing(service: str, how: str) -> None:
    """Skip (or, where services are required, fail) the calling test: ``service`` is not here."""
    message = f"{service} is not installed here ({how})"
    if os.environ.get("ML_DASH_REQUIRE_SERVICES") == "1":
        pytest.fail(message + "; ML_DASH_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def free_port() -> int:
    """A port free on 127.0.0.1 now (a service given it binds it explicitly)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
