"""Fault matrix row 17: a run continued from another directory, against real server processes.

The server never acknowledges rows it did not store; an intended resume appends after the server's
rows; an accidental second run on a prefix is refused loudly (at start when the server answers, by
the upload when it did not), its rows kept on disk for `ml-dash sync --prefix` or `--resume`.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment, RunConflictError

from .conftest import read_jsonl
from .fault_proxy import FaultProxy
from .server_process import Server

PREFIX = "alice/resume/run"
USER = {"X-ML-Dash-User": "alice"}


@pytest.fixture
def dev(tmp_path: Path):
    srv = Server(tmp_path / "srv", "--allow-user-name")
    yield srv
    srv.stop()


def _steps(server: Server, prefix: str = PREFIX) -> list[tuple[int, int]]:
    status, body = server.request("GET", f"/api/v1/experiments/{prefix}/metrics/train?limit=10000", headers=USER)
    return [(r["index"], r["data"]["step"]) for r in body["rows"]] if status == 200 else []


def _machine(root: Path, url: str, steps: range, **kwargs) -> Experiment:
    exp = Experiment(prefix=PREFIX, remote=url, user_name="alice", local_path=root / PREFIX, **kwargs)
    with exp.run:
        for i in steps:
            exp.metrics("train").log(step=i)
    return exp


def _sync(directory: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(directory), "--remote", url,
                           "--user-name", "alice", *args], capture_output=True, text=True, timeout=120)



def test_row17_a_second_run_from_another_directory_is_refused_at_start(workdir: Path, dev: Server) -> None:
    _machine(workdir / "A", dev.url, range(10))
    b = Experiment(prefix=PREFIX, remote=dev.url, user_name="alice", local_path=workdir / "B" / PREFIX)
    with pytest.raises(RunConflictError, match="already holds alice/resume/run .*10 metric rows.*resume=True"):
        b.run.start()
    assert _steps(dev) == [(i, i) for i in range(10)]
    assert not (workdir / "B" / PREFIX / "experiment.json").exists()  # nothing of B's was started


def test_row17_resume_appends_after_the_servers_rows(workdir: Path, dev: Server) -> None:
    _machine(workdir / "A", dev.url, range(10))
    b = _machine(workdir / "B", dev.url, range(10, 15), resume=True)
    assert _steps(dev) == [(i, i) for i in range(15)]
    local = read_jsonl(b.directory / "metrics/train/data.jsonl")
    assert [(r["index"], r["data"]["step"]) for r in local] == [(i, 10 + i) for i in range(5)]  # its own numbering
    stats = b.stats()["streams"]["metrics/train"]
    assert stats["acknowledged"] == 5 and stats["pending_upload"] == 0


def test_row17_resume_must_and_never(workdir: Path, dev: Server) -> None:
    with pytest.raises(RunConflictError, match="resume='must', but neither"):
        Experiment(prefix=PREFIX, remote=dev.url, user_name="alice", resume="must").run.start()
    with pytest.raises(RunConflictError, match="resume='must', but .* holds no run"):
        Experiment(prefix="a/b/c", resume="must").run.start()
    _machine(workdir / "A", dev.url, range(3))
    with pytest.raises(RunConflictError, match="resume='never'"):
        Experiment(prefix=PREFIX, remote=dev.url, user_name="alice", resume=False,
                   local_path=workdir / "C" / PREFIX).run.start()
    with pytest.raises(RunConflictError, match="resume='never'"):  # the directory itself holds it
        Experiment(prefix=PREFIX, local_path=workdir / "A" / PREFIX, resume="never").run.start()
    with pytest.raises(ValueError, match="resume='sometimes'"):
        Experiment(prefix=PREFIX, resume="sometimes")


def test_row17_an_accidental_run_started_offline_is_refused_by_the_upload_and_kept_for_sync(
        workdir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, stable_url: FaultProxy) -> None:
    url = stable_url.url
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        offline = _machine(workdir / "B", url, range(100, 105), upload_timeout_s=1)  # server down all along
    assert "could not ask" in caplog.text
    srv = Server(tmp_path / "later", "--allow-user-name")
    stable_url.attach(srv.port)
    try:
        _machine(workdir / "A", url, range(10))  # meanwhile the prefix became another run
        out = _sync(offline.directory, url)
        assert out.returncode == 1 and "the server holds another run under this prefix" in out.stdout
        assert "--prefix alice/resume/<new-name>" in out.stdout and "--resume" in out.stdout
        assert _steps(srv) == [(i, i) for i in range(10)]  # nothing of B's was acknowledged or stored
        assert len(read_jsonl(offline.directory / "metrics/train/data.jsonl")) == 5  # kept on disk
        renamed = _sync(offline.directory, url, "--prefix", "alice/resume/run-b")
        assert renamed.returncode == 0, renamed.stdout + renamed.stderr
        assert _steps(srv, "alice/resume/run-b") == [(i, 100 + i) for i in range(5)]
        appended = _sync(offline.directory, url, "--resume")
        assert appended.returncode == 0, appended.stdout + appended.stderr
        assert _steps(srv) == [(i, i) for i in range(10)] + [(10 + i, 100 + i) for i in range(5)]
    finally:
        srv.stop()


def test_row17_a_run_resumed_offline_continues_the_servers_rows_once_it_answers(workdir: Path, tmp_path: Path,
                                                                                 stable_url: FaultProxy) -> None:
    srv = Server(tmp_path / "srv", "--allow-user-name")
    stable_url.attach(srv.port)
    _machine(workdir / "A", stable_url.url, range(10))
    srv.stop()
    stable_url.detach()
    offline = _machine(workdir / "B", stable_url.url, range(10, 14), resume=True, upload_timeout_s=1)
    back = Server(tmp_path / "srv", "--allow-user-name")  # the same store, restarted (on another port here)
    stable_url.attach(back.port)
    try:
        out = _sync(offline.directory, stable_url.url)
        assert out.returncode == 0, out.stdout + out.stderr
        assert _steps(back) == [(i, i) for i in range(14)]
    finally:
        back.stop()


def test_row17_a_continued_directory_keeps_its_place_and_a_second_start_appends(workdir: Path, dev: Server) -> None:
    _machine(workdir / "A", dev.url, range(5))
    b = _machine(workdir / "B", dev.url, range(5, 8), resume=True)
    _machine(workdir / "B", dev.url, range(8, 10))  # the same directory again: no resume needed
    assert _steps(dev) == [(i, i) for i in range(10)]
    assert len(read_jsonl(b.directory / "metrics/train/data.jsonl")) == 5
    late = _machine(workdir / "A", dev.url, range(100, 102))  # A again: the run has moved on meanwhile
    assert late.stats()["streams"]["metrics/train"]["pending_upload"] == 0
    assert _steps(dev) == [(i, i) for i in range(10)] + [(10, 100), (11, 101)]  # after B's rows, never under them


def _truncate_rows(directory: Path, keep: int) -> None:
    data = directory / "metrics/train/data.jsonl"
    data.write_bytes(b"".join(data.read_bytes().splitlines(keepends=True)[:keep]))


def test_row17_rows_the_server_holds_but_the_directory_lost_are_never_reused(workdir: Path, dev: Server) -> None:
    """An OS crash lost rows the server had acknowledged (the cursor says so); a copy of the run directory
    taken earlier continues (the server says so): new rows are numbered after the server's, not under them."""
    import shutil

    first = _machine(workdir / "A", dev.url, range(100))
    _truncate_rows(first.directory, 60)  # the last 40 rows never reached the disk; the server has them
    _machine(workdir / "A", dev.url, range(100, 105))
    assert _steps(dev) == [(i, i) for i in range(105)]
    copy = workdir / "B" / PREFIX
    shutil.copytree(first.directory, copy)
    _truncate_rows(copy, 30)
    (copy / ".ml-dash-upload.json").unlink()  # a copy taken before those rows were sent
    _machine(workdir / "B", dev.url, range(105, 110))
    assert _steps(dev) == [(i, i) for i in range(110)]


