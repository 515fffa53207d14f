"""Fault matrix row 19: threads logging while the run ends. Every call that returned is on disk, every
call after the end raises RunStateError, and nothing else is there; checked row by row, many times."""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ml_dash import Experiment, RunStateError

from .conftest import python_script, read_jsonl

pytestmark = pytest.mark.usefixtures("logger_impl")

THREADS = 8
TRIALS = 12
#: Each thread logs until the run refuses it, pausing 0.1 ms per row (about 80,000 rows/s in all, so the
#: buffer never fills and no row is dropped), at most this many rows and this long.
ROWS_PER_THREAD = 1_000_000
SECONDS_PER_THREAD = 30.0


def _race(prefix: str, seed: int, log_kind: str) -> tuple[set, set, Experiment]:
    exp = Experiment(prefix=prefix)
    exp.run.start()
    returned: list[set] = [set() for _ in range(THREADS)]
    refused = [0] * THREADS
    go = threading.Barrier(THREADS + 1)

    def worker(t: int) -> None:
        train = exp.metrics("train")
        go.wait()
        stop_at = time.monotonic() + SECONDS_PER_THREAD
        for seq in range(ROWS_PER_THREAD):
            if time.monotonic() > stop_at:
                return
            time.sleep(0.0001)
            try:
                if log_kind == "metrics":
                    train.log(thread=t, seq=seq)
                else:
                    exp.log("line", thread=t, seq=seq)
            except RunStateError:
                refused[t] += 1
                return
            returned[t].add((t, seq))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    go.wait()
    time.sleep(random.Random(seed).uniform(0.001, 0.05))
    assert exp.run.complete(timeout_s=120) is True
    for thread in threads:
        thread.join(30)
    path = exp.directory / ("metrics/train/data.jsonl" if log_kind == "metrics" else "logs.jsonl")
    rows = read_jsonl(path) if path.exists() else []
    key = "data" if log_kind == "metrics" else "metadata"
    on_disk = [(r[key]["thread"], r[key]["seq"]) for r in rows]
    assert len(on_disk) == len(set(on_disk))  # none twice
    return set().union(*returned), set(on_disk), exp, sum(1 for r in refused if r)


# The script prelude that holds the end of a run between closing its streams and sealing the run:
# until ``release`` is set, RunWriter._close waits.
HELD_CLOSE = """
import asyncio, json, threading
import ml_dash.agent.rundir as rundir
from ml_dash import Experiment, RunStateError

release = threading.Event()
real_close = rundir.RunWriter._close

async def held_close(self):  # the end has begun (streams closed) but the writer has not sealed yet
    while not release.is_set():
        await asyncio.sleep(0.01)
    await real_close(self)
"""


@pytest.mark.parametrize("log_kind", ["metrics", "logs"])
def test_row19_every_call_that_returned_before_the_end_is_on_disk_and_nothing_else(workdir: Path,
                                                                                   log_kind: str) -> None:
    raced = 0
    for trial in range(TRIALS):
        returned, on_disk, exp, refused_threads = _race(f"a/race/{log_kind}-{trial}", trial, log_kind)
        assert returned == on_disk, (trial, len(returned - on_disk), len(on_disk - returned))
        stats = exp.stats()["streams"]["metrics/train" if log_kind == "metrics" else "logs"]
        assert stats["written"] == len(on_disk) and stats["dropped"] == {} and stats["pending"] == 0
        raced += refused_threads == THREADS
    assert raced >= TRIALS // 2  # most trials ended the run while every thread was still logging


