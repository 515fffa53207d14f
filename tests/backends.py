"""The storage and blob backends every backend test runs on, as fixtures (``storage_url``, ``blob_url``,
registered in conftest.py): the contract suite (test_storage_contract.py) and archival (test_archive.py)
take them, so adding a backend is one entry here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

#: name -> the URL of a fresh, empty store for a test (given the test's request, for the fixtures of a
#: service, and its directory)
STORAGE_URLS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": lambda request, tmp: f"sqlite://{tmp / 'contract.sqlite3'}",
    "postgresql": lambda request, tmp: request.getfixturevalue("postgres_url"),
}
#: name -> the URL of a fresh, empty blob store (a directory of the test's; a key prefix of its own in
#: the session's bucket)
BLOB_URLS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "file": lambda request, tmp: f"file://{tmp / 'blobs'}",
    "s3": lambda request, tmp: request.getfixturevalue("s3_service").fresh_url(),
}

#: the backends whose store is a service the tests start (a process): their cases are integration tests
SERVICE_BACKENDS = {"postgresql", "s3"}


def _backends(names: dict[str, Any]) -> list[Any]:
    return [pytest.param(name, marks=[pytest.mark.integration] if name in SERVICE_BACKENDS else [])
            for name in sorted(names)]


@pytest.fixture(params=_backends(STORAGE_URLS))
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return STORAGE_URLS[request.param](request, tmp_path)


@pytest.fixture(params=_backends(BLOB_URLS))
def blob_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "s3":  # the store finds its endpoint and credentials the AWS way
        for name, value in request.getfixturevalue("s3_service").env().items():
            monkeypatch.setenv(name, value)
    return BLOB_URLS[request.param](request, tmp_path)
