"""Real interpreter exits, signals, kill -9 and fork, each in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import python_script, read_json, read_jsonl, start_script
from .waiting import wait_for

pytestmark = pytest.mark.usefixtures("logger_impl")

RUN_DIR = ".dash/o/p/r"


def _rows(cwd: Path, metric: str = "train") -> list[dict]:
    return read_jsonl(cwd / RUN_DIR / "metrics" / metric / "data.jsonl")


def _wait_for_line(proc, prefix: str, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if line == "" and proc.poll() is not None:
            break
    raise AssertionError(f"child never printed {prefix!r}; stderr: {proc.stderr.read()}")


def test_interpreter_exit_without_closing_writes_everything(tmp_path: Path) -> None:
    result = python_script("""
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        for i in range(20000):
            exp.metrics("train").log(loss=i * 0.1, step=i)
        exp.log("last words")
        # no complete(): atexit must flush and close
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path)
    assert [r["data"]["step"] for r in rows] == list(range(20000))
    assert read_jsonl(tmp_path / RUN_DIR / "logs.jsonl")[-1]["message"] == "last words"
    assert read_json(tmp_path / RUN_DIR / "experiment.json")["status"] == "COMPLETED"


def test_a_running_experiment_nobody_references_still_ends_at_exit(tmp_path: Path) -> None:
    result = python_script("""
        import gc
        from ml_dash import Experiment

        def train():
            exp = Experiment(prefix="o/p/r")
            exp.run.start()
            for i in range(1000):
                exp.metrics("train").log(step=i)

        train()  # returns without ending the run, and drops the Experiment
        gc.collect()
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["data"]["step"] for r in _rows(tmp_path)] == list(range(1000))
    assert read_json(tmp_path / RUN_DIR / "experiment.json")["status"] == "COMPLETED"


def test_uncaught_exception_flushes_and_marks_failed(tmp_path: Path) -> None:
    result = python_script("""
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        for i in range(5000):
            exp.metrics("train").log(step=i)
        raise RuntimeError("boom")
    """, tmp_path)
    assert result.returncode == 1 and "boom" in result.stderr
    assert len(_rows(tmp_path)) == 5000
    doc = read_json(tmp_path / RUN_DIR / "experiment.json")
    assert doc["status"] == "FAILED" and doc["status_reason"] == "RuntimeError: boom"  # the exception, not just "uncaught"


def test_uncaught_keyboard_interrupt_marks_cancelled(tmp_path: Path) -> None:
    result = python_script("""
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        exp.metrics("train").log(step=1)
        raise KeyboardInterrupt
    """, tmp_path)
    assert result.returncode != 0
    assert read_json(tmp_path / RUN_DIR / "experiment.json")["status"] == "CANCELLED"
    assert len(_rows(tmp_path)) == 1


def _assert_sigterm_ends_the_run(proc: subprocess.Popen, tmp_path: Path, rows: int) -> None:
    """Send SIGTERM once the child printed "logged": it dies by the signal, with ``rows`` rows on disk and
    the run CANCELLED for SIGTERM."""
    try:
        _wait_for_line(proc, "logged")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=40)
        assert proc.returncode == -signal.SIGTERM, stderr
    finally:
        proc.kill()
    assert len(_rows(tmp_path)) == rows
    doc = read_json(tmp_path / RUN_DIR / "experiment.json")
    assert doc["status"] == "CANCELLED" and doc["status_reason"] == "SIGTERM"


def test_row9_sigterm_flushes_then_dies_by_the_signal(tmp_path: Path) -> None:
    proc = start_script("""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        for i in range(30000):
            exp.metrics("train").log(step=i)
        print("logged", flush=True)
        for _ in range(600):  # short sleeps: see start_script in conftest.py
            time.sleep(0.1)
    """, tmp_path)
    _assert_sigterm_ends_the_run(proc, tmp_path, rows=30000)


def test_row9_sigterm_is_taken_when_the_first_experiment_came_from_another_thread(tmp_path: Path) -> None:
    """The agent started on a worker thread (no signal handlers there); a run started later on the main
    thread still ends CANCELLED on SIGTERM, its rows written."""
    proc = start_script("""
        import threading, time
        from ml_dash import Experiment

        def side():
            with Experiment(prefix="o/p/side").run as side_exp:
                side_exp.log("from a thread")

        thread = threading.Thread(target=side)
        thread.start()
        thread.join()
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        for i in range(1000):
            exp.metrics("train").log(step=i)
        print("logged", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, tmp_path)
    _assert_sigterm_ends_the_run(proc, tmp_path, rows=1000)


def test_experiment_starts_no_thread_before_its_run_starts(tmp_path: Path) -> None:
    result = python_script("""
        import threading
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.metrics("train")
        before = threading.active_count()
        exp.run.start()
        print(before, threading.active_count() > before)
        exp.run.complete()
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True"]


def test_row9_sigterm_chains_to_the_previous_handler(tmp_path: Path) -> None:
    proc = start_script("""
        import signal, sys, time
        def handler(signum, frame):
            print("user handler ran", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        exp.metrics("train").log(step=1)
        print("ready", flush=True)
        for _ in range(600):  # short sleeps: see start_script in conftest.py
            time.sleep(0.1)
    """, tmp_path)
    try:
        _wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=40)
        assert "user handler ran" in stdout
        assert proc.returncode == 3, stderr
    finally:
        proc.kill()
    assert len(_rows(tmp_path)) == 1
    assert read_json(tmp_path / RUN_DIR / "experiment.json")["status"] == "CANCELLED"


def _blocked_signals(native_id: int) -> int:
    """The SigBlk mask of one of this process's threads, from /proc."""
    for line in Path(f"/proc/self/task/{native_id}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_agent_threads_leave_sigterm_and_sigint_to_the_main_thread(exp) -> None:
    # Linux may hand a process-directed SIGTERM to any thread that does not block it; CPython runs
    # the handler only when the main thread next executes bytecode, so a main thread sleeping in
    # time.sleep(60) would not see it for a minute (the flake this fixes was row 9 of the fault matrix).
    import threading

    exp.metrics("train").log(step=1)
    agent_threads = [t for t in threading.enumerate() if t.name.startswith(("ml-dash-agent", "ml-dash-io"))]
    assert len(agent_threads) >= 3
    for thread in agent_threads:
        mask = _blocked_signals(thread.native_id)
        assert mask >> (signal.SIGTERM - 1) & 1 and mask >> (signal.SIGINT - 1) & 1, thread.name
    assert not _blocked_signals(threading.main_thread().native_id) >> (signal.SIGTERM - 1) & 1


def _complete_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return f.read().count(b"\n")


@pytest.mark.parametrize("trial", range(3))
def test_row5_kill_9_loses_at_most_what_came_after_the_last_periodic_write(tmp_path: Path, trial: int) -> None:
    """No explicit flush: the agent's periodic write alone puts rows on disk; kill -9 then loses at most
    the rows logged after it, and what is on disk is a gap-free prefix of what was logged."""
    proc = start_script("""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        i = 0
        while True:
            for _ in range(2000):
                train.log(step=i, loss=i * 0.001)
                i += 1
            if i % 20000 == 0:
                print(f"logged {i}", flush=True)
            time.sleep(0.002)
    """, tmp_path)
    data = tmp_path / RUN_DIR / "metrics/train/data.jsonl"
    try:
        logged = 0
        while logged < 40000 + 20000 * trial:
            logged = int(_wait_for_line(proc, "logged").split()[1])
        deadline = time.monotonic() + 15
        while _complete_lines(data) < logged and time.monotonic() < deadline:  # the periodic write, not a flush
            time.sleep(0.05)
        assert _complete_lines(data) >= logged, "no periodic write put the logged rows on disk"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    text = data.read_text()
    complete = text[: text.rfind("\n") + 1] if not text.endswith("\n") else text
    rows = [json.loads(line) for line in complete.splitlines()]
    assert len(rows) >= logged
    assert [r["index"] for r in rows] == list(range(len(rows)))  # no gap, no duplicate: losses are a suffix
    assert [r["data"]["step"] for r in rows] == list(range(len(rows)))


def test_data_is_fsynced_periodically_without_a_flush(exp) -> None:
    """The durable point: fsync at least every ML_DASH_FSYNC_INTERVAL_S (1 s), with no explicit flush."""
    writer = exp._session.writer
    synced: list[int] = []  # the inodes of the files fsynced
    real = writer.fsync

    def recording(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    writer.fsync = recording
    exp.metrics("train").log(step=1)
    data = exp.directory / "metrics/train/data.jsonl"
    wait_for(lambda: data.exists() and data.stat().st_ino in synced, "a periodic fsync of the metric's file")


def test_row14_fork_after_start_does_not_deadlock_and_the_parent_loses_nothing(tmp_path: Path) -> None:
    result = python_script("""
        import os, sys, time
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        for i in range(1000):
            exp.metrics("train").log(step=i)
        pid = os.fork()
        if pid == 0:
            # child: the inherited run is the parent's; logging to it is switched off here
            for i in range(1000):
                exp.metrics("train").log(step=-1)
            child = Experiment(prefix="o/p/child")
            with child.run:
                for i in range(500):
                    child.metrics("train").log(step=i)
            os._exit(0)
        for i in range(1000, 2000):
            exp.metrics("train").log(step=i)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            sys.exit("child deadlocked")
        exp.run.complete()
        print("child exit", os.waitstatus_to_exitcode(status))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout
    assert [r["data"]["step"] for r in _rows(tmp_path)] == list(range(2000))
    child_rows = read_jsonl(tmp_path / ".dash/o/p/child/metrics/train/data.jsonl")
    assert [r["data"]["step"] for r in child_rows] == list(range(500))
    assert read_json(tmp_path / ".dash/o/p/child/experiment.json")["status"] == "COMPLETED"


def test_row23_a_forked_child_logging_into_its_parents_run_is_a_no_op_that_warns_once(tmp_path: Path) -> None:
    result = python_script("""
        import os, sys
        from ml_dash import Experiment
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        exp.metrics("train").log(step=0)
        pid = os.fork()
        if pid == 0:
            for i in range(1000):
                exp.metrics("train").log(step=-1)
                exp.metrics("new-in-child").log(step=-1)  # a stream the parent never had
                exp.log("from the child")
                exp.params.set(child=i)
            sys.stderr.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        exp.metrics("train").log(step=1)
        exp.run.complete()
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "a no-op in a forked child" in line]
    assert len(warnings) == 4  # once per stream (train, new-in-child, logs) and for the params, not per call
    assert [r["data"]["step"] for r in _rows(tmp_path)] == [0, 1]
    assert not (tmp_path / RUN_DIR / "metrics/new-in-child").exists()
    assert not (tmp_path / RUN_DIR / "parameters.json").exists()  # the child's params.set() changed nothing
    assert not (tmp_path / RUN_DIR / "logs.jsonl").exists() or read_jsonl(tmp_path / RUN_DIR / "logs.jsonl") == []


def test_ending_a_run_whose_disk_never_answers_is_bounded_by_its_deadline(tmp_path: Path) -> None:
    result = python_script("""
        import asyncio
        import ml_dash.agent.rundir as rundir
        from ml_dash import Experiment

        async def hung(self, *args, **kwargs):  # a disk that never completes a write
            await asyncio.sleep(3600)

        rundir.RunWriter.flush = hung
        rundir.RunWriter.close = hung
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        exp.metrics("train").log(step=0)
        print("complete returned", exp.run.complete(timeout_s=1))
    """, tmp_path, env={"ML_DASH_EXIT_TIMEOUT_S": "1"}, timeout=60)  # unbounded, this would hit the timeout
    assert "complete returned False" in result.stdout, result.stderr
    assert "still being written after 1.0 s" in result.stderr


def test_import_does_not_load_torch_numpy_or_the_http_stack(tmp_path: Path) -> None:
    result = python_script("""
        import sys
        import ml_dash
        print(sorted(m for m in ("torch", "numpy", "aiohttp") if m in sys.modules))
    """, tmp_path)
    assert result.stdout.strip() == "[]", result.stderr