def test_row19_params_and_files_after_the_end_raise_and_before_it_are_written(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    exp.params.set(lr=0.1)
    exp.files("m").save(b"x", "x.bin")
    exp.run.complete()
    with pytest.raises(RunStateError, match="has ended"):
        exp.params.set(lr=0.2)
    with pytest.raises(RunStateError, match="has ended"):
        exp.files("m").save(b"y", "y.bin")
    assert exp.params.get() == {"lr": 0.1}
    assert (exp.directory / "files/m/x.bin").read_bytes() == b"x" and not (exp.directory / "files/m/y.bin").exists()


def test_row19_a_call_waiting_on_a_full_buffer_when_the_run_ends_does_not_reopen_the_stream(tmp_path: Path) -> None:
    """A thread blocked in the memory bound's wait while the run ends must not re-arm the stream: its
    later calls raise, and every call that returned is on disk."""
    from .conftest import python_script

    result = python_script("""
        import asyncio, json, threading, time
        import ml_dash.agent.rundir as rundir
        from ml_dash import Experiment, RunStateError

        real_flush = rundir.RunWriter.flush
        release = threading.Event()

        async def stalled(self, durable=False):  # the periodic writer is stuck; close() is not
            while not release.is_set():
                await asyncio.sleep(0.01)
            await real_flush(self, durable)

        rundir.RunWriter.flush = stalled
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        returned = []

        def logger():
            for i in range(50_000):
                try:
                    train.log(step=i, text="x" * 60)
                except RunStateError:
                    return
                returned.append(i)

        thread = threading.Thread(target=logger)
        thread.start()
        stream = exp._session.writer.streams["metrics/train"]
        for _ in range(1000):  # until the logging thread waits on the full buffer
            if stream.waits:
                break
            time.sleep(0.01)
        exp.run.complete(timeout_s=30)
        release.set()
        thread.join(30)
        rows = [json.loads(line) for line in open(exp.directory / "metrics/train/data.jsonl")]
        print(json.dumps({"waited": stream.waits, "returned": len(returned), "on_disk": len(rows),
                          "steps_match": [r["data"]["step"] for r in rows] == returned[:len(rows)]}))
    """, tmp_path, env={"ML_DASH_MAX_BUFFER_MB": "1", "ML_DASH_MAX_BLOCK_S": "10"}, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["waited"] and out["returned"] < 50_000  # it waited, and the end refused it afterwards
    assert out["on_disk"] == out["returned"] and out["steps_match"], out


def test_row19_a_call_after_the_end_began_but_before_the_seal_returns_and_is_written(tmp_path: Path) -> None:
    from .conftest import python_script

    result = python_script(HELD_CLOSE + textwrap.dedent("""

        rundir.RunWriter._close = held_close
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        train.log(step=0)
        ender = threading.Thread(target=exp.run.complete)
        ender.start()
        while exp._session.writer.streams["metrics/train"].state != "closed":
            pass
        outcome = "returned"
        try:
            train.log(step=1)  # before the seal: accepted, and written by the final drain
        except RunStateError:
            outcome = "raised"
        release.set()
        ender.join(30)
        try:
            train.log(step=2)  # after the seal: refused
        except RunStateError:
            late = "raised"
        else:
            late = "returned"
        rows = [json.loads(line)["data"]["step"] for line in open(exp.directory / "metrics/train/data.jsonl")]
        print(json.dumps({"before_seal": outcome, "after_seal": late, "rows": rows}))
    """), tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"before_seal": "returned", "after_seal": "raised", "rows": [0, 1]}


def test_row19_the_end_seals_before_it_waits_for_a_write_in_progress(tmp_path: Path) -> None:
    """A stuck write must not keep the run open: calls after the end began raise at once, while the
    write still hangs, and every call that returned is on disk once it finishes."""
    from .conftest import python_script

    result = python_script("""
        import asyncio, json, threading, time
        import ml_dash.agent.rundir as rundir
        from ml_dash import Experiment, RunStateError

        real_write = rundir.RunWriter._write_queued
        entered, release = threading.Event(), threading.Event()

        async def stuck(self):  # a periodic pass hangs on a slow disk, holding the writer
            entered.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
            await real_write(self)

        rundir.RunWriter._write_queued = stuck
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        for i in range(100):
            train.log(step=i)
        assert entered.wait(30)
        ender = threading.Thread(target=exp.run.complete, kwargs={"timeout_s": 60})
        ender.start()
        writer = exp._session.writer
        for _ in range(3000):
            if writer.seal.sealed:
                break
            time.sleep(0.01)
        sealed_while_stuck = writer.seal.sealed and not release.is_set()
        try:
            train.log(step=100)
            late = "returned"
        except RunStateError:
            late = "raised"
        release.set()
        ender.join(60)
        rows = [json.loads(line)["data"]["step"] for line in open(exp.directory / "metrics/train/data.jsonl")]
        print(json.dumps({"sealed_while_stuck": sealed_while_stuck, "late": late, "rows": rows}))
    """, tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"sealed_while_stuck": True, "late": "raised", "rows": list(range(100))}


def test_row19_the_memory_bound_holds_between_the_end_and_the_seal(tmp_path: Path) -> None:
    """Calls that reach a closed stream before the seal return, but they are bounded like any other:
    a bounded wait, then counted buffer_full drops; written + dropped equals what returned."""
    from .conftest import python_script

    result = python_script(HELD_CLOSE + textwrap.dedent("""

        real_flush = rundir.RunWriter.flush

        async def stalled(self, durable=False):  # and the disk is stuck: nothing drains meanwhile
            while not release.is_set():
                await asyncio.sleep(0.01)
            await real_flush(self, durable)

        rundir.RunWriter._close = held_close
        rundir.RunWriter.flush = stalled
        exp = Experiment(prefix="o/p/r")
        exp.run.start()
        train = exp.metrics("train")
        stream = exp._session.writer.streams["metrics/train"]
        agent = exp._session.agent
        ender = threading.Thread(target=exp.run.complete, kwargs={"timeout_s": 60})
        ender.start()
        while stream.state != "closed":
            pass
        peak = 0
        for i in range(3000):  # 3000 rows of ~2 KB: six times the 1 MiB budget
            train.log(step=i, text="y" * 2000)
            peak = max(peak, agent.buffered_bytes())
        release.set()
        ender.join(60)
        rows = [json.loads(line)["data"]["step"] for line in open(exp.directory / "metrics/train/data.jsonl")]
        dropped = exp.stats()["streams"]["metrics/train"]["dropped"].get("buffer_full", 0)
        print(json.dumps({"peak": peak, "budget": agent.max_buffer_bytes, "written": len(rows),
                          "dropped": dropped, "ordered": rows == sorted(rows)}))
    """), tmp_path, env={"ML_DASH_MAX_BUFFER_MB": "1", "ML_DASH_MAX_BLOCK_S": "0.05"}, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["peak"] <= out["budget"] + 4096, out  # at most one row over the budget
    assert out["dropped"] > 0 and out["written"] + out["dropped"] == 3000 and out["ordered"], out


@pytest.mark.parametrize("rows_before", [1, 2, 3, 4])
def test_a_resumed_run_goes_on_at_the_next_index_whatever_the_last_one_was(workdir: Path, rows_before: int) -> None:
    # the last index on disk is 0, 1, 2, 3 (even and odd): the next row takes the one after it, never
    # one that is on disk already
    first = Experiment(prefix="a/b/resume")
    with first.run:
        for i in range(rows_before):
            first.metrics("train").log(step=i)
    second = Experiment(prefix="a/b/resume")
    with second.run:
        second.metrics("train").log(step=rows_before)
    rows = read_jsonl(first.directory / "metrics/train/data.jsonl")
    assert [(r["index"], r["data"]["step"]) for r in rows] == [(i, i) for i in range(rows_before + 1)]


@pytest.mark.parametrize("kind", ["metrics", "logs"])
def test_a_write_of_many_chunks_numbers_every_row_after_the_row_before_it(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          kind: str) -> None:
    # a disk that stands still for a moment, so that the next write takes 30,000 rows at once: several
    # chunks of one append, each numbered on from the one before it (every index once, in order)
    from ml_dash.agent import rundir

    real_append, first = rundir.RunWriter._append, threading.Event()

    async def stalled_append(self: rundir.RunWriter, stream: object, blobs: list, count: int) -> int:
        if not first.is_set():
            first.set()
            await asyncio.sleep(0.5)
        return await real_append(self, stream, blobs, count)

    monkeypatch.setattr(rundir.RunWriter, "_append", stalled_append)
    exp = Experiment(prefix="a/b/chunks")
    rows = 30_000
    with exp.run:
        for i in range(rows):
            if kind == "metrics":
                exp.metrics("train").log(step=i)
            else:
                exp.log(str(i))
        written = exp.stats()["streams"][f"{kind}/train" if kind == "metrics" else "logs"]
    assert first.is_set() and written["dropped"] == {}, written
    path = exp.directory / ("metrics/train/data.jsonl" if kind == "metrics" else "logs.jsonl")
    records = read_jsonl(path)
    assert [r["index" if kind == "metrics" else "sequenceNumber"] for r in records] == list(range(rows))
    said = [r["data"]["step"] if kind == "metrics" else int(r["message"]) for r in records]
    assert said == list(range(rows))


def test_a_document_given_again_with_a_value_takes_it_and_without_one_keeps_what_it_holds(workdir: Path) -> None:
    # RunWriter.document: a slot asked for again with a value takes that value (the latest wins on disk);
    # asked for without one (to be set next), it keeps what it holds
    exp = Experiment(prefix="a/b/documents")
    with exp.run:
        writer = exp._session.writer
        writer.document("extra.json", {"v": 1})
        writer.document("extra.json", {"v": 2})
        assert writer.document("extra.json").current() == {"v": 2}
    assert json.loads((exp.directory / "extra.json").read_text()) == {"v": 2}


def test_a_bug_in_the_writer_costs_only_the_rows_of_its_writes_and_counts_them(workdir: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # the second and third appends raise (a bug, not a disk error): their 100 rows each are dropped as
    # internal_error, the writes before and after them land, and accepted = written + dropped holds
    calls = _train_appends_fail(monkeypatch, (2, 3))
    exp = Experiment(prefix="a/b/bug")
    with exp.run:
        train = exp.metrics("train")
        for batch in range(4):
            for i in range(100):
                train.log(step=batch * 100 + i)
            exp.flush()
        counts = exp.stats()["streams"]["metrics/train"]
    assert calls == [100, 100, 100, 100]
    assert counts["accepted"] == 400 and counts["written"] == 200 and counts["dropped"] == {"internal_error": 200}, counts
    steps = [r["data"]["step"] for r in read_jsonl(exp.directory / "metrics/train/data.jsonl")]
    assert steps == [*range(100), *range(300, 400)]


def test_under_a_small_buffer_a_write_takes_at_most_a_row_per_kib_of_it(tmp_path: Path) -> None:
    # encoding a write costs about 1 KiB of transient memory a row, outside the buffer's accounting: under
    # a 16 MiB buffer a write takes at most 16,384 rows (the memory bound, docs/guarantees.md, rests on it);
    # the disk stands still until 60,000 rows wait, so that the writes after it are as large as they may be
    result = python_script("""
        import asyncio, json, threading, time
        from ml_dash import Experiment
        from ml_dash.agent import rundir

        real_append, counts, logged = rundir.RunWriter._append, [], threading.Event()

        async def append(self, stream, blobs, count):
            if stream.name == "metrics/train":
                counts.append(count)
                stop = time.monotonic() + 30
                while len(counts) == 1 and not logged.is_set() and time.monotonic() < stop:
                    await asyncio.sleep(0.01)  # the disk stands still until every row waits
            return await real_append(self, stream, blobs, count)

        rundir.RunWriter._append = append
        exp = Experiment(prefix="o/p/r")
        with exp.run:
            train = exp.metrics("train")
            for i in range(60_000):
                train.log(step=i)
            logged.set()
        s = exp.stats()["streams"]["metrics/train"]
        print(json.dumps({"counts": counts, "written": s["written"], "dropped": s["dropped"]}))
    """, tmp_path, env={"ML_DASH_MAX_BUFFER_MB": "16"}, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["written"] == 60_000 and out["dropped"] == {}, out
    assert max(out["counts"]) == 16 * 1024, out["counts"]  # as large as allowed while rows wait, never larger


def test_a_bug_in_a_write_counts_only_its_own_rows_while_more_wait_behind_it(workdir: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the second append raises (a bug) while 50 rows logged meanwhile wait in the queue: its 100 rows are
    # the internal_error drops, the 50 waiting ones are written after it (accepted = written + dropped)
    entered, release = threading.Event(), threading.Event()

    async def until_released() -> None:
        entered.set()
        for _ in range(3000):  # bounded: 30 s
            if release.is_set():
                return
            await asyncio.sleep(0.01)

    calls = _train_appends_fail(monkeypatch, (2,), until_released)
    exp = Experiment(prefix="a/b/bug")
    with exp.run:
        train = exp.metrics("train")
        for i in range(100):
            train.log(step=i)
        exp.flush()
        for i in range(100, 200):
            train.log(step=i)
        flusher = threading.Thread(target=exp.flush)
        flusher.start()
        assert entered.wait(30), "the second write never started"
        for i in range(200, 250):
            train.log(step=i)
        release.set()
        flusher.join(30)
        exp.flush()
        counts = exp.stats()["streams"]["metrics/train"]
    assert calls[:2] == [100, 100]
    assert counts["accepted"] == 250 and counts["written"] == 150 and counts["dropped"] == {"internal_error": 100}, counts
    steps = [r["data"]["step"] for r in read_jsonl(exp.directory / "metrics/train/data.jsonl")]
    assert steps == [*range(100), *range(200, 250)]


def test_whole_lines_counts_every_line_of_the_blobs_written_whole_and_stops_inside_the_cut_one() -> None:
    from ml_dash.agent.rundir import whole_lines

    first, second, third = b"a\n" * 300, b"bb\n" * 2, b"c\n" * 10
    blobs = [first, second, third]
    assert whole_lines(blobs, len(first) + len(second) + 5) == (302 + 2, len(first) + len(second) + 4)
    assert whole_lines(blobs, len(first)) == (300, len(first))
    assert whole_lines(blobs, len(first) + 4) == (301, len(first) + 3)
    assert whole_lines(blobs, sum(map(len, blobs))) == (312, sum(map(len, blobs)))
    assert whole_lines(blobs, 0) == (0, 0)


def test_saved_files_are_counted_written_once_on_disk_and_none_stays_pending(workdir: Path) -> None:
    """The files' counts keep accepted = written + dropped + pending: two files saved and flushed are two
    written and none pending, during the run and at its end."""
    exp = Experiment(prefix="a/b/files")
    with exp.run:
        exp.files("x").save(b"abc", "one.bin")
        exp.files("x").save(b"de", "two.bin")
        exp.flush()
        during = exp.stats()["streams"]["files"]
    after = exp.stats()["streams"]["files"]
    for counts in (during, after):
        assert (counts["accepted"], counts["written"], counts["dropped"], counts["pending"]) == (2, 2, {}, 0), counts


def _train_appends_fail(monkeypatch: pytest.MonkeyPatch, failing: tuple[int, ...],
                        before: Callable[[], Awaitable[None]] | None = None) -> list[int]:
    """Make the metrics/train appends numbered ``failing`` (from 1) raise, as a bug in the writer would, after
    ``before`` (when given) returns; the row counts of every metrics/train append come back in the list."""
    from ml_dash.agent import rundir

    real_append, calls = rundir.RunWriter._append, []

    async def append(self: rundir.RunWriter, stream: object, blobs: list, count: int) -> int:
        if getattr(stream, "name", "") == "metrics/train":
            calls.append(count)
            if len(calls) in failing:
                if before is not None:
                    await before()
                raise RuntimeError("a bug in the writer")
        return await real_append(self, stream, blobs, count)

    monkeypatch.setattr(rundir.RunWriter, "_append", append)
    return calls
