"""An ingest reply costs what its request does: the counts of the request's streams, never every stream of the run.

A run may hold 100,000 metric streams; a reply listing them all took 0.14 s of the server and several MB for
every small batch. These run a real server on loopback.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ml_dash.format.wire import LIMITS, NAMED_REPLY, metric_blocks

from .server_process import Server

IDENTITY = {"run_id": "wide-run", "writer_id": "w"}
ROW = [{"data": {"v": 1.0, "_ts": 1000.0}, "createdAt": "2026-11-26T00:00:00.000000Z"}]


def _body(streams: dict[str, int], **extra: Any) -> dict[str, Any]:
    """One row of each stream at the given start."""
    return {"v": 2, "identity": IDENTITY, **extra,
            "streams": {name: {"start": start, "blocks": metric_blocks(ROW)} for name, start in streams.items()}}


def _wide_run(srv: Server, key: str, prefix: str, count: int) -> list[str]:
    """A run of ``count`` metric streams of one row each, built within the per-request stream limit."""
    names = [f"metrics/m{i:06d}" for i in range(count)]
    for first in range(0, count, LIMITS.max_streams):
        status, reply = srv.ingest(prefix, _body(dict.fromkeys(names[first:first + LIMITS.max_streams], 0),
                                                 **NAMED_REPLY), key)
        assert status == 200, reply
    return names


def test_a_one_stream_batch_on_a_run_of_20000_streams_is_answered_with_that_stream_alone(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data")
    try:
        key = srv.key("alice")
        names = _wide_run(srv, key, "alice/p/wide", 20_000)
        status, reply = srv.ingest("alice/p/wide", _body({names[7]: 1}, **NAMED_REPLY), key)
        assert status == 200 and reply == {"acked": {names[7]: 2}, "run_streams": 20_000, "run_rows": 20_001}, \
            (status, len(reply.get("acked", {})))
        # an older SDK (no "reply": "named") would read the missing streams as none stored and rewind them:
        # refused whole, with the reason, on a run past a request's worth of streams; nothing of it stored
        status, reply = srv.ingest("alice/p/wide", _body({names[8]: 1}), key)
        assert status == 426 and "upgrade it" in reply["error"] and "acked" not in reply, (status, reply)
        # a resend (nothing stored again) and a batch past the stored rows (409): the request's streams only
        status, reply = srv.ingest("alice/p/wide", _body({names[7]: 1}, **NAMED_REPLY), key)
        assert status == 200 and reply["acked"] == {names[7]: 2} and reply["run_rows"] == 20_001
        status, reply = srv.ingest("alice/p/wide", _body({names[9]: 5, names[10]: 1}, **NAMED_REPLY), key)
        assert status == 409 and reply["acked"] == {names[9]: 1, names[10]: 1}, (status, len(reply.get("acked", {})))
        assert (reply["run_streams"], reply["run_rows"]) == (20_000, 20_001)  # rolled back: nothing of it stored
    finally:
        srv.stop()


def test_a_small_run_still_lists_every_stream_to_an_older_sdk_and_only_the_named_ones_to_this_one(
        tmp_path: Path) -> None:
    """An older SDK reads a stream missing from a reply as "none stored" and sends it again: on a run of at most
    a request's worth of streams it still gets all of them."""
    srv = Server(tmp_path / "data")
    try:
        key = srv.key("alice")
        names = _wide_run(srv, key, "alice/p/small", 3)
        status, reply = srv.ingest("alice/p/small", _body({names[0]: 1}), key)
        assert status == 200 and reply["acked"] == {names[0]: 2, names[1]: 1, names[2]: 1}
        status, reply = srv.ingest("alice/p/small", _body({names[1]: 1}, **NAMED_REPLY), key)
        assert status == 200 and reply == {"acked": {names[1]: 2}, "run_streams": 3, "run_rows": 5}
        status, reply = srv.ingest("alice/p/small", _body({"metrics/new": 3}), key)  # a gap in a new stream
        assert status == 409 and reply["acked"] == {**dict.fromkeys(names, 2), names[2]: 1, "metrics/new": 0}
        # a body of an older SDK that would take the run past 1,000 streams: refused, nothing stored
        wider = dict.fromkeys((f"metrics/w{i:04d}" for i in range(LIMITS.max_streams - 3 + 1)), 0)
        status, reply = srv.ingest("alice/p/small", _body(wider), key)
        assert status == 426 and "upgrade it" in reply["error"], (status, reply)
        status, reply = srv.ingest("alice/p/small", _body(dict.fromkeys(list(wider)[:-1], 0)), key)  # 1,000: taken
        assert status == 200 and len(reply["acked"]) == LIMITS.max_streams and reply["run_streams"] == 1_000
        status, reply = srv.ingest("alice/p/none", _body({"metrics/new": 3}, **NAMED_REPLY), key)  # no such run
        assert status == 409 and reply == {"error": reply["error"], "acked": {"metrics/new": 0}, "run_streams": 0,
                                           "run_rows": 0}
    finally:
        srv.stop()


