"""Fault matrix row 16: one writer per run directory, in one process and across processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_dash import Experiment, RunLockedError
from ml_dash._run.runlock import is_held
from ml_dash.format.layout import LOCK_FILE

from .conftest import python_script, read_json, read_jsonl, start_script


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    for _ in range(200):
        line = proc.stdout.readline()
        if line.startswith(word):
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"child never printed {word!r}: {proc.stderr.read()}")


def test_row16_a_second_experiment_in_the_process_is_refused_until_the_first_ends(workdir: Path) -> None:
    first = Experiment(prefix="a/b/c")
    first.run.start()
    first.metrics("train").log(step=0)
    second = Experiment(prefix="a/b/c")
    with pytest.raises(RunLockedError, match="another Experiment of this process") as refused:
        second.run.start()
    assert refused.value.holder["pid"] == os.getpid() and refused.value.holder["hostname"] == socket.gethostname()
    assert "since" in refused.value.holder
    first.metrics("train").log(step=1)  # the first one is unaffected
    first.run.complete()
    third = Experiment(prefix="a/b/c")  # the directory is free once the first run ended
    with third.run:
        third.metrics("train").log(step=2)
    rows = read_jsonl(first.directory / "metrics/train/data.jsonl")
    assert [(r["index"], r["data"]["step"]) for r in rows] == [(0, 0), (1, 1), (2, 2)]


def test_row16_a_new_experiment_ends_a_running_one_nobody_references_any_more(tmp_path: Path) -> None:
    """A notebook cell run again: the first Experiment is gone, so nothing could end its run but the
    new one, which does (COMPLETED, with a reason and a warning) and continues the directory."""
    result = python_script("""
        import json
        from ml_dash import Experiment, RunLockedError
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        exp.metrics("train").log(step=0)
        kept = Experiment(prefix="o/p/r")
        kept_started = "started"
        try:
            kept.run.start()  # the first is still referenced: refused as before
        except RunLockedError:
            kept_started = "refused"
        exp = Experiment(prefix="o/p/r")  # the cell again: the first Experiment is dropped
        exp.run.start()
        exp.metrics("train").log(step=1)
        exp.run.complete()
        print(json.dumps({"kept": kept_started}))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"kept": "refused"}
    assert "ending run o/p/r" in result.stderr and "no longer referenced" in result.stderr
    rows = read_jsonl(tmp_path / ".dash/o/p/r/metrics/train/data.jsonl")
    assert [(r["index"], r["data"]["step"]) for r in rows] == [(0, 0), (1, 1)]
    assert read_json(tmp_path / ".dash/o/p/r/experiment.json")["status"] == "COMPLETED"


