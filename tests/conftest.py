"""Shared fixtures: a clean working directory and environment, and subprocess helpers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from . import order, rings
from .backends import blob_url, storage_url  # noqa: F401  (every backend, for the backend tests: tests/backends.py)
from .browser import browser, tab  # noqa: F401  (the UI tests' fixtures)
from .fault_proxy import FaultProxy
from .rings import (  # noqa: F401  (the rings: every test unit, integration or browser, by rule; README "Set-up")
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
)
from .services.postgres import postgres_cluster, postgres_url  # noqa: F401  (PostgreSQL, tests/services)
from .services.s3 import s3_service  # noqa: F401  (SeaweedFS's S3, one per session: tests/services/s3.py)
from .sites import site  # noqa: F401  (a UI test against a real server and against ml-dash ui)

# Hypothesis: in CI the same examples every run (a fixed seed) and no example database; elsewhere its
# database lives in the user's cache, never in the tree.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", database=DirectoryBasedExampleDatabase(
    os.path.join(os.path.expanduser("~"), ".cache", "ml-dash", "hypothesis")))
settings.load_profile("ci" if os.environ.get("CI") else "dev")



@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: two workers per core of xdist's count (tests/order.py). Here, not in order.py:
    xdist asks before pytest_configure registers that. Its environment variable still wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own implementation reads it
    from xdist.plugin import pytest_xdist_auto_num_workers as cores

    return order.auto_workers(cores(config))


def pytest_configure(config: pytest.Config) -> None:
    rings.pytest_configure(config)
    config.pluginmanager.register(order, "ml-dash-run-order")  # the long tests first (tests/order.py)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say pytest-randomly's seed at the end, where a failure is read: its own header line is
    hidden by ``-q``, which the README's test command passes."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(f"random order seed: {seed} (replay this order with --randomly-seed={seed})")


# Bytecode: the suite starts many interpreters (servers, SDK scripts, commands). Where
# PYTHONDONTWRITEBYTECODE is set (as on this project's machines) each compiled every ml_dash module it imports from
# source again (a server start: 0.42 CPU-s against 0.36 from cached bytecode). The suite's processes, the
# workers included (started after this), write theirs beside the sources as Python does by default
# (``__pycache__/``, ignored by git). Not to a PYTHONPYCACHEPREFIX: there Python would also ignore the
# bytecode pip wrote for the installed packages and compile torch's again (140 MB, a slower run).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


# A run says on stderr where it goes (ml_dash/_run/announce.py): thousands of runs in the suite would bury
# its output in those lines, so the tests' processes, and the subprocesses they start, run quiet. The
# tests of that line unset it.
os.environ["ML_DASH_QUIET"] = "1"


# Capture (docs/capture.md) is on by default for users. The suite's runs are about other things and assert
# their streams, files and metadata exactly, so it is off here (subprocesses inherit this);
# tests/test_capture_*.py turn it on with the ``capture_on`` fixture.
CAPTURE_OFF = {"ML_DASH_CONSOLE": "0", "ML_DASH_SYSTEM_METRICS_INTERVAL_S": "0", "ML_DASH_PROVENANCE": "0"}
for _name, _value in CAPTURE_OFF.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture
def capture_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capture as a user gets it: every switch at its default (this process and its subprocesses)."""
    for name in CAPTURE_OFF:
        monkeypatch.delenv(name, raising=False)


