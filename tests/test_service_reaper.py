"""A test process killed with SIGKILL (no fixture teardown) leaves no PostgreSQL cluster or SeaweedFS
behind (tests/services/reaper.py): each service's reaper kills it, by the PID it recorded, and
removes its directory; a service stopped normally ends its reaper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from .services.reaper import _alive
from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def _start_then_die(code: str) -> tuple[int, Path]:
    """Run ``code`` (which starts a service and prints its PID and directory) in a process, then kill -9 it."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline().split()
        assert len(line) == 2, line
        pid, directory = int(line[0]), Path(line[1])
        assert _alive(pid) and directory.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return pid, directory


def test_a_postgresql_cluster_outlives_no_killed_test_process(request) -> None:
    request.getfixturevalue("postgres_cluster")  # skipped (or failed in CI) where PostgreSQL is missing
    pid, directory = _start_then_die("""
        from tests.services.postgres import PostgresCluster
        cluster = PostgresCluster.start()
        pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        print(pid, cluster.root, flush=True)
        import time; time.sleep(600)
    """)
    wait_for(lambda: not _alive(pid) and not directory.exists(), "the cluster stopped and its directory removed")


def test_seaweedfs_outlives_no_killed_test_process(request, tmp_path: Path) -> None:
    request.getfixturevalue("s3_service")  # skipped (or failed in CI) where weed is missing
    pid, directory = _start_then_die(f"""
        import random
        from pathlib import Path
        from tests.services.s3 import start, weed_binary
        proc, service = start(weed_binary(), Path({str(tmp_path)!r}), random.Random(1))
        print(proc.pid, Path({str(tmp_path)!r}) / "data", flush=True)
        import time; time.sleep(600)
    """)
    wait_for(lambda: not _alive(pid), "weed stopped")
    assert not directory.exists()
    assert os.path.isdir(tmp_path)  # only the service's own directory is removed