def test_row16_a_second_process_gets_an_error_naming_the_holder_and_indices_never_repeat(workdir: Path) -> None:
    holder = start_script("""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/c")
        exp.run.start()
        for i in range(20000):
            exp.metrics("train").log(step=i)
        exp.flush()
        print("holding", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, workdir)
    try:
        _wait_for(holder, "holding")
        second = python_script("""
            from ml_dash import Experiment, RunLockedError
            exp = Experiment(prefix="a/b/c")
            try:
                exp.run.start()
            except RunLockedError as exc:
                print("refused:", exc)
                print("holder:", exc.holder["pid"])
            else:
                print("started")
        """, workdir)
        assert f"holder: {holder.pid}" in second.stdout, second.stdout + second.stderr
        assert "held by another process" in second.stdout and f"pid {holder.pid}" in second.stdout
        assert socket.gethostname() in second.stdout and "Wait for it to end" in second.stdout
        os.kill(holder.pid, signal.SIGKILL)  # a restarted job: the old one dies, the kernel frees the lock
        holder.communicate(timeout=10)
        again = Experiment(prefix="a/b/c")
        with again.run:
            for i in range(20000, 20010):
                again.metrics("train").log(step=i)
    finally:
        holder.kill()
    rows = read_jsonl(workdir / ".dash/a/b/c/metrics/train/data.jsonl")
    assert [r["index"] for r in rows] == list(range(20010))  # no index twice, none missing
    assert [r["data"]["step"] for r in rows] == list(range(20010))


def test_row16_two_processes_started_together_one_writes_the_other_is_refused(workdir: Path) -> None:
    script = """
        import sys, time
        from ml_dash import Experiment, RunLockedError
        exp = Experiment(prefix="a/b/c")
        try:
            exp.run.start()
        except RunLockedError:
            print("refused")
            sys.exit(0)
        for i in range(20000):
            exp.metrics("train").log(step=i, writer=sys.argv[1] if len(sys.argv) > 1 else "x")
        time.sleep(0.5)  # hold the run while the other one tries
        exp.run.complete()
        print("wrote")
    """
    procs = [start_script(script, workdir) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert sorted(o.strip() for o in outputs) in (["refused", "wrote"], ["wrote", "wrote"])
    rows = read_jsonl(workdir / ".dash/a/b/c/metrics/train/data.jsonl")
    assert [r["index"] for r in rows] == list(range(len(rows)))  # one after the other, never interleaved


def test_row16_a_forked_child_does_not_inherit_the_lock(workdir: Path) -> None:
    result = python_script("""
        import os, sys
        from ml_dash import Experiment, RunLockedError
        exp = Experiment(prefix="a/b/c")
        exp.run.start()
        pid = os.fork()
        if pid == 0:
            try:
                Experiment(prefix="a/b/c").run.start()
                print("child wrote the parent's run")
            except RunLockedError as exc:
                print("child refused, held by", exc.holder["pid"])
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        exp.metrics("train").log(step=1)
        exp.run.complete()
        print("parent", os.getpid())
    """, workdir)
    parent = result.stdout.split("parent ")[1].strip()
    assert f"child refused, held by {parent}" in result.stdout, result.stdout + result.stderr


def test_row16_check_reports_duplicate_and_missing_indices(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(10):
            exp.metrics("train").log(step=i)
    data = exp.directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:6] + lines[2:5] + lines[7:]))  # as two writers left it: 2..4 twice, 6 gone
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "check"], cwd=workdir, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert "3 duplicate indices (first 2)" in out.stdout and "two writers" in out.stdout
    assert "1 missing indices (first 6)" in out.stdout


def test_row16_sync_skips_a_run_that_is_still_being_written(workdir: Path, server) -> None:
    exp = Experiment(prefix="alice/p/r")
    exp.run.start()
    exp.metrics("train").log(step=0)
    exp.flush()
    try:
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", server.url, "--api-key",
                              server.key("alice")], cwd=workdir, capture_output=True, text=True, timeout=60)
    finally:
        exp.run.complete()
    assert out.returncode == 1 and f"still being written by pid {os.getpid()}" in out.stdout
    assert read_json(exp.directory / "experiment.json")["status"] == "COMPLETED"  # not marked CRASHED
    holder = json.loads((exp.directory / ".ml-dash.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["prefix"] == "alice/p/r"


@pytest.mark.parametrize("lock", ["ofd", "flock"])
def test_row16_the_kernel_lock_is_the_parents_alone_a_child_living_on_does_not_keep_it(workdir: Path,
                                                                                       lock: str) -> None:
    """The child inherits the lock file's descriptor, and an OFD lock or a flock lives as long as any copy
    of it: the child closes its copies at the fork, so a data-loader worker that outlives a killed trainer
    does not keep the run locked. The flock fallback (macOS, old kernels) gives the same guarantees: a
    second writer is refused after the holder copied its directory, and starts once the holder is killed."""
    prelude = "import ml_dash._run.runlock as runlock; runlock._ofd = False\n" if lock == "flock" else ""
    trainer = start_script(prelude + """
import os, shutil, time
from ml_dash import Experiment
exp = Experiment(prefix="a/b/c")
exp.run.start()
exp.metrics("train").log(step=0)
exp.flush()
shutil.copytree(exp.directory, "backup")
child = os.fork()
if child == 0:  # a worker that lives on
    for _ in range(600):
        time.sleep(0.1)
    os._exit(0)
print("child", child, flush=True)
for _ in range(600):
    time.sleep(0.1)
""", workdir)
    child = 0
    try:
        line = trainer.stdout.readline()
        assert line.startswith("child"), trainer.stderr.read()
        child = int(line.split()[1])
        refused = python_script(prelude + textwrap.dedent(SECOND_WRITER), workdir)
        assert f"refused, held by {trainer.pid}" in refused.stdout, refused.stdout + refused.stderr
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=10)  # (not communicate: the worker still holds the pipes)
        os.kill(child, 0)  # the worker is still alive
        later = python_script(prelude + textwrap.dedent(SECOND_WRITER), workdir)
        assert "second writer wrote" in later.stdout, later.stdout + later.stderr
    finally:
        trainer.kill()
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
def _copy_tree(directory: Path, elsewhere: Path) -> None:
    shutil.copytree(directory, elsewhere / "backup")


def _archive(directory: Path, elsewhere: Path) -> None:
    with tarfile.open(elsewhere / "backup.tar.gz", "w:gz") as tar:
        tar.add(directory, arcname="run")


def _open_every_file(directory: Path, elsewhere: Path) -> None:
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                f.read(1)


HOLDER_TOUCHES: dict[str, Callable[[Path, Path], None]] = {
    "copytree": _copy_tree, "tarfile": _archive, "walk_and_open": _open_every_file,
}

SECOND_WRITER = """
    from ml_dash import Experiment, RunLockedError
    exp = Experiment(prefix="a/b/c")
    try:
        exp.run.start()
    except RunLockedError as exc:
        print("refused, held by", exc.holder["pid"])
    else:
        for i in range(1000):
            exp.metrics("train").log(step=-1)
        exp.run.complete()
        print("second writer wrote")
"""


@pytest.mark.parametrize("second", ["another_process", "this_process"])
@pytest.mark.parametrize("touch", sorted(HOLDER_TOUCHES))
def test_row16_the_holder_reading_copying_or_archiving_its_directory_keeps_the_lock(
        workdir: Path, touch: str, second: str) -> None:
    """Closing a descriptor of the lock file (copytree, tar, opening every file) dropped a POSIX lockf
    lock, and a second process then wrote every index again."""
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    for i in range(1000):
        exp.metrics("train").log(step=i)
    exp.flush()
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    HOLDER_TOUCHES[touch](exp.directory, elsewhere)
    try:
        if second == "another_process":
            result = python_script(SECOND_WRITER, workdir)
            assert f"refused, held by {os.getpid()}" in result.stdout, result.stdout + result.stderr
        else:
            with pytest.raises(RunLockedError, match="another Experiment of this process"):
                Experiment(prefix="a/b/c").run.start()
        assert is_held(exp.directory) is True
        for i in range(1000, 1010):
            exp.metrics("train").log(step=i)
    finally:
        exp.run.complete()
    rows = read_jsonl(exp.directory / "metrics/train/data.jsonl")
    assert [r["index"] for r in rows] == list(range(1010))  # no index twice
    assert [r["data"]["step"] for r in rows] == list(range(1010))
    assert is_held(exp.directory) is False


def test_row16_the_holder_keeps_the_lock_while_a_forked_child_reads_the_directory_and_exits(workdir: Path) -> None:
    """The child closes its copies of the lock file's descriptor at the fork, and more as it copies the
    directory: none of that lets the parent's lock go."""
    holder = start_script("""
        import os, shutil, time
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/c")
        exp.run.start()
        exp.metrics("train").log(step=0)
        exp.flush()
        pid = os.fork()
        if pid == 0:
            try:
                shutil.copytree(exp.directory, "child-backup")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        print("child done", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, workdir)
    try:
        _wait_for(holder, "child done")
        assert (workdir / "child-backup/.ml-dash.lock").exists()
        result = python_script(SECOND_WRITER, workdir)
        assert f"refused, held by {holder.pid}" in result.stdout, result.stdout + result.stderr
    finally:
        holder.kill()
        holder.communicate(timeout=10)


def test_row16_an_older_ml_dash_holding_a_lockf_lock_and_this_one_exclude_each_other(workdir: Path) -> None:
    """Open-file-description locks conflict with POSIX record locks: a job still running an ml-dash that
    locked with lockf keeps this one out, and the other way round."""
    directory = workdir / ".dash/a/b/c"
    directory.mkdir(parents=True)
    old = start_script("""
        import fcntl, json, os, time
        fd = os.open(".dash/a/b/c/.ml-dash.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "hostname": "old"}).encode())
        print("holding", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, workdir)
    try:
        _wait_for(old, "holding")
        assert is_held(directory) is True
        with pytest.raises(RunLockedError, match="held by another process") as refused:
            Experiment(prefix="a/b/c").run.start()
        assert refused.value.holder["pid"] == old.pid
    finally:
        old.kill()
        old.communicate(timeout=10)
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    try:
        older = python_script("""
            import fcntl, os
            fd = os.open(".dash/a/b/c/.ml-dash.lock", os.O_RDWR)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                print("the old code took it")
            except OSError:
                print("the old code was refused")
        """, workdir)
        assert "the old code was refused" in older.stdout, older.stdout + older.stderr
    finally:
        exp.run.complete()


def test_row16_asking_whether_a_run_is_held_never_takes_its_lock(workdir: Path) -> None:
    holder = start_script("""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/c")
        exp.run.start()
        print("holding", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, workdir)
    try:
        _wait_for(holder, "holding")
        assert is_held(workdir / ".dash/a/b/c") is True
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=10)
    directory = workdir / ".dash/a/b/c"
    assert is_held(directory) is False
    exp = Experiment(prefix="a/b/c")  # the question left nothing behind
    with exp.run:
        assert is_held(directory) is True


def test_row16_a_start_that_fails_on_a_full_disk_leaves_the_directory_free(workdir: Path) -> None:
    """Writing who holds the lock (or experiment.json) can fail on a full disk: the start fails, and the
    lock taken for it is not left behind to refuse the next start of this process or of another."""
    result = python_script("""
        import resource, signal
        from ml_dash import Experiment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # no file can grow
        try:
            Experiment(prefix="a/b/c").run.start()
            print("started on a full disk")
        except OSError as exc:
            print("start failed:", exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
        exp = Experiment(prefix="a/b/c")
        exp.run.start()
        exp.metrics("train").log(step=0)
        exp.run.complete()
        print("started again")
    """, workdir)
    assert "start failed" in result.stdout and "started again" in result.stdout, result.stdout + result.stderr
    assert "second writer wrote" in python_script(SECOND_WRITER, workdir).stdout


# -- the lock file itself: deleted, replaced, planted, read-locked by another account ------------------

HOLDER_UNTIL_STDIN = """
    import json, logging, sys
    from ml_dash import Experiment
    logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(message)s", stream=sys.stdout)
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    for i in range(100):
        exp.metrics("train").log(step=i)
    exp.flush()
    print("holding", flush=True)
    sys.stdin.readline()  # the test's go-ahead to go on and end
    for i in range(100, 200):
        exp.metrics("train").log(step=i)
    print("completed", exp.run.complete(), flush=True)
    print("stats", json.dumps(exp.stats()["lock"]), flush=True)
"""


def _start_with_stdin(code: str, cwd: Path) -> subprocess.Popen:
    """Like start_script, with a stdin to tell the child when to go on."""
    prologue = "import faulthandler; faulthandler.dump_traceback_later(110, exit=True)\n"
    return subprocess.Popen([sys.executable, "-c", prologue + textwrap.dedent(code)], cwd=cwd,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _tar_backup_restored(directory: Path) -> None:
    """A backup of the run restored into its directory while it runs (GNU tar replaces each file)."""
    backup = directory.parent / "backup.tar"
    subprocess.run(["tar", "cf", str(backup), "-C", str(directory), "."], check=True)
    subprocess.run(["tar", "xf", str(backup), "-C", str(directory)], check=True)


def _renamed_over(directory: Path) -> None:
    copy = directory.parent / "lock-copy"
    shutil.copy(directory / ".ml-dash.lock", copy)
    os.replace(copy, directory / ".ml-dash.lock")


LOCK_FILE_FATES: dict[str, Callable[[Path], None]] = {
    "deleted": lambda d: os.unlink(d / ".ml-dash.lock"),
    "replaced": _renamed_over,
    "restored_by_tar": _tar_backup_restored,
}


@pytest.mark.parametrize("fate", sorted(LOCK_FILE_FATES))
def test_row16_a_lock_file_deleted_or_replaced_under_a_live_run_is_locked_again(workdir: Path, fate: str) -> None:
    """The holder locked the old inode: the file now at the path is new and unlocked. The holder notices on
    its next durable pass (about a second), locks it again and says so; a second writer and `ml-dash sync`
    started after that are refused, and the run is never marked CRASHED while it runs."""
    holder = _start_with_stdin(HOLDER_UNTIL_STDIN, workdir)
    directory = workdir / ".dash/a/b/c"
    try:
        _wait_for(holder, "holding")
        before = os.stat(directory / ".ml-dash.lock").st_ino
        LOCK_FILE_FATES[fate](directory)
        if fate != "deleted":
            assert os.stat(directory / ".ml-dash.lock").st_ino != before  # the case under test: a new inode
        _wait_for(holder, "LOG WARNING ml-dash: the lock file")  # the holder's "locked again"
        assert is_held(directory)
        second = python_script(SECOND_WRITER, workdir)
        assert f"refused, held by {holder.pid}" in second.stdout, second.stdout + second.stderr
        sync = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(directory), "--remote",
                               "http://127.0.0.1:9", "--timeout", "3"], cwd=workdir, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "ML_DASH_API_KEY": "k"})
        assert "still being written" in sync.stdout, sync.stdout + sync.stderr
        assert read_json(directory / "experiment.json")["status"] == "RUNNING"
        holder.stdin.write("go\n")
        holder.stdin.flush()
        _wait_for(holder, "completed True")
        stats = json.loads(holder.stdout.readline().split(" ", 1)[1])
        assert stats == {"relocked": 1, "lost_to_another": 0}
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert read_json(directory / "experiment.json")["status"] == "COMPLETED"
    indices = [r["index"] for r in read_jsonl(directory / "metrics/train/data.jsonl")]
    assert indices == list(range(len(indices)))  # one writer: no index twice
    if fate != "restored_by_tar":  # tar replaced data.jsonl too: the holder appends to the file it opened
        assert len(indices) == 200


def test_row16_a_second_writer_that_won_the_replaced_lock_file_is_reported_loudly(workdir: Path) -> None:
    """If a second writer locks the new file before the holder looks again, both write: the holder says so
    as an error naming the other writer, and counts it. (A writer of this version waits for the holder's
    re-lock, test_lock_window.py; one that does not, an older one or one whose holder stalls past the wait,
    is what this one plays.)"""
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    try:
        os.unlink(exp.directory / ".ml-dash.lock")
        other = _start_with_stdin("""
            import sys
            from pathlib import Path
            from ml_dash._run import runlock
            runlock.RELOCK_WAIT_S = 0  # does not wait for the holder to lock the new file
            lock = runlock.RunLock.acquire(Path(".dash/a/b/c"), "a/b/c")
            print("holding", flush=True)
            sys.stdin.readline()
        """, workdir)
        try:
            _wait_for(other, "holding")
            with _captured_errors() as errors:
                exp.flush()  # a durable pass: the holder looks at its lock file
            assert exp.stats()["lock"] == {"relocked": 0, "lost_to_another": 1}
            assert any("TWO WRITERS" in e and f"pid {other.pid}" in e for e in errors), errors
        finally:
            other.kill()
            other.communicate(timeout=30)
        exp.flush()  # the other one has ended: the file is locked again
        assert exp.stats()["lock"] == {"relocked": 1, "lost_to_another": 1}
    finally:
        exp.run.complete()


class _captured_errors:
    def __enter__(self) -> list[str]:
        import logging

        self.messages: list[str] = []
        self.handler = logging.Handler(logging.ERROR)
        self.handler.emit = lambda record: self.messages.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("ml_dash").addHandler(self.handler)
        return self.messages

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger("ml_dash").removeHandler(self.handler)


@pytest.mark.parametrize("planted", ["symlink", "directory", "fifo"])
def test_row16_a_lock_path_that_is_not_a_regular_file_is_refused_by_name(workdir: Path, planted: str) -> None:
    """A symlink planted at .ml-dash.lock must not have the run truncate and write its target; a directory
    or FIFO there is refused with an error naming the path, not a raw IsADirectoryError or a hang."""
    directory = workdir / ".dash/a/b/c"
    directory.mkdir(parents=True)
    victim = workdir / "victim.txt"
    victim.write_text("precious\n")
    lock = directory / ".ml-dash.lock"
    if planted == "symlink":
        os.symlink(victim, lock)
    elif planted == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    with pytest.raises(RunLockedError, match=r"lock file .*\.ml-dash\.lock is") as refused:
        Experiment(prefix="a/b/c").run.start()
    assert str(directory) in str(refused.value) and "Remove it" in str(refused.value)
    assert victim.read_text() == "precious\n"
    assert not is_held(directory)


def test_row16_the_lock_file_is_private_and_a_foreign_lock_is_not_blamed_on_a_dead_holder(workdir: Path) -> None:
    """New lock files are 0600 (another account cannot open them to hold a lock). If something else holds a
    lock on the file (an older 0644 file, a backup tool), the refusal says the recorded holder has ended
    instead of naming its dead pid as the holder."""
    fcntl = pytest.importorskip("fcntl")
    with Experiment(prefix="a/b/c").run as run:
        lock = run._session.directory / ".ml-dash.lock"
        assert (os.stat(lock).st_mode & 0o777) == 0o600
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads(lock.read_text())
    lock.write_text(json.dumps({**record, "pid": int(dead.stdout)}))
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH) if not hasattr(fcntl, "F_OFD_SETLK") else fcntl.fcntl(
            fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
        with pytest.raises(RunLockedError) as refused:
            Experiment(prefix="a/b/c").run.start()
    finally:
        os.close(fd)
    message = str(refused.value)
    assert "not by the writer its lock file names" in message and "which has ended" in message, message
    assert "held by another process" not in message


def test_row16_a_start_that_fails_on_a_full_disk_names_the_run_and_what_failed(workdir: Path) -> None:
    result = python_script("""
        import resource, signal
        from ml_dash import Experiment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # no file can grow
        try:
            Experiment(prefix="a/b/c").run.start()
        except OSError as exc:
            print("errno", exc.errno, "message:", exc)
    """, workdir)
    assert "errno 27 message: [Errno 27] cannot start run 'a/b/c' in " in result.stdout, result.stdout + result.stderr
    assert ".dash/a/b/c" in result.stdout and "full" in result.stdout and "not locked" in result.stdout


@pytest.mark.parametrize("impl", ["native", "python"])
@pytest.mark.parametrize("handle", ["metrics", "logs", "params", "files"])
def test_row16_a_live_handle_keeps_its_experiment_referenced(workdir: Path, impl: str, handle: str) -> None:
    """A training loop's `train = exp.metrics("train")` (or exp.logs, exp.params, a files scope) outliving
    `exp` keeps the run referenced: a new Experiment on the directory is refused instead of ending the run
    under the handle, and the handle keeps logging."""
    result = python_script(f"""
        import gc
        from ml_dash import Experiment, RunLockedError
        exp = Experiment(prefix="a/b/c")
        exp.run.start()
        kept = {{"metrics": exp.metrics("train"), "logs": exp.logs, "params": exp.params,
                 "files": exp.files("f")}}[{handle!r}]
        train = None if {handle!r} != "metrics" else kept
        del exp
        gc.collect()
        try:
            Experiment(prefix="a/b/c").run.start()
            print("second started")
        except RunLockedError as exc:
            print("refused:", exc)
        {{"metrics": lambda: kept.log(step=1), "logs": lambda: kept.info("still here"),
          "params": lambda: kept.set(a=1), "files": lambda: kept.save_text("x", to="x.txt")}}[{handle!r}]()
        print("handle still logs")
    """, workdir, env={"ML_DASH_PURE_PYTHON": "1"} if impl == "python" else None)
    assert "refused:" in result.stdout and "handle still logs" in result.stdout, result.stdout + result.stderr
    assert "exp.metrics(...)" in result.stdout


def test_row16_a_program_the_writer_starts_does_not_hold_its_lock(workdir: Path) -> None:
    """A run's lock file is opened close-on-exec: a program the writer starts (os.system, a subprocess
    that keeps the parent's descriptors) holds no copy of it, so it cannot keep the run locked after the
    writer crashed."""
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    try:
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
        try:
            held = [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.pid}/fd")]
        finally:
            child.kill()
            child.wait(timeout=10)
        lock = os.path.realpath(exp.directory / LOCK_FILE)
        assert os.path.exists(lock) and lock not in held, held
    finally:
        exp.run.complete()


@pytest.mark.parametrize("record", [b"", b"\xff{not a record"])
def test_row16_a_holder_that_has_not_recorded_itself_yet_is_refused_as_a_live_holder(workdir: Path,
                                                                                    record: bytes) -> None:
    """Between taking the lock and writing its record a writer's lock file is empty (or, on a full disk,
    stays so; or half written, damaged): a second writer is refused as by a holder that may be alive,
    naming what it cannot tell."""
    directory = workdir / ".dash" / "a" / "b" / "c"
    holder = start_script(f"""
        import os, sys
        from pathlib import Path
        from ml_dash._run.runlock import _lock_file
        directory = Path({str(directory)!r})
        directory.mkdir(parents=True)
        fd = _lock_file(directory)  # locked, no record written
        os.pwrite(fd, {record!r}, 0)
        print("locked", flush=True)
        sys.stdin.readline()
    """, workdir)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as refused:
            Experiment(prefix="a/b/c").run.start()
        assert "is held by another process: pid ? on ?" in str(refused.value), str(refused.value)
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_a_recorded_writer_of_another_host_may_be_alive_whatever_pid_ends_here() -> None:
    """A pid says nothing across hosts (a run directory on a shared file system): a writer recorded on
    another host is never judged ended from this host's processes, however its name sorts."""
    from ml_dash._run.runlock import _may_be_alive

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)  # a pid that has ended here
    here = socket.gethostname()
    assert _may_be_alive({"pid": gone.pid, "hostname": here}) is False
    for other in ("0-sorts-first", "~sorts-last", here + "-other"):
        assert _may_be_alive({"pid": gone.pid, "hostname": other}) is True, other
    living = subprocess.Popen(["sleep", "30"])
    try:  # asked, not signalled: the check sends no signal a process would act on
        assert _may_be_alive({"pid": living.pid, "hostname": here}) is True
        time.sleep(0.2)
        assert living.poll() is None, f"the living writer ended: {living.returncode}"
    finally:
        living.kill()
        living.wait(timeout=10)
