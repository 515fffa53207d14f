"""The lock window: a run's lock file deleted (or replaced) while its writer lives.

The holder locks the file at the path again on its next durable pass; until then nothing is locked. Whoever
concludes "no writer is left" from "not locked" must not be fooled by that second: ``ml-dash ls`` (in-process
and as a command), ``ml-dash sync`` (which marked the run CRASHED and took it) and a second writer. A writer
that has really ended still reads as CRASHED. The holder here re-locks every 2 s (its durable pass), so the
window is wide enough to be met every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment, RunLockedError
from ml_dash._run.reading import summarise

from .conftest import read_json, start_script

HOLDER = """
import time
from ml_dash import Experiment
exp = Experiment(prefix="alice/p/live")
exp.run.start()
exp.metrics("train").log(step=0)
exp.flush()
print("started", flush=True)
for i in range(1, 600):  # 60 s at most
    exp.metrics("train").log(step=i)
    time.sleep(0.1)
exp.run.complete()
"""


def _holder(cwd: Path) -> tuple[subprocess.Popen, Path]:
    proc = start_script(HOLDER, cwd, env={"ML_DASH_FSYNC_INTERVAL_S": "2"})
    assert proc.stdout is not None
    for _ in range(50):
        line = proc.stdout.readline()
        if line.startswith("started") or (not line and proc.poll() is not None):
            break
    assert line.startswith("started"), proc.stderr.read() if proc.stderr else ""
    return proc, cwd / ".dash" / "alice" / "p" / "live"


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def _status_in_ls(cwd: Path) -> str:
    out = _cli(cwd, "ls", ".dash")
    line = next(line for line in out.stdout.splitlines() if line.startswith("alice/p/live"))
    return line.split()[1]


def _lose(lock: Path, how: str) -> None:
    """The holder's lock file deleted, or replaced by another file (a restore, a sync tool's rename): either
    way the file at the path is not locked until the holder locks it again."""
    if how == "deleted":
        lock.unlink(missing_ok=True)
    else:
        other = lock.with_name("restored.tmp")
        other.write_text("{}")
        os.replace(other, lock)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_row16_a_deleted_or_replaced_lock_file_of_a_living_run_never_makes_it_crashed_nor_lets_another_writer_in(
        workdir: Path, how: str) -> None:
    proc, directory = _holder(workdir)
    lock = directory / ".ml-dash.lock"
    try:
        _lose(lock, how)
        assert summarise(directory).status == "RUNNING"
        _lose(lock, how)
        assert _status_in_ls(workdir) == "RUNNING"
        _lose(lock, how)
        out = _cli(workdir, "sync", ".dash", "--remote", "http://127.0.0.1:9", "--user-name", "alice", "--timeout", "5")
        # skipped as still written; or, when the holder has just locked the file again but not yet recorded
        # itself in it (a replaced file's window), as held by another process: either way not taken
        assert (f"still being written by pid {proc.pid}" in out.stdout
                or "is held by another process" in out.stdout), out.stdout + out.stderr
        assert read_json(directory / "experiment.json")["status"] == "RUNNING"  # not marked CRASHED
        _lose(lock, how)
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            Experiment(prefix="alice/p/live").run.start()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "TWO WRITERS" not in err and "no longer protected" not in err, err
    assert read_json(directory / "experiment.json")["status"] in ("COMPLETED", "FAILED", "CANCELLED"), err


def test_row16_a_killed_writer_still_reads_as_crashed_with_or_without_its_lock_file(workdir: Path) -> None:
    proc, directory = _holder(workdir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert summarise(directory).status == "CRASHED"
    assert _status_in_ls(workdir) == "CRASHED"
    (directory / ".ml-dash.lock").unlink()  # just deleted, but its writer's pid is gone: no waiting for it
    assert summarise(directory).status == "CRASHED"
    assert _status_in_ls(workdir) == "CRASHED"
    out = _cli(workdir, "sync", ".dash", "--remote", "http://127.0.0.1:9", "--user-name", "alice", "--timeout", "2")
    assert "its process is gone; marked CRASHED" in out.stdout, out.stdout + out.stderr


def test_a_run_whose_recorded_pid_now_belongs_to_another_process_reads_as_crashed_after_the_window(
        workdir: Path) -> None:
    """The writer was killed and its pid reused by an unrelated process; the lock file is gone. The window
    waits for a re-lock that never comes, then the run reads as CRASHED, not RUNNING for as long as that
    other process lives."""
    proc, directory = _holder(workdir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        doc = read_json(directory / "experiment.json")
        assert doc["status"] == "RUNNING"
        (directory / "experiment.json").write_text(json.dumps({**doc, "pid": stranger.pid}))
        (directory / ".ml-dash.lock").unlink()
        assert summarise(directory).status == "CRASHED"
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
