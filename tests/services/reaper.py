"""Stops a test service when the test process that started it dies without stopping it.

A pytest killed with SIGKILL (a CI timeout, an out-of-memory kill, ``kill -9`` of a worker) runs no
fixture teardown, and a service it started (PostgreSQL, which ``pg_ctl`` detaches, or ``weed``) would
live on, holding its ports and memory. Each service gets one of these, started beside it: it waits,
polling twice a second, while its parent (the test process) lives and the service is still there, and
returns as soon as the service is gone (stopped normally). If the parent dies first it kills the
service, by the PID the service itself recorded, and removes the service's directory.

    python reaper.py PARENT_PID PID_OR_PIDFILE DIRECTORY

``PARENT_PID`` is given, not read at the reaper's start: a parent killed before the reaper's
interpreter is up would otherwise leave it watching init.

``PID_OR_PIDFILE``: the service's PID, or the file whose first line holds it (PostgreSQL's
``postmaster.pid``, read when it is needed, so a restarted cluster is covered); the service counts as
stopped when that PID is gone (a PID) or when ``DIRECTORY`` is (a pidfile).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def _pid_of(target: str) -> int | None:
    if target.isdigit():
        return int(target)
    try:
        return int(Path(target).read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's (the postgres account's): it exists
        return True
    return True


def _running(target: str, directory: Path) -> bool:
    if not target.isdigit():
        return directory.exists()
    return _alive(int(target))


def watch(parent: int, target: str, directory: Path) -> bool:
    """Until the service stops (False) or ``parent`` dies (then the service is killed: True)."""
    while os.getppid() == parent:
        if not _running(target, directory):
            return False
        time.sleep(0.5)
    pid = _pid_of(target)
    if pid is not None and _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)  # its backends see their postmaster gone and exit too
        except ProcessLookupError:
            pass
    shutil.rmtree(directory, ignore_errors=True)
    return True


def start(target: str, directory: Path) -> subprocess.Popen:
    """A reaper for the service ``target`` (its PID, or its pidfile) living under ``directory``; in a
    session of its own, so a signal to the test's process group does not stop it before it acts."""
    return subprocess.Popen([sys.executable, __file__, str(os.getpid()), target, str(directory)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