def test_row17_each_start_writes_its_own_segment_and_resends_are_recognised_per_segment(workdir: Path,
                                                                                          dev: Server) -> None:
    import json
    import sqlite3

    for steps in (range(10), range(10, 20)):  # two starts of one directory, offline
        exp = Experiment(prefix=PREFIX, local_path=workdir / "A" / PREFIX)
        with exp.run:
            for i in steps:
                exp.metrics("train").log(step=i)
    doc = json.loads((exp.directory / "experiment.json").read_text())
    assert [s["first"].get("metrics/train", 0) for s in doc["segments"]] == [0, 10]
    assert doc["writer_id"] == doc["segments"][-1]["writer_id"] != doc["segments"][0]["writer_id"]
    assert _sync(exp.directory, dev.url).returncode == 0
    (exp.directory / ".ml-dash-upload.json").unlink()  # forget what was sent: everything goes again
    again = _sync(exp.directory, dev.url)
    assert again.returncode == 0, again.stdout  # each segment's rows acknowledged as its own resends
    assert _steps(dev) == [(i, i) for i in range(20)]
    db = sqlite3.connect(dev.data / "ml-dash.sqlite3")
    ranges = db.execute("SELECT first_idx, end_idx, writer FROM stream_writers ORDER BY first_idx").fetchall()
    assert [(a, b) for a, b, _ in ranges] == [(0, 10), (10, 20)]
    assert [w for _, _, w in ranges] == [s["writer_id"] for s in doc["segments"]]