ENV_VARS = [
    "ML_DASH_LOCAL_PATH", "ML_DASH_API_URL", "ML_DASH_API_KEY", "ML_DASH_USER_NAME", "ML_DASH_UI_TOKEN", "ML_DASH_DB",
    "DREAMLAKE_LOCAL_PATH", "DREAMLAKE_API_URL", "DREAMLAKE_API_KEY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_server_outlives_its_test() -> Iterator[None]:
    """A test that fails before it stops its servers would leave them running: kill what is left."""
    from . import server_process

    yield
    while server_process.STARTED:
        proc = server_process.STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture(params=["native", "python"])
def logger_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the C hot path of metrics (when built) and with the pure-Python one."""
    from ml_dash import metrics

    if request.param == "native":
        if metrics.MetricLogger is metrics.PyMetricLogger:
            if os.environ.get("ML_DASH_REQUIRE_C"):  # set by .ci/run: there, its absence is a failure
                pytest.fail("the C extension ml_dash._fastlog is not built (ML_DASH_REQUIRE_C is set)")
            pytest.skip("the C extension ml_dash._fastlog is not built here")
    else:
        monkeypatch.setattr(metrics, "MetricLogger", metrics.PyMetricLogger)
        monkeypatch.setenv("ML_DASH_PURE_PYTHON", "1")  # subprocesses too
    return request.param


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside an empty directory (so `.dash/` lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest):
    """A real ml-dash server process on 127.0.0.1 (port 0) taking API keys, stopped afterwards. With
    ``ML_DASH_TEST_DB=postgresql`` its metadata is in a fresh PostgreSQL database (tests/services/postgres.py):
    the tests that take this fixture then run against that backend."""
    from .server_process import Server

    extra: list[str] = []
    if os.environ.get("ML_DASH_TEST_DB") == "postgresql":
        extra = ["--db", request.getfixturevalue("postgres_url")]
    srv = Server(tmp_path / "server-data", *extra)
    yield srv
    srv.stop()


@pytest.fixture
def app_server(tmp_path: Path, request: pytest.FixtureRequest):
    """The server's app in this process (tests/app_server.py), for tests of a handler's logic: the same
    client as ``server``, started in milliseconds; stopped afterwards. ``ML_DASH_TEST_DB`` as for ``server``."""
    from .app_server import AppServer

    config: dict[str, Any] = {}
    if os.environ.get("ML_DASH_TEST_DB") == "postgresql":
        config["db"] = request.getfixturevalue("postgres_url")
    srv = AppServer(tmp_path / "server-data", **config)
    yield srv
    srv.stop()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL where connections are refused: a port held bound (never listening) for the test,
    so no other process can take it meanwhile (a port freed and reused would race)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture
def stable_url() -> Iterator[FaultProxy]:
    """One loopback URL for servers that come and go (down at first; restarted, or replaced by one with
    an empty store): a proxy whose upstream the test sets with ``attach``."""
    proxy = FaultProxy(upstream_port=0, mode="down")
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def caller_connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The addresses this (the test's) thread connects a socket to, from here on: whether SDK calls do
    network I/O on the caller's thread, seen without timing them. Other threads (the agent's) are free."""
    caller = threading.get_ident()
    seen: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock: socket.socket, address: Any) -> Any:
        if threading.get_ident() == caller:
            seen.append(address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        if threading.get_ident() == caller:
            seen.append(address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


@pytest.fixture
def exp(workdir: Path):
    """A running experiment ``a/b/c`` in the test's working directory, completed afterwards."""
    from ml_dash import Experiment

    experiment = Experiment(prefix="a/b/c")
    experiment.run.start()
    yield experiment
    if experiment.status.value == "RUNNING":
        experiment.run.complete()


def local_run(prefix: str, rows: int) -> Path:
    """A completed local-mode run of ``rows`` metric rows (step, loss) in the working directory."""
    from ml_dash import Experiment

    exp = Experiment(prefix=prefix)
    with exp.run:
        for i in range(rows):
            exp.metrics("train").log(step=i, loss=1.0 / (i + 1))
    return exp.directory


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Strict JSON-lines read: every line must be valid JSON (NaN tokens rejected)."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token} in {path}")

    lines = Path(path).read_text().splitlines()
    return [json.loads(line, parse_constant=reject) for line in lines]


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def python_script(code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
                  **popen: Any) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the same venv) and wait for it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def start_script(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter without waiting (for signals).

    The child dumps every thread's stack to stderr if it is still alive after
    25 s, so a hang shows where it hangs; collect its output with
    ``proc.communicate(timeout=...)``, which also drains the pipes.

    Children that wait for a signal sleep in 0.1 s steps, not ``time.sleep(60)``:
    CPython looks for signals when a sleep is interrupted, not before it starts
    (``pysleep`` in Modules/timemodule.c). A SIGTERM landing between the last
    bytecode and the sleep's syscall has its C handler run at once and its
    Python handler wait until the sleep ends; sending the signal right after
    the child prints hits that window about once in 30 runs on a loaded
    machine. A training loop's short sleeps bound the delay the same way.
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    prologue = "import faulthandler; faulthandler.dump_traceback_later(25, exit=True)\n"
    return subprocess.Popen([sys.executable, "-c", prologue + textwrap.dedent(code)], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