def test_a_database_of_schema_3_gets_its_runs_totals_counted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = Server(data)
    try:
        key = srv.key("alice")
        names = _wide_run(srv, key, "alice/p/old", 5)
        assert srv.ingest("alice/p/old", _body({names[0]: 1}, **NAMED_REPLY), key)[0] == 200
    finally:
        srv.stop()
    db = sqlite3.connect(data / "ml-dash.sqlite3")  # as a server of schema 3 left it: no totals
    db.execute("ALTER TABLE experiments DROP COLUMN stream_count")
    db.execute("ALTER TABLE experiments DROP COLUMN stored_rows")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    srv = Server(data)
    try:
        status, reply = srv.ingest("alice/p/old", _body({names[1]: 1}, **NAMED_REPLY), key)
        assert status == 200 and reply == {"acked": {names[1]: 2}, "run_streams": 5, "run_rows": 7}
    finally:
        srv.stop()


def test_this_sdk_sends_one_new_row_of_a_run_of_1500_metrics_as_one_row_and_nothing_again(
        workdir: Path, tmp_path: Path) -> None:
    """A stream a reply does not name is left as it is: an older SDK took it for "none stored" and sent it again
    from its first row (the server acknowledged that without storing anything twice, but sent every stream of
    the run again for each small batch)."""
    import asyncio

    from ml_dash import Experiment
    from ml_dash.agent.deadline import Deadline
    from ml_dash.agent.upload.transport import HttpTransport
    from ml_dash.agent.upload.uploader import RunUploader

    def upload(directory: Path, srv: Server, key: str) -> tuple[int, int, bool]:
        async def one_pass() -> tuple[int, int, bool]:
            transport = HttpTransport(srv.url, {"Authorization": f"Bearer {key}"})
            try:
                report = await RunUploader(directory, "alice/p/many", transport).upload(Deadline(120))
                return report.sent_rows, report.requests, report.complete
            finally:
                await transport.close()

        return asyncio.run(one_pass())

    exp = Experiment(prefix="alice/p/many")
    with exp.run:
        for i in range(1500):
            exp.metrics(f"m{i}").log(v=1.0)
    srv = Server(tmp_path / "data")
    try:
        key = srv.key("alice")
        assert upload(exp.directory, srv, key) == (1500, 2, True)
        more = Experiment(prefix="alice/p/many")
        with more.run:
            more.metrics("m7").log(v=2.0)
        assert upload(exp.directory, srv, key) == (1, 1, True)
        status, run = srv.document("alice/p/many", key=key)  # every stream: the document pages them
        assert status == 200 and run["streams"]["metrics/m7"] == 2 and sum(run["streams"].values()) == 1501
    finally:
        srv.stop()


def test_the_sdks_recount_and_adoption_read_every_page_of_a_wide_runs_streams(tmp_path: Path) -> None:
    """The run's document carries 1,000 streams and ``streams_next``; the upload client's GET of the run
    (a recount after a loss, an adoption on resume) must follow the pages, or every stream past the first
    page reads as empty and its rows are sent again (under another writer: a conflict)."""
    import asyncio

    from ml_dash.agent.upload.transport import HttpTransport
    from ml_dash.format.wire import stream_counts

    srv = Server(tmp_path / "data")
    try:
        key = srv.key("alice")
        names = _wide_run(srv, key, "alice/p/wide", 2_500)

        async def read() -> dict[str, int]:
            transport = HttpTransport(srv.url, {"Authorization": f"Bearer {key}"})
            try:
                outcome = await transport.get_run("alice/p/wide", 30.0)
                assert outcome.ok, outcome.reason
                return stream_counts(outcome.body or {})
            finally:
                await transport.close()

        counts = asyncio.run(read())
        assert counts == dict.fromkeys(names, 1)
    finally:
        srv.stop()
