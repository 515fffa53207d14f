"""Test data that takes seconds to make (a run of 100,000 streams, the wheel), made once per test run
however many xdist workers need it.

A module-scoped fixture is set up once in each worker that runs a test of its module, and the workers
of ``-n auto`` take tests one at a time (tests/order.py): both usually do. The first worker to ask makes
the data under a lock in the run's shared temporary directory; every caller gets a copy of its own, so
what its tests do to it stays theirs, as with a fixture of their own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

_MADE = ".made"  # written last: a maker that failed part-way leaves none, and the next one starts over


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A new directory holding what ``make(directory)`` puts in an empty one."""
    own = tmp_path_factory.mktemp(name)
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: nothing to share (the parent of its
        make(own)                                       # base directory is every run's, not this run's)
        return own
    shared = tmp_path_factory.getbasetemp().parent / f"made-once-{name}"  # the run's: shared by its workers
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if make() raises
        if not (shared / _MADE).exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            make(shared)
            (shared / _MADE).touch()
    shutil.copytree(shared, own, dirs_exist_ok=True, ignore=shutil.ignore_patterns(_MADE))
    return own