def test_row17_a_copied_directory_continued_offline_is_refused_not_taken_for_resends(workdir: Path,
                                                                                   dev: Server, dead_url: str) -> None:
    import shutil

    original = _machine(workdir / "A", dev.url, range(100))
    copy = workdir / "B" / PREFIX
    shutil.copytree(original.directory, copy)
    _truncate_rows(copy, 30)
    (copy / ".ml-dash-upload.json").unlink()
    offline = Experiment(prefix=PREFIX, remote=dead_url, user_name="alice",
                         local_path=copy, upload_timeout_s=1)
    with offline.run:  # the server cannot say it holds 100 rows: the copy numbers its rows from 30
        for i in range(1000, 1005):
            offline.metrics("train").log(step=i)
    out = _sync(copy, dev.url)
    assert out.returncode == 1 and "another copy of the run directory" in out.stdout, out.stdout  # loud
    assert _steps(dev) == [(i, i) for i in range(100)]
    renamed = _sync(copy, dev.url, "--prefix", "alice/resume/copy")
    assert renamed.returncode == 0 and [s for _, s in _steps(dev, "alice/resume/copy")][-5:] == list(range(1000, 1005))


def test_row17_a_resumed_directory_that_lost_its_cursor_still_appends_after_the_servers_rows(workdir: Path,
                                                                                           dev: Server) -> None:
    _machine(workdir / "A", dev.url, range(10))
    b = Experiment(prefix=PREFIX, local_path=workdir / "B" / PREFIX, remote=dev.url, user_name="alice",
                   resume=True, upload_timeout_s=0)
    with b.run:
        for i in range(10, 13):
            b.metrics("train").log(step=i)
    (b.directory / ".ml-dash-upload.json").unlink()
    out = _sync(b.directory, dev.url)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _steps(dev) == [(i, i) for i in range(13)]


def test_row17_sync_resume_appends_after_what_the_server_holds_now_even_after_a_stale_adoption(
        workdir: Path, dev: Server, tmp_path: Path) -> None:

    _machine(workdir / "A", dev.url, range(5))
    proxy = FaultProxy(int(dev.url.rsplit(":", 1)[1]))
    try:
        b = Experiment(prefix=PREFIX, remote=proxy.url, user_name="alice", resume=True,
                       local_path=workdir / "B" / PREFIX, upload_timeout_s=1)
        b.run.start()  # adopts the server's 5 rows
        proxy.set(mode="down")
        for i in range(100, 103):
            b.metrics("train").log(step=i)
        b.run.complete()
    finally:
        proxy.close()
    _machine(workdir / "A", dev.url, range(5, 8))  # meanwhile the run moved on: rows 5..7 are A's
    out = _sync(b.directory, dev.url, "--resume")  # another URL for the same server, too
    assert out.returncode == 0, out.stdout + out.stderr
    assert _steps(dev) == [(i, i) for i in range(8)] + [(8, 100), (9, 101), (10, 102)]


def test_row17_the_start_up_lookup_is_bounded_whatever_the_server_does(workdir: Path, caplog: pytest.LogCaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from .evil_server import EvilServer

    trickle = EvilServer({f"/api/v1/experiments/{PREFIX}": {"run_id": "x", "streams": {}}}, trickle_s=0.2)
    monkeypatch.setenv("ML_DASH_START_TIMEOUT_S", "1")
    try:
        with caplog.at_level(logging.WARNING, logger="ml_dash"):
            exp = Experiment(prefix=PREFIX, remote=trickle.url, user_name="alice", upload_timeout_s=0,
                             local_path=workdir / "T" / PREFIX)
            exp.run.start()  # a byte every 0.2 s would take 10 s: the lookup gives up after 1 s
            exp.run.complete()
    finally:
        trickle.close()
    assert "no answer within 1 s" in caplog.text
