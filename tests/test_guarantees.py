"""The guarantees of docs/guarantees.md and docs/api.md, each tested against its own statement rather than the code's constants.

Each test here was written against a plausible bug that the rest of the suite let pass (issue 16):
bounds are those pages' literal numbers, not the constants the code imports; the same directory is
reached through other spellings; the fsync at the end is observed per file; the buffer's bound is
measured by what was accepted and not yet written, not by the buffer's own accounting.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import msgpack
import pytest

from ml_dash import Experiment, RunLockedError
from ml_dash.agent.upload.rejects import set_aside_counts
from ml_dash.agent.upload.retry import Outcome
from ml_dash.format.cursor import UploadCursor
from ml_dash.format.wire import BodyError, decode_body, metric_blocks
from ml_dash.server.http.hosts import host_name, is_loopback

from .app_server import AppServer
from .conftest import python_script
from .fake_server import FakeTransport, Request
from .server_process import Server
from .test_upload_statuses import TRAIN, _run, _stored_steps, _upload

# -- one writer per run directory, whatever the spelling of its path ------------------------------------


@pytest.mark.parametrize("spelling", ["symlink", "dotdot", "trailing-slash"])
def test_one_writer_holds_for_every_spelling_of_the_directory_in_one_process(workdir: Path, spelling: str) -> None:
    root = workdir / "runs"
    real = root / "a" / "b" / "c"
    first = Experiment(prefix="a/b/c", local_path=str(root))  # a root: the run is root/a/b/c
    first.run.start()
    try:
        if spelling == "symlink":
            (workdir / "alias").symlink_to(root)
            other = str(workdir / "alias")
        elif spelling == "dotdot":
            (root / "x").mkdir()
            other = str(root / "x" / "..")
        else:
            other = str(root) + "//"
        second = Experiment(prefix="a/b/c", local_path=other)
        with pytest.raises(RunLockedError):
            second.run.start()
        first.metrics("train").log(step=1)
    finally:
        first.run.complete()
    rows = (real / "metrics" / "train" / "data.jsonl").read_text().splitlines()
    assert [json.loads(r)["index"] for r in rows] == [0]


# -- the value domain at docs/api.md's literal edges -----------------------------------------------------

INSIDE = [2**63 - 1, -(2**63), 0, -1]
OUTSIDE = [2**63, -(2**63) - 1, 2**64, 2**64 - 1]


@pytest.mark.usefixtures("logger_impl")
@pytest.mark.parametrize("value", OUTSIDE)
def test_ints_just_outside_64_bits_are_refused_by_metrics_logs_and_params(exp: Experiment, value: int) -> None:
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        exp.metrics("train").log(v=value)
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        exp.log("x", v=value)
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        exp.params.set(v=value)


@pytest.mark.usefixtures("logger_impl")
def test_ints_at_the_edges_of_64_bits_are_kept_exactly(exp: Experiment) -> None:
    for value in INSIDE:
        exp.metrics("train").log(v=value)
    assert [r["data"]["v"] for r in exp.metrics("train").read()] == INSIDE


# -- everything fsynced at the end of a run --------------------------------------------------------------


def test_every_stream_file_is_fsynced_at_its_final_size_when_the_run_ends(workdir: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    synced: dict[str, set[int]] = {}
    real_fsync = os.fsync

    def observed_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        size = os.fstat(fd).st_size
        time.sleep(0.05)  # a slow disk: an fsync left running when the files close finds them closed
        real_fsync(fd)  # only an fsync that succeeded counts
        synced.setdefault(path, set()).add(size)

    monkeypatch.setattr(os, "fsync", observed_fsync)
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(500):
            exp.metrics("train").log(step=i)
            exp.metrics("eval").log(acc=i / 500)
            exp.log(f"line {i}")
    streams = [exp.directory / "metrics" / "train" / "data.jsonl", exp.directory / "metrics" / "eval" / "data.jsonl",
               exp.directory / "logs.jsonl"]
    for path in streams:
        final = path.stat().st_size
        assert final in synced.get(os.path.realpath(path), set()), (path, final, synced.get(os.path.realpath(path)))


# -- the buffer's byte bound, with a slow disk -------------------------------------------------------------


def test_rows_accepted_and_not_yet_written_stay_within_the_budget_while_the_disk_is_slow(tmp_path: Path) -> None:
    """What is held in memory is measured from outside the buffer's accounting: rows accepted (the call
    returned) minus rows written or dropped, times their size; the disk takes 20 ms per write."""
    result = python_script("""
        import asyncio, json
        from ml_dash import Experiment
        from ml_dash.agent import rundir

        real_append = rundir.RunWriter._append

        async def slow_append(self, stream, blobs, count):
            await asyncio.sleep(0.02)
            return await real_append(self, stream, blobs, count)

        rundir.RunWriter._append = slow_append
        row_bytes = 20_000
        exp = Experiment(prefix="o/p/r")
        peak_rows = 0
        with exp.run:
            train = exp.metrics("train")
            for i in range(1500):
                train.log(step=i, text=str(i % 10) * row_bytes)
                if i % 5 == 0:
                    s = exp.stats()["streams"]["metrics/train"]
                    peak_rows = max(peak_rows, s["accepted"] - s["written"] - sum(s["dropped"].values()))
        s = exp.stats()["streams"]["metrics/train"]
        print(json.dumps({"peak_bytes": peak_rows * row_bytes, "budget": 1 << 20, "row": row_bytes,
                          "accepted": s["accepted"], "written": s["written"], "dropped": s["dropped"]}))
    """, tmp_path, env={"ML_DASH_MAX_BUFFER_MB": "1", "ML_DASH_MAX_BLOCK_S": "0.05"}, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["peak_bytes"] <= out["budget"] + out["row"], out  # at most one row past the budget
    assert out["written"] + sum(out["dropped"].values()) == out["accepted"] == 1500, out


# -- the uploader: a 409 rewinds by the directory's numbering; a 413 splits the refused batch ------------


def test_a_resumed_directory_rewound_by_the_server_resends_every_row_the_server_lacks(workdir: Path) -> None:
    first = _run(5, "a/b/c")
    transport = FakeTransport()
    _upload(first, transport)
    elsewhere = Experiment(prefix="a/b/c", local_path=workdir / "other" / "a/b/c")  # the run continued elsewhere
    with elsewhere.run:
        for i in range(5, 25):
            elsewhere.metrics("train").log(step=i)
    cursor = UploadCursor.load(elsewhere.directory, transport.remote, "a/b/c")
    cursor.adopt = "pending"  # resumed while the server was away: its rows go after the server's 5
    cursor.save()
    report, _ = _upload(elsewhere.directory, transport)
    assert report.complete and transport.stored[TRAIN] == 25
    # the server keeps rows 0..9 only (5 of the first directory, 5 of this one), and this directory goes on
    transport.stored[TRAIN] = 10
    transport.rows[TRAIN] = {i: v for i, v in transport.rows[TRAIN].items() if i < 10}
    more = Experiment(prefix="a/b/c", local_path=workdir / "other" / "a/b/c")
    with more.run:
        more.metrics("train").log(step=25)
    report, _ = _upload(elsewhere.directory, transport)
    assert report.complete and _stored_steps(transport) == list(range(26))
    assert [transport.rows[TRAIN][i]["step"] for i in range(26)] == list(range(26))


def test_a_413_resends_at_most_half_of_the_refused_batch_each_time(workdir: Path) -> None:
    directory = _run(1000)

    def too_big(request: Request) -> Outcome | None:
        return Outcome(413, body={"error": "too large"}) if request.rows(TRAIN) > 200 else None

    transport = FakeTransport([too_big] * 30)
    report, _ = _upload(directory, transport, batch_rows=1_000_000)  # the batch is smaller than the row limit
    sizes = [r.rows(TRAIN) for r in transport.events()]
    assert report.complete and _stored_steps(transport) == list(range(1000)), sizes
    refused = [n for n in sizes if n > 200]
    for earlier, later in itertools.pairwise(sizes):
        if earlier > 200:  # refused: the next try holds at most half of it
            assert later <= earlier // 2, sizes
    assert len(refused) <= 4, sizes  # 1000 -> 500 -> 250 -> 125


# -- one set-aside record per set-aside row ---------------------------------------------------------------


def test_two_rows_the_server_refuses_are_two_records_and_count_two(workdir: Path) -> None:
    directory = _run(100)
    refused = {37, 52}

    def refuse(request: Request) -> Outcome | None:
        payload = request.body["streams"].get(TRAIN, {})
        start, rows = payload.get("start", 0), request.rows(TRAIN)
        for index in sorted(refused):
            if start <= index < start + rows:
                return Outcome(400, body={"error": f"row {index} refused", "stream": TRAIN, "index": index})
        return None

    transport = FakeTransport([refuse] * 10)
    report, _ = _upload(directory, transport)
    assert report.complete
    assert sum(set_aside_counts(directory)[TRAIN].values()) == 2
    records = [json.loads(p.read_text()) for p in (directory / ".ml-dash-rejected").glob("*.json")]
    assert sorted(r["first"] for r in records) == [37, 52]
    assert _stored_steps(transport) == [i for i in range(100) if i not in refused]


# -- the server never acknowledges another writer's rows, whichever of its ranges they fall in ----------


def _batch(start: int, n: int, writer: str) -> dict:
    rows = [{"data": {"step": i, "_ts": 1000.0 + i}, "createdAt": "2026-11-26T00:00:00.000000Z"}
            for i in range(start, start + n)]
    return {"v": 2, "identity": {"run_id": "run-1", "writer_id": writer},
            "streams": {"metrics/train": {"start": start, "blocks": metric_blocks(rows)}}}


def test_rows_of_another_writer_are_refused_even_when_a_later_range_is_the_senders_own(server: Server) -> None:
    key = server.key("alice")
    assert server.ingest("alice/p/r", _batch(0, 10, "writer-a"), key)[0] == 200
    assert server.ingest("alice/p/r", _batch(10, 10, "writer-b"), key)[0] == 200  # the run continued elsewhere
    assert server.ingest("alice/p/r", _batch(20, 10, "writer-a"), key)[0] == 200  # and back again
    status, reply = server.ingest("alice/p/r", _batch(5, 10, "writer-a"), key)  # rows 10..14 were writer-b's
    assert status == 409 and reply["conflict"]["kind"] == "writer", reply
    status, reply = server.ingest("alice/p/r", _batch(12, 10, "writer-a"), key)  # rows 12..19 too
    assert status == 409 and reply["conflict"]["kind"] == "writer", reply
    assert server.ingest("alice/p/r", _batch(20, 10, "writer-a"), key)[0] == 200  # its own resend: fine


# -- the wire decoder's limits, as docs/server.md states them --------------------------------------------------


def _body_with_map(entries: int) -> bytes:
    return msgpack.packb({"v": 2, "identity": {"run_id": "r", "writer_id": "w"}, "streams": {},
                          "extra": {f"k{i}": 0 for i in range(entries)}})


def test_maps_of_at_most_131072_entries_are_decoded_and_larger_ones_refused() -> None:
    assert len(decode_body(_body_with_map(131_072), "identity")["extra"]) == 131_072
    for entries in (131_073, 200_000):
        with pytest.raises(BodyError) as caught:
            decode_body(_body_with_map(entries), "identity")
        assert caught.value.status == 400


def test_arrays_of_at_most_1000000_items_are_decoded_and_larger_ones_refused() -> None:
    def body(items: int) -> bytes:
        return msgpack.packb({"v": 2, "identity": {}, "streams": {}, "extra": [None] * items})

    assert len(decode_body(body(1_000_000), "identity")["extra"]) == 1_000_000
    with pytest.raises(BodyError):
        decode_body(body(1_000_001), "identity")


def test_a_server_refuses_a_body_holding_a_200000_entry_map(app_server: AppServer) -> None:
    key = app_server.key("alice")
    status, reply = app_server.ingest("alice/p/r", {}, key, raw=_body_with_map(200_000), encoding="identity")
    assert status == 400, reply
    assert app_server.ingest("alice/p/r", _batch(0, 3, "w"), key)[0] == 200


# -- a loopback server answers only loopback names, however its address is spelled -----------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2"])
def test_a_server_bound_to_a_loopback_name_refuses_another_sites_host_header(tmp_path: Path, host: str) -> None:
    srv = Server(tmp_path / "data", "--host", host, "--allow-user-name")
    try:
        user = {"X-ML-Dash-User": "alice"}
        status, body = srv.request("GET", "/api/v1/owners", headers={**user, "Host": f"evil.example:{srv.port}"})
        assert status == 400 and "evil.example" in body["error"], body
        assert srv.request("GET", "/api/v1/owners", headers={**user, "Host": f"localhost:{srv.port}"})[0] == 200
    finally:
        srv.stop()



@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("0.0.0.0", False),
    ("::", False), ("192.0.2.1", False), ("example.com", False), ("localhost.evil.example", False), ("", False)])
def test_which_bind_addresses_count_as_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8080", "127.0.0.1"), ("LOCALHOST", "localhost"), (" Evil.Example:1 ", "evil.example"),
    ("[::1]:80", "[::1]"), ("[::1]", "[::1]"), ("::1", "::1"), ("[::1]x:80", "[::1]"), ("", "")])
def test_the_host_of_a_host_header_is_its_name_without_the_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_loopback_server_answers_an_ipv6_loopback_host_and_names_a_refused_one_briefly(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name")
    try:
        user = {"X-ML-Dash-User": "alice"}
        assert srv.request("GET", "/api/v1/owners", headers={**user, "Host": f"[::1]:{srv.port}"})[0] == 200
        status, body = srv.request("GET", "/api/v1/owners", headers={**user, "Host": "e" * 5000})
        assert status == 400 and repr("e" * 100) in body["error"] and "e" * 101 not in body["error"], body
    finally:
        srv.stop()
