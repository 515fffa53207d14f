"""A PostgreSQL 15 cluster for the tests: one per test session (per xdist worker), a fresh database per test.

The cluster runs as the ``postgres`` account when the tests run as root (``initdb`` and ``pg_ctl`` refuse
root: ``subprocess`` switches user), else as the tests' own account. It listens on 127.0.0.1 only, on a
port picked free, with its socket in its own directory, ``fsync=off`` (nothing here tests the disk's
durability, and it makes a CREATE DATABASE cheap). A test's database is made with ``CREATE DATABASE ...
TEMPLATE template0`` and dropped at its end; the cluster is stopped with ``pg_ctl -m fast stop`` at the
session's end, or killed by its postmaster's pid if that fails.

Binaries: ``/usr/lib/postgresql/15/bin`` (Debian's ``postgresql-15``), or ``ML_DASH_PG_BIN``. Missing
binaries skip the tests, or fail them where ``ML_DASH_REQUIRE_SERVICES=1`` (``tests/services/__init__.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import free_port, missing, reaper

PG_BIN = Path(os.environ.get("ML_DASH_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: initdb, start and stop each finish in about a second on our machines; this bounds a hang
START_TIMEOUT_S = 60
#: The one role that logs in with a password over TCP (every other role is trusted): :meth:`password_url`.
PASSWORD_ROLE = "ml_dash_password"


class PostgresCluster:
    """A running cluster; :meth:`new_database` gives the URL of a fresh, empty database on it."""

    def __init__(self, root: Path, port: int, user: str | None) -> None:
        self.root, self.port, self.user = root, port, user
        self.data = root / "data"
        self._names = itertools.count()
        self._options = ""

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, durable: bool = False) -> PostgresCluster:
        """initdb and start a cluster in a new directory under the system's temporary directory (its
        parents must be traversable by ``postgres``, which a 0700 pytest directory is not). ``durable``:
        fsync and synchronous commits on, as in production (benchmarks); else off (tests)."""
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).is_file():
                raise FileNotFoundError(f"no {PG_BIN / tool} (apt-get install postgresql-15, or set ML_DASH_PG_BIN)")
        user = _cluster_user()
        root = Path(tempfile.mkdtemp(prefix="ml-dash-pg-"))
        root.chmod(0o711)
        try:
            for sub in ("data", "socket", "log"):
                (root / sub).mkdir(mode=0o700)
                if user is not None:
                    shutil.chown(root / sub, user, user)
            _run(user, PG_BIN / "initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
            hba = root / "data" / "pg_hba.conf"  # one role must give its password (the wrong-password tests)
            hba.write_text(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            last: Exception | None = None
            for _ in range(5):  # a port picked free may be taken before the server binds it: pick again
                port = free_port()
                options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root / 'socket'} -c max_connections=200"
                if not durable:
                    options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                try:
                    _run(user, PG_BIN / "pg_ctl", "-w", "-t", str(START_TIMEOUT_S), "-D", str(root / "data"),
                         "-l", str(root / "log" / "server.log"), "-o", options, "start")
                    cluster = cls(root, port, user)
                    cluster._options = options
                    reaper.start(str(root / "data" / "postmaster.pid"), root)  # if this process dies unstopped
                    return cluster
                except subprocess.CalledProcessError as exc:
                    last = RuntimeError(exc.stderr.decode(errors="replace").strip() or str(exc))
            raise RuntimeError(f"PostgreSQL did not start: {last}; its log: {_tail(root / 'log' / 'server.log')}")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster, by the pid it recorded: what ``pg_ctl -m fast stop``
        sends, without starting a process, since a session's fixtures end inside its last test, which
        tests/rings.py watches); SIGKILL if it is still there after :data:`START_TIMEOUT_S`."""
        pid = _postmaster_pid(self.data)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)
                deadline = time.monotonic() + START_TIMEOUT_S
                while time.monotonic() < deadline:  # bounded: its connections end, it checkpoints, it exits
                    os.kill(pid, 0)
                    time.sleep(0.05)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def password_url(self, database: str, password: str) -> str:
        """A URL that logs in as :data:`PASSWORD_ROLE` (whose password is ``right``) with ``password``."""
        self.admin(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PASSWORD_ROLE}') THEN "
                   f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD 'right'; END IF; END $$")
        return f"postgresql://{PASSWORD_ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def restart(self, stop_only: bool = False) -> None:
        """Stop the server (fast: connections are cut), and start it again on the same port unless ``stop_only``."""
        _run(self.user, PG_BIN / "pg_ctl", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data), "-m", "fast", "stop")
        if not stop_only:
            self.start_again()

    def start_again(self) -> None:
        _run(self.user, PG_BIN / "pg_ctl", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data),
             "-l", str(self.root / "log" / "server.log"), "-o", self._options, "start")

    def new_database(self) -> str:
        """The URL of a new, empty database (named ``t<worker><n>``)."""
        name = f"t_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def admin(self, sql: str) -> Any:
        """Run one statement as the superuser on the ``postgres`` database (from any thread, loop or none)."""
        import asyncpg

        async def run() -> Any:
            conn = await asyncpg.connect(self.admin_url)
            try:
                return await conn.fetch(sql)
            finally:
                await conn.close()

        return asyncio.run(run()) if not _in_loop() else _in_thread(run)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_thread(coroutine_fn: Any) -> Any:
    """``asyncio.run`` on a thread of its own, for a caller already inside an event loop."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_fn())).result(timeout=START_TIMEOUT_S)


def _cluster_user() -> str | None:
    """``postgres`` when running as root (initdb refuses root), else None: the current account."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise FileNotFoundError("running as root, and there is no postgres account to run the cluster as") from None
    return "postgres"


def _run(user: str | None, *command: Any) -> None:
    subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=START_TIMEOUT_S,
                   user=user, cwd="/")


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _tail(path: Path) -> str:
    try:
        return path.read_text()[-2000:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's cluster (per xdist worker): started on first use, stopped at the end."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        missing("PostgreSQL", "asyncpg is not installed (pip install -e '.[dev]')")
    try:
        cluster = PostgresCluster.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None)
        missing("PostgreSQL 15", f"{exc}{': ' + detail.decode(errors='replace') if detail else ''}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database for the test, dropped afterwards."""
    url = postgres_cluster.new_database()
    try:
        yield url
    finally:
        postgres_cluster.drop_database(url)
