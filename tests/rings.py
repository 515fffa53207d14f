"""The rings of the suite: every test is exactly one of ``unit``, ``integration`` or ``browser``, by rule.

* ``browser``: it drives the real Chromium (the ``browser``/``tab`` fixtures of tests/browser.py);
* ``integration``: it starts real processes: an ``ml-dash server`` or ``ml-dash ui`` (the ``server`` and
  ``site`` fixtures, :class:`~tests.server_process.Server`, :class:`~tests.server_process.LocalUi`), a
  service (``postgres_cluster``, ``postgres_url``, ``s3_service``: tests/services), a fresh interpreter (``python_script``, ``start_script``), any ``subprocess`` or ``multiprocessing``;
* ``unit``: everything else: in this process, on loopback at most (an in-process aiohttp app, the
  fault proxy's thread, a fake transport).

The rule reads what a test asks for: its fixtures, and the names its code uses, followed through the
helper functions and classes of the test modules (a helper that calls ``python_script`` makes every test
calling it ``integration``). An explicit ``@pytest.mark.unit``/``integration``/``browser`` on a test, its
class or its module (``pytestmark``) wins. ``slow`` is orthogonal and only ever set by hand.

The rule is checked while the tests run: a test classed ``unit`` that starts a process fails, naming what
it started, so a test the rule misreads cannot sit in the fast ring unnoticed (mark it explicitly).
A test that needs torch is marked ``needs_torch`` by the same reading (its code uses ``torch`` or ``nn``)
and is skipped, with the reason, where torch is not installed.
"""

from __future__ import annotations

import inspect
import multiprocessing.util
import os
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

RINGS = ("unit", "integration", "browser")
#: Fixtures that drive the browser, and fixtures that start real processes (their closure counts:
#: ``tab`` brings ``browser``; ``site`` brings ``server``).
BROWSER_FIXTURES = frozenset({"browser", "tab"})
PROCESS_FIXTURES = frozenset({"server", "site", "postgres_cluster", "postgres_url", "s3_service"}
                             # with ML_DASH_TEST_DB (conftest.py), the in-process app's database is a service
                             | ({"app_server"} if os.environ.get("ML_DASH_TEST_DB") else set()))
#: Names whose use in a test's code (or a helper it calls) starts a process.
PROCESS_NAMES = frozenset({"Server", "LocalUi", "python_script", "start_script", "subprocess", "Popen",
                           "multiprocessing", "ProcessPoolExecutor", "fork", "forkpty", "posix_spawn", "execv",
                           "execve", "spawnv"})
TORCH_NAMES = frozenset({"torch", "nn"})
#: Audit events (PEP 578) of a process being started; multiprocessing's spawn raises none (3.11), so
#: its one door, ``multiprocessing.util.spawnv_passfds``, is wrapped below.
PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec",
                            "os.spawn", "os.system", "os.startfile"})
_MAX_DEPTH = 6  # helpers calling helpers: deep enough for the suite, bounded for cycles


def pytest_configure(config: pytest.Config) -> None:
    """Start watching for processes (once per pytest process)."""
    _Watch.install()


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers given here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    classify(items)


def classify(items: list[pytest.Item]) -> None:
    """Give every item its ring (unless it carries one) and ``needs_torch`` where its code uses torch;
    a test marked with two rings stops the run, naming it (no test sits in two rings, or in none)."""
    cache: dict[int, frozenset[str]] = {}
    for item in items:
        names = _names_used(item, cache)
        if not rings_of(item):
            item.add_marker(_ring_by_rule(item, names))
        if names & TORCH_NAMES:
            item.add_marker(pytest.mark.needs_torch)
        if item.get_closest_marker("needs_torch") is not None and _torch_missing():
            item.add_marker(pytest.mark.skip(reason="needs torch, which is not installed "
                                                    "(pip install -e '.[dev]' or '.[torch]')"))
    wrong = [f"{item.nodeid}: {rings_of(item)}" for item in items if len(rings_of(item)) != 1]
    if wrong:
        raise pytest.UsageError("a test must be in exactly one of the rings unit, integration, browser:\n  "
                                + "\n  ".join(wrong))


