"""The order the suite runs in: the long tests first, so that the workers of ``-n auto`` end together.

pytest-randomly shuffles the tests (modules, then the tests of each); this keeps that order within each
class of test and puts the classes in the order of their usual length: ``slow`` scenarios (15 s to a
minute and more), then those that start processes or a browser (one to a few seconds each), then ``unit``
tests (milliseconds). And where the command line says nothing, xdist hands a worker one test at a time
(``--maxschedchunk 1``) instead of an eighth of the suite at once: a worker that is free takes the next
test, so the last ones taken are short, not a minute-long scenario begun while the other worker had
nothing left to do (that tail was a minute or more of a whole run on 2 cores).

By class, not by a file of measured durations: deterministic for a given ``--randomly-seed``, nothing to
keep up to date, and a new test lands in the right place by its markers (tests/rings.py).

``-n auto`` starts two workers per core of xdist's count (:func:`auto_workers`): more than half of a whole
run is waiting, not computing (the ``slow`` scenarios pace a producer, throttle a link, wait out a
Retry-After; the others wait on servers starting and on polls), and a worker that waits holds its core
idle. Measured on 2 cores (docs/development.md): 3 workers 418 s, 4 workers 379 s, 5 workers 391 s.
``PYTEST_XDIST_AUTO_NUM_WORKERS`` and an explicit ``-n N`` still decide, as xdist documents.
"""

from __future__ import annotations

import pytest


def run_order(item: pytest.Item) -> int:
    """The class of ``item`` as a rank: 0 for a slow test, 1 for one that starts processes or a browser,
    2 for a unit test."""
    if item.get_closest_marker("slow") is not None:
        return 0
    if item.get_closest_marker("unit") is not None:
        return 2
    return 1


def auto_workers(cores: int) -> int:
    """The workers of ``-n auto`` where xdist counts ``cores``: two per core, so that while a worker waits
    (on a server, a throttled link, a paced producer) its core still has a test to run."""
    return 2 * cores


def pytest_configure(config: pytest.Config) -> None:
    """One test at a time to a worker, unless the command line says otherwise (registered by
    tests/conftest.py)."""
    if hasattr(config.option, "maxschedchunk") and config.option.maxschedchunk is None:  # xdist, not told
        config.option.maxschedchunk = 1


@pytest.hookimpl(trylast=True)  # after the shuffle and after tests/rings.py has given every test its ring
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=run_order)  # stable: the shuffled order holds within each class
