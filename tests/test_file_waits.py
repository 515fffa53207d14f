"""A file the server cannot store now (its object store away: 503) never holds back a live run's
metrics (agent/upload/file_upload.py): a background pass tries it once, sends the rows, and offers the
file again only after its Retry-After; the last pass of a run (and ``ml-dash sync``) still retries it
within the deadline. Before: each background pass retried the file for up to 30 s, and the rows
logged meanwhile waited that long."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ml_dash import Experiment
from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload.retry import Outcome
from ml_dash.agent.upload.uploader import RunUploader

from .fake_server import FakeClock, FakeTransport, Request

STORE_AWAY = Outcome(503, retry_after_s=7, body={"error": "the object store is unavailable; retry later"})


def _store_away(request: Request) -> Outcome | None:
    """503 to every file, for as long as it stays in the script; rows go through."""
    return STORE_AWAY if request.kind == "file" else None


def _local_run(workdir: Path, rows: int) -> Experiment:
    exp = Experiment(prefix="alice/p/files-wait")
    with exp.run:
        exp.files("models").save(b"weights" * 1000, "w.bin")
        for i in range(rows):
            exp.metrics("train").log(step=i)
    return exp


def _append_rows(exp: Experiment, start: int, count: int) -> None:
    """Rows as the agent's writer appends them while the run goes on."""
    path = exp.directory / "metrics/train/data.jsonl"
    last = path.read_bytes().splitlines(keepends=True)[-1]
    with open(path, "ab") as out:
        out.writelines(last.replace(b'"index":%d' % (start - 1), b'"index":%d' % i) for i in range(start, start + count))


def _files(transport: FakeTransport) -> int:
    return sum(1 for r in transport.requests if r.kind == "file")


def test_a_background_pass_tries_a_file_once_and_the_rows_go_on(workdir: Path) -> None:
    exp = _local_run(workdir, 100)
    clock = FakeClock()
    transport = FakeTransport([_store_away] * 10, clock)  # each entry answers one file request
    uploader = RunUploader(exp.directory, exp.prefix, transport, clock=clock, sleep=clock.sleep)

    def background_pass():
        return asyncio.run(uploader.upload(Deadline(30, clock), sleep=clock.sleep, background=True))

    report = background_pass()
    assert report.sent_rows == 100 and _files(transport) == 1
    assert clock.sleeps == []  # no wait inside the pass: nothing held the rows back
    assert not report.unreachable and report.stopped is None
    assert report.files_waiting is not None and "object store is unavailable" in report.files_waiting
    assert report.pending_files == 1 and not report.complete

    _append_rows(exp, 100, 50)
    report = background_pass()  # within the file's Retry-After: rows only
    assert report.sent_rows == 50 and _files(transport) == 1 and clock.sleeps == []

    clock.now += 7  # its Retry-After has passed: tried again, still away
    report = background_pass()
    assert _files(transport) == 2 and report.pending_files == 1

    transport.script.clear()  # the store is back
    clock.now += 7
    report = background_pass()
    assert _files(transport) == 3 and report.sent_files == 1 and report.pending_files == 0
    assert transport.files["models/w.bin"] == b"weights" * 1000
    assert transport.stored["metrics/train"] == 150


def test_the_last_pass_still_retries_a_file_within_its_deadline(workdir: Path) -> None:
    exp = _local_run(workdir, 10)
    clock = FakeClock()
    transport = FakeTransport([_store_away, _store_away], clock)  # two 503s to the file, then the store takes it
    uploader = RunUploader(exp.directory, exp.prefix, transport, clock=clock, sleep=clock.sleep)
    report = asyncio.run(uploader.upload(Deadline(60, clock), sleep=clock.sleep))
    assert report.sent_files == 1 and report.complete, report
    assert _files(transport) == 3 and clock.sleeps == [7, 7]  # waited as told, inside the pass