def rings_of(item: pytest.Item) -> list[str]:
    """The ring markers an item carries (the closest of each), for the check that there is exactly one."""
    return [ring for ring in RINGS if item.get_closest_marker(ring) is not None]


def _ring_by_rule(item: pytest.Item, names: frozenset[str]) -> pytest.MarkDecorator:
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & BROWSER_FIXTURES:
        return pytest.mark.browser
    if fixtures & PROCESS_FIXTURES or names & PROCESS_NAMES:
        return pytest.mark.integration
    return pytest.mark.unit


def _torch_missing() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return True
    return False


def _names_used(item: pytest.Item, cache: dict[int, frozenset[str]]) -> frozenset[str]:
    """Every global or attribute name the test's code uses, through the test modules' helpers."""
    function = getattr(item, "function", None)
    if function is None:
        return frozenset()
    key = id(function)
    if key not in cache:
        names: set[str] = set()
        _collect(function, names, set(), 0)
        cache[key] = frozenset(names)
    names = set(cache[key])
    info = getattr(item, "_fixtureinfo", None)
    for definitions in info.name2fixturedefs.values() if info is not None else ():
        for definition in definitions:  # the test package's fixtures are the test's code too
            if _is_test_code(definition.func):
                _collect(definition.func, names, set(), 0)
    return frozenset(names)


def _collect(obj: Any, names: set[str], seen: set[int], depth: int) -> None:
    if id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, type):
        for member in vars(obj).values():
            if inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod, property)):
                _collect(getattr(member, "__func__", getattr(member, "fget", member)), names, seen, depth + 1)
        return
    function = inspect.unwrap(obj)
    code = getattr(function, "__code__", None)
    if code is None:
        return
    module_globals = getattr(function, "__globals__", {})
    for used in _code_names(code):
        names.add(used)
        target = module_globals.get(used)
        for found in target.values() if isinstance(target, dict) else (target,):  # a table of helpers too
            if _is_test_code(found):
                _collect(found, names, seen, depth + 1)


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:  # nested functions, lambdas, comprehensions
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _is_test_code(obj: Any) -> bool:
    """A function or class defined in this test package (not the library under test, not pytest)."""
    if not (inspect.isfunction(obj) or isinstance(obj, type)):
        return False
    return (getattr(obj, "__module__", "") or "").split(".")[0] == __name__.split(".")[0]


class _Watch:
    """Which processes the running test started: an audit hook (it cannot be removed, so it only looks
    at a flag) and the wrapped spawn of multiprocessing."""

    started: list[str] | None = None  # None: not inside a unit test
    lock = threading.Lock()
    installed = False

    @classmethod
    def install(cls) -> None:
        if cls.installed:
            return
        cls.installed = True
        sys.addaudithook(cls._audit)
        real_spawn = multiprocessing.util.spawnv_passfds

        def spawnv_passfds(path: Any, args: Any, passfds: Any) -> Any:
            cls._seen(f"multiprocessing spawn {list(args)[:4]}")
            return real_spawn(path, args, passfds)

        multiprocessing.util.spawnv_passfds = spawnv_passfds  # type: ignore[assignment]

    @classmethod
    def _audit(cls, event: str, args: tuple[Any, ...]) -> None:
        if cls.started is not None and event in PROCESS_EVENTS:
            cls._seen(f"{event} {args[:2]!r}"[:300])

    @classmethod
    def _seen(cls, what: str) -> None:
        with cls.lock:
            if cls.started is not None:
                cls.started.append(what)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Watch a unit test, from its setup to its teardown, for processes it starts."""
    watched = item.get_closest_marker("unit") is not None
    _Watch.started = [] if watched else None
    try:
        yield
    finally:
        _Watch.started = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    started = _Watch.started
    if started and report.when in ("call", "teardown") and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is in the unit ring but started a process: {started[0]} "
                           f"({len(started)} in all). Mark it @pytest.mark.integration (tests/rings.py).")
        started.clear()
