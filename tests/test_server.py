"""The ml-dash server as a real process on 127.0.0.1 (port 0): auth, ingest, dedup, reads, limits."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from ml_dash.format.wire import encode_body, metric_blocks

from . import server_process
from .app_server import AppServer
from .server_process import Server, recv_until_closed


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"data": {"loss": 1.0 / (i + 1), "step": i, "_ts": 1000.0 + i}, "createdAt": "2026-11-26T00:00:00.000000Z"}
            for i in range(start, start + n)]


IDENTITY = {"run_id": "run-1", "writer_id": "writer-a"}


def _body(streams: dict[str, Any], identity: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"v": 2, "identity": identity or IDENTITY, "streams": streams, **extra}


def _batch(start: int, n: int, identity: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return _body({"metrics/train": {"start": start, "blocks": metric_blocks(_rows(n, start))}}, identity, **extra)


def _acked(reply: tuple[int, Any]) -> tuple[int, Any]:
    """(status, the counts of an ingest reply), its other fields (the run's totals) left out."""
    return reply[0], reply[1].get("acked") if isinstance(reply[1], dict) else reply[1]


def test_health(app_server: AppServer) -> None:
    assert app_server.request("GET", "/health") == (200, {"status": "ok", "version": pytest.importorskip("ml_dash").__version__})


def test_keys_are_printed_once_and_stored_hashed(app_server: AppServer) -> None:
    created = _keys_cli(app_server, "create", "--owner", "alice")  # the command itself (Server.key skips it)
    assert created.returncode == 0 and "shown once" in created.stdout, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("mld_")
    stored = _stored_keys(app_server)
    assert len(stored) == 1 and stored[0][1] == "alice"
    assert token.split("_", 2)[2] not in repr(stored)  # the secret itself is nowhere in the database


def _stored_keys(server: Server) -> list[tuple[Any, ...]]:
    """The api_keys rows as the server's database holds them (its SQLite file, or PostgreSQL's table)."""
    query = "SELECT key_id, owner, secret_sha256 FROM api_keys"
    if getattr(server, "db", None) is None:
        return sqlite3.connect(server.data / "ml-dash.sqlite3").execute(query).fetchall()
    import asyncpg

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(server.db)
        try:
            return [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _keys_cli(server: Server, *args: str) -> subprocess.CompletedProcess:
    db = getattr(server, "db", None)  # a server on another database (ML_DASH_TEST_DB): ML_DASH_DB names it
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "keys", *args, "--data", str(server.data)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **({"ML_DASH_DB": db} if db else {})})


def test_a_revoked_key_is_refused_by_the_running_server_and_listed_as_revoked(app_server: AppServer) -> None:
    first, second = app_server.key("alice"), app_server.key("alice")
    assert app_server.ingest("alice/p/r", _batch(0, 1), first)[0] == 200
    first_id = first.split("_")[1]
    revoked = _keys_cli(app_server, "revoke", first)  # the whole key works as well as its id
    assert revoked.returncode == 0 and first_id in revoked.stdout
    assert first.split("_", 2)[2] not in revoked.stdout + revoked.stderr  # the secret is never echoed
    status, _reply = app_server.ingest("alice/p/r", _batch(1, 1), first)
    assert status == 401
    assert app_server.ingest("alice/p/r", _batch(1, 1), second)[0] == 200  # other keys keep working
    listed = _keys_cli(app_server, "list", "--owner", "alice").stdout.splitlines()[1:]
    assert [line.split()[0] for line in listed] == [first_id, second.split("_")[1]]
    assert listed[0].split()[2] != "-" and listed[1].split()[2] == "-"  # revoked at / not revoked
    assert _keys_cli(app_server, "revoke", "0123456789ab").returncode == 1  # no such key
    bad = _keys_cli(app_server, "revoke", "../etc")
    assert bad.returncode == 2 and "neither a key id" in bad.stderr


def test_ingest_then_read_back_everything(app_server: AppServer) -> None:
    key = app_server.key("alice")
    body = _batch(0, 100, run={"status": "RUNNING", "description": "d", "tags": ["t"]}, params={"lr": 0.1})
    body["streams"]["logs"] = {"start": 0, "rows": [{"timestamp": "x", "level": "info", "message": "hello"}]}
    assert _acked(app_server.ingest("alice/proj/run-1", body, key)) == (200, {"metrics/train": 100, "logs": 1})
    status, exp = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1", key=key)
    assert status == 200 and exp["params"] == {"lr": 0.1} and exp["tags"] == ["t"] and exp["status"] == "RUNNING"
    assert exp["streams"] == {"metrics/train": 100, "logs": 1}
    status, metric = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1/metrics/train?start=10&limit=5", key=key)
    assert [r["index"] for r in metric["rows"]] == [10, 11, 12, 13, 14]
    assert metric["rows"][0]["data"] == {"loss": 1.0 / 11, "step": 10, "_ts": 1010.0}
    status, logs = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1/logs", key=key)
    assert logs["logs"] == [{"sequenceNumber": 0, "timestamp": "x", "level": "info", "message": "hello"}]
    status, listing = app_server.request("GET", "/api/v1/experiments?owner=alice&tag=t", key=key)
    assert [e["prefix"] for e in listing["experiments"]] == ["alice/proj/run-1"]


def test_a_resent_batch_is_stored_once_and_an_overlap_only_adds_the_new_rows(app_server: AppServer) -> None:
    key = app_server.key("alice")
    assert app_server.ingest("alice/p/r", _batch(0, 50), key)[0] == 200
    assert _acked(app_server.ingest("alice/p/r", _batch(0, 50), key)) == (200, {"metrics/train": 50})
    assert _acked(app_server.ingest("alice/p/r", _batch(25, 50), key)) == (200, {"metrics/train": 75})
    _, metric = app_server.request("GET", "/api/v1/experiments/alice/p/r/metrics/train?limit=1000", key=key)
    assert [r["index"] for r in metric["rows"]] == list(range(75))
    assert [r["data"]["step"] for r in metric["rows"]] == list(range(75))


def test_a_batch_past_the_stored_rows_is_refused_with_the_cursor(app_server: AppServer) -> None:
    key = app_server.key("alice")
    app_server.ingest("alice/p/r", _batch(0, 10), key)
    status, reply = app_server.ingest("alice/p/r", _batch(20, 5), key)
    assert status == 409 and reply["acked"] == {"metrics/train": 10}


def test_non_finite_values_round_trip_as_marked_json(app_server: AppServer) -> None:
    key = app_server.key("alice")
    rows = [{"data": {"loss": math.nan, "hi": math.inf, "_ts": 1.0}, "createdAt": None}]
    body = _body({"metrics/m": {"start": 0, "blocks": metric_blocks(rows)}})
    assert app_server.ingest("alice/p/r", body, key)[0] == 200
    _, metric = app_server.request("GET", "/api/v1/experiments/alice/p/r/metrics/m", key=key)
    assert metric["rows"][0]["data"] == {"loss": "NaN", "hi": "Infinity", "_ts": 1.0}
    assert metric["rows"][0]["nonFinite"] == ["hi", "loss"]


def test_downsampling_keeps_min_and_max_per_bucket(app_server: AppServer) -> None:
    key = app_server.key("alice")
    app_server.ingest("alice/p/r", _batch(0, 100), key)
    _, out = app_server.request("GET", "/api/v1/experiments/alice/p/r/metrics/train?buckets=4&limit=100", key=key)
    buckets = out["buckets"]
    assert len(buckets) == 4 and buckets[0]["first"] == 0 and buckets[-1]["last"] == 99
    assert buckets[0]["fields"]["step"] == {"min": 0, "max": 24, "first": 0, "last": 24}
    assert buckets[0]["fields"]["loss"]["max"] == 1.0


def test_authentication_and_owner_prefixes(app_server: AppServer) -> None:
    alice, bob = app_server.key("alice"), app_server.key("bob")
    assert app_server.ingest("alice/p/r", _batch(0, 1), None)[0] == 401
    assert app_server.ingest("alice/p/r", _batch(0, 1), "mld_000000000000_wrong")[0] == 401
    assert app_server.ingest("alice/p/r", _batch(0, 1), bob)[0] == 403
    assert app_server.ingest("alice/p/r", _batch(0, 1), alice)[0] == 200
    assert app_server.request("GET", "/api/v1/experiments/alice/p/r", key=bob)[0] == 403
    assert _keys_cli(app_server, "grant", "--owner", "alice", "--member", "bob").returncode == 0
    assert app_server.request("GET", "/api/v1/experiments/alice/p/r", key=bob)[0] == 200
    assert app_server.ingest("alice/p/r", _batch(1, 1), bob)[0] == 403  # a read grant is not a write grant


def test_owners_projects_and_a_name_prefix_list_what_the_caller_may_read(app_server: AppServer) -> None:
    alice, bob = app_server.key("alice"), app_server.key("bob")
    for prefix in ("alice/p1/run-1", "alice/p1/run-2", "alice/p1/runx", "alice/p1/run_a", "alice/p2/run-1"):
        assert app_server.ingest(prefix, _batch(0, 1), alice)[0] == 200
    assert app_server.ingest("bob/mine/r", _batch(0, 1), bob)[0] == 200
    assert app_server.request("GET", "/api/v1/projects?owner=alice", key=bob)[0] == 403
    _keys_cli(app_server, "grant", "--owner", "alice", "--member", "bob")
    assert app_server.request("GET", "/api/v1/owners", key=bob)[1]["owners"] == [
        {"owner": "alice", "experiments": 5}, {"owner": "bob", "experiments": 1}]
    assert app_server.request("GET", "/api/v1/owners", key=alice)[1]["owners"] == [{"owner": "alice", "experiments": 5}]
    status, projects = app_server.request("GET", "/api/v1/projects?owner=alice", key=bob)
    assert status == 200 and [(p["project"], p["experiments"]) for p in projects["projects"]] == [("p1", 4), ("p2", 1)]

    def names(query: str) -> list[str]:
        status, body = app_server.request("GET", f"/api/v1/experiments?owner=alice&{query}", key=bob)
        assert status == 200
        return [f"{e['project']}/{e['name']}" for e in body["experiments"]]

    assert names("prefix=run-") == ["p1/run-1", "p1/run-2", "p2/run-1"]
    assert names("project=p1&prefix=run_") == ["p1/run_a"]  # "_" is literal, not LIKE's wildcard
    assert names("prefix=%25") == []  # so is "%"


def test_user_name_is_accepted_only_in_development_mode(app_server: AppServer, tmp_path: Path) -> None:
    headers = {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"}
    assert app_server.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(_batch(0, 1)), headers)[0] == 401
    dev = Server(tmp_path / "dev", "--allow-user-name")
    try:
        assert dev.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(_batch(0, 1)), headers)[0] == 200
        assert dev.request("POST", "/api/v1/runs/bob/p/r/events", encode_body(_batch(0, 1)), headers)[0] == 403
    finally:
        assert dev.stop() == 0


def _zstd_bomb(decompressed_bytes: int) -> bytes:
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    chunk = b"\0" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(decompressed_bytes >> 20)]
    return b"".join(parts) + compressor.flush()


def test_row10_bad_bodies_get_4xx_and_the_server_stays_up(server: Server) -> None:
    key = server.key("alice")
    assert server.ingest("alice/p/r", {}, key, raw=_zstd_bomb(300 << 20))[0] == 413
    assert server.ingest("alice/p/r", {}, key, raw=b"\xc1\xc1not msgpack", encoding="identity")[0] == 400
    assert server.ingest("alice/p/r", {}, key, raw=b"\x28\xb5\x2f\xfdgarbage")[0] == 400
    assert server.ingest("alice/p/r", {}, key, raw=b"x", encoding="br")[0] == 415
    assert server.ingest("alice/p/r", {}, key, raw=b"\x91" * 100_000 + b"\xc0", encoding="identity")[0] == 400
    assert server.ingest("alice/p/r", {}, key, raw=msgpack.packb([1, 2]), encoding="identity")[0] == 400
    assert server.ingest("alice/p/r", {"v": 99}, key)[0] == 400
    assert server.ingest("alice/p/r", _body({"metrics/../x": {"start": 0, "blocks": []}}), key)[0] == 400
    assert server.ingest("alice/p/r", _body({"files/x": {"start": 0}}), key)[0] == 400
    bad_block = _body({"metrics/m": {"start": 0, "blocks": [{"keys": ["a"], "cols": [[1, 2]], "created": [["c", 1]]}]}})
    assert server.ingest("alice/p/r", bad_block, key)[0] == 400
    assert server.ingest("alice/p/r", {"v": 2, "streams": {}}, key)[0] == 400  # no identity
    assert server.ingest("alice/p/r", _body({}, {"run_id": "../x", "writer_id": "w"}), key)[0] == 400
    assert server.request("POST", "/api/v1/runs/alice/..%2Fx/r/events", b"", {"Content-Encoding": "identity"}, key)[0] in (400, 404)
    huge = b"\0" * (33 << 20)
    assert server.ingest("alice/p/r", {}, key, raw=huge, encoding="identity")[0] == 413
    assert server.request("GET", "/health")[0] == 200
    assert server.request("GET", "/api/v1/experiments/alice/p/r", key=key)[0] == 404  # nothing was stored


def test_row9_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data")
    assert srv.request("GET", "/health")[0] == 200
    assert srv.stop() == 0


def test_every_reply_carries_the_count_of_every_stream_of_the_run(app_server: AppServer) -> None:
    key = app_server.key("alice")
    logs = {"logs": {"start": 0, "rows": [{"timestamp": "t", "level": "info", "message": "m"}]}}
    assert _acked(app_server.ingest("alice/p/r", _body(logs), key)) == (200, {"logs": 1})
    assert _acked(app_server.ingest("alice/p/r", _batch(0, 5), key)) == (200, {"logs": 1, "metrics/train": 5})
    status, reply = app_server.ingest("alice/p/r", _batch(9, 5), key)
    assert status == 409 and reply["acked"] == {"logs": 1, "metrics/train": 5}


def test_a_run_document_carries_an_etag_and_an_unchanged_one_is_a_304_without_a_body(app_server: AppServer) -> None:
    import urllib.error
    import urllib.request

    key = app_server.key("alice")
    assert app_server.ingest("alice/p/etag", _batch(0, 10), key)[0] == 200

    def get(held: str | None = None) -> tuple[int, str, bytes, str]:
        headers = {"Authorization": f"Bearer {key}", **({"If-None-Match": held} if held else {})}
        request = urllib.request.Request(app_server.url + "/api/v1/experiments/alice/p/etag", headers=headers)
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as resp:
                return resp.status, resp.headers["ETag"], resp.read(), resp.headers["Cache-Control"]
        except urllib.error.HTTPError as err:
            return err.code, err.headers["ETag"], err.read(), err.headers["Cache-Control"]

    status, tag, body, cache = get()
    assert status == 200 and tag.startswith('"') and b'"metrics/train":10' in body.replace(b" ", b"")
    assert cache == "no-store"  # a run's document is kept out of caches; the UI revalidates by itself
    assert get(tag)[:3] == (304, tag, b"")
    assert get('"other", ' + tag)[0] == 304
    assert app_server.ingest("alice/p/etag", _batch(10, 5), key)[0] == 200
    status, changed, body, _ = get(tag)
    assert status == 200 and changed != tag and b'"metrics/train":15' in body.replace(b" ", b"")


def test_row17_rows_of_another_writer_under_stored_indices_are_refused_not_acknowledged(server: Server) -> None:
    key = server.key("alice")
    assert server.ingest("alice/p/r", _batch(0, 10), key)[0] == 200
    other = {"run_id": "run-1", "writer_id": "writer-b"}  # the same run continued from another directory
    status, reply = server.ingest("alice/p/r", _batch(0, 5, other), key)
    assert status == 409 and reply["conflict"]["kind"] == "writer" and reply["conflict"]["stream"] == "metrics/train"
    status, reply = server.ingest("alice/p/r", _batch(8, 5, other), key)  # overlapping rows 8 and 9: refused whole
    assert status == 409 and "conflict" in reply
    assert _acked(server.ingest("alice/p/r", _batch(10, 5, other), key)) == (200, {"metrics/train": 15})
    assert server.ingest("alice/p/r", _batch(10, 5, other), key)[0] == 200  # its own resend: acknowledged again
    _, metric = server.request("GET", "/api/v1/experiments/alice/p/r/metrics/train?limit=100", key=key)
    assert [r["data"]["step"] for r in metric["rows"]] == list(range(15))


def test_row17_rows_of_another_run_are_refused_whatever_their_indices(server: Server) -> None:
    key = server.key("alice")
    assert server.ingest("alice/p/r", _batch(0, 10), key)[0] == 200
    another = {"run_id": "run-2", "writer_id": "writer-c"}  # a new run that happens to reuse the prefix
    for start in (0, 10):
        status, reply = server.ingest("alice/p/r", _batch(start, 5, another), key)
        assert status == 409 and reply["conflict"]["kind"] == "run" and reply["conflict"]["run_id"] == "run-1"
    _, exp = server.request("GET", "/api/v1/experiments/alice/p/r", key=key)
    assert exp["streams"] == {"metrics/train": 10} and exp["run_id"] == "run-1"


def test_row18_a_void_keeps_the_stream_contiguous_and_later_rows_are_stored(server: Server) -> None:
    key = server.key("alice")
    assert server.ingest("alice/p/r", _batch(0, 3), key)[0] == 200
    void = _body({"metrics/train": {"start": 3, "void": 2, "reason": "unencodable"}})
    assert _acked(server.ingest("alice/p/r", void, key)) == (200, {"metrics/train": 5})
    assert _acked(server.ingest("alice/p/r", void, key)) == (200, {"metrics/train": 5})  # a resend of it
    assert _acked(server.ingest("alice/p/r", _batch(5, 3), key)) == (200, {"metrics/train": 8})
    _, metric = server.request("GET", "/api/v1/experiments/alice/p/r/metrics/train?limit=100", key=key)
    assert [r["index"] for r in metric["rows"]] == [0, 1, 2, 5, 6, 7]
    bad_void = _body({"metrics/train": {"start": 8, "void": 0, "reason": "x"}})
    assert server.ingest("alice/p/r", bad_void, key)[0] == 400


def test_a_database_from_before_run_identities_refuses_other_rows_under_its_stored_indices(tmp_path: Path) -> None:
    from .server_process import Server

    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(data / "ml-dash.sqlite3")  # the schema of version 1: no run or writer identities
    db.executescript("""
        CREATE TABLE experiments (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, project TEXT NOT NULL, name TEXT NOT NULL,
            description TEXT, tags TEXT NOT NULL DEFAULT '[]', metadata TEXT, status TEXT NOT NULL DEFAULT 'RUNNING',
            status_reason TEXT, created_at TEXT, started_at TEXT, ended_at TEXT, last_seen REAL NOT NULL,
            params TEXT NOT NULL DEFAULT '{}', UNIQUE (owner, project, name));
        CREATE TABLE stream_counts (exp_id INTEGER NOT NULL, stream TEXT NOT NULL, stored INTEGER NOT NULL,
            PRIMARY KEY (exp_id, stream)) WITHOUT ROWID;
        INSERT INTO experiments (id, owner, project, name, last_seen) VALUES (1, 'alice', 'p', 'r', 0);
        INSERT INTO stream_counts VALUES (1, 'metrics/train', 10);
    """)
    db.commit()
    db.close()
    srv = Server(data, "--allow-user-name")
    try:
        headers = {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"}
        newcomer = _batch(0, 5, {"run_id": "new-run", "writer_id": "new-writer"})
        status, reply = srv.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(newcomer), headers)
        assert status == 409 and reply["conflict"]["kind"] == "run"  # never acknowledged as a resend
        status, exp = srv.request("GET", "/api/v1/experiments/alice/p/r", headers=headers)
        assert exp["run_id"] == "legacy-1" and exp["streams"] == {"metrics/train": 10}
        resumed = _batch(0, 5, {"run_id": "legacy-1", "writer_id": "new-writer"})  # resume=True adopts its id
        assert srv.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(resumed), headers)[0] == 409
        after = _batch(10, 5, {"run_id": "legacy-1", "writer_id": "new-writer"})
        status, reply = srv.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(after), headers)
        assert (status, reply) == (200, {"acked": {"metrics/train": 15}, "run_streams": 1, "run_rows": 15})
    finally:
        srv.stop()


def test_the_status_filter_matches_the_status_shown(tmp_path) -> None:
    """A RUNNING run silent past --crashed-after-s shows as CRASHED, and ?status= finds it under what it shows."""
    srv = Server(tmp_path / "data", "--crashed-after-s", "0")  # every RUNNING run is silent by the next request
    try:
        key = srv.key("alice")
        assert srv.ingest("alice/p/silent", _batch(0, 3, run={"status": "RUNNING"}), key)[0] == 200
        assert srv.ingest("alice/p/done", _batch(0, 3, {"run_id": "r2", "writer_id": "w2"},
                                                 run={"status": "COMPLETED"}), key)[0] == 200

        def names(query: str) -> list[str]:
            status, body = srv.request("GET", f"/api/v1/experiments?owner=alice{query}", key=key)
            assert status == 200, body
            return [e["name"] for e in body["experiments"]]

        assert srv.request("GET", "/api/v1/experiments/alice/p/silent", key=key)[1]["status"] == "CRASHED"
        assert names("&status=CRASHED") == ["silent"]
        assert names("&status=RUNNING") == []
        assert names("&status=COMPLETED") == ["done"]
        status, body = srv.request("GET", "/api/v1/experiments?status=crashed", key=key)
        assert status == 400 and "not one of" in body["error"]
    finally:
        srv.stop()


@pytest.mark.parametrize("where", ["Authorization", "request line"])
def test_row27_a_request_the_parser_refuses_is_answered_and_logged_without_its_bytes(tmp_path, where: str) -> None:
    """An over-long header holding a real key: 400 naming the problem, and the key in neither the reply
    nor the server's log."""
    import socket

    srv = Server(tmp_path / "data")
    key = srv.key("alice")
    padded = key + "S" * 9000
    head = (f"GET /api/v1/owners HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {padded}\r\n\r\n"
            if where == "Authorization" else f"GET /{padded} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as conn:
        conn.sendall(head.encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    srv.stop()
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n", 1)[0]
    assert b"longer than the server accepts" in reply
    secret = key.split("_", 2)[2]  # mld_<key id>_<secret>
    assert secret.encode() not in reply and b"SSSS" not in reply
    assert secret not in srv.stderr + srv.stdout and "SSSS" not in srv.stderr


def test_row27_a_request_head_that_trickles_in_is_cut_off_and_a_stalled_body_gets_408(tmp_path) -> None:
    import socket
    import time

    srv = Server(tmp_path / "data", "--allow-user-name", "--head-timeout-s", "1", "--body-timeout-s", "1")
    try:
        trickler = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        closed_after = None
        started = time.monotonic()
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200:  # one byte / 0.1 s
            try:
                trickler.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
            trickler.settimeout(0.001)
            try:
                if trickler.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except (TimeoutError, BlockingIOError):
                pass
            except ConnectionResetError:
                closed_after = time.monotonic() - started
                break
        trickler.close()
        assert closed_after is not None, "the server kept a connection whose head never completed"

        staller = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        staller.sendall(b"POST /api/v1/runs/alice/p/r/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-ML-Dash-User: alice\r\n"
                        b"Content-Encoding: identity\r\nContent-Length: 1000\r\n\r\n" + b"\x80" * 10)
        reply, closed = recv_until_closed(staller, 15)
        staller.close()
        assert reply.split(b"\r\n", 1)[0].endswith(b"408 Request Timeout"), reply[:200]
        assert closed and b"no part of the request body arrived" in reply
        assert srv.request("GET", "/health")[0] == 200  # everyone else is served meanwhile
    finally:
        srv.stop()


def test_row28_a_loopback_server_answers_only_loopback_host_names_unless_told(tmp_path) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    srv = Server(tmp_path / "a", "--allow-user-name")
    try:
        user = {"X-ML-Dash-User": "alice"}
        status, body = srv.request("GET", "/api/v1/owners", headers={**user, "Host": f"evil.example:{srv.port}"})
        assert status == 400 and "does not answer to the host 'evil.example'" in body["error"]
        for name in (f"127.0.0.1:{srv.port}", f"localhost:{srv.port}", "LOCALHOST"):
            assert srv.request("GET", "/api/v1/owners", headers={**user, "Host": name})[0] == 200, name
    finally:
        srv.stop()
    named = Server(tmp_path / "b", "--allow-user-name", "--allowed-host", "tracker.internal")
    try:
        assert named.request("GET", "/health", headers={"Host": "tracker.internal"})[0] == 200
        assert named.request("GET", "/health", headers={"Host": "evil.example"})[0] == 400
    finally:
        named.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real ``ml-dash server`` for this module's tests of refused bodies (rows 24 and 26): each is
    refused and stores nothing, so they need no fresh process of their own; each checks that nothing was
    stored, or that the server still answers, after its refusal."""
    srv = Server(tmp_path_factory.mktemp("refusals") / "server-data")
    server_process.STARTED.remove(srv.proc)  # it outlives each test (conftest stops every other server)
    try:
        yield srv
    finally:
        assert srv.stop() == 0  # and the refusals left it able to exit cleanly


@pytest.mark.parametrize("run", [{"status": None}, {"status": {"a": 1}}, {"status": "DONE"}, {"description": [1]},
                                 {"created_at": 2**64 - 1}, {"tags": "x"}, {"tags": [1]}, {"metadata": [1]},
                                 {"status_reason": "x" * 70_000}, {"hostname": 5}])
def test_row26_wrong_typed_run_fields_are_a_400_naming_the_field_not_a_500(shared_server: Server, run: dict) -> None:
    key = shared_server.key("alice")
    raw = msgpack.packb({"v": 2, "identity": IDENTITY, "streams": {}, "run": run})  # uncompressed: 70,000 x's
    status, body = shared_server.ingest("alice/p/typed", {}, key, raw=raw, encoding="identity")  # are no bomb
    (field,) = run
    assert status == 400 and body["error"].startswith(f"run.{field}: "), body
    assert shared_server.request("GET", "/api/v1/experiments/alice/p/typed", key=key)[0] == 404  # nothing stored


@pytest.mark.parametrize("rev", [-1, 2**63, 2**64 - 1, 1.5, True, "7", None, [1]])
def test_a_documents_stamp_that_is_not_an_int_from_0_to_2_63_minus_1_is_a_400_naming_it(shared_server: Server,
                                                                                          rev: Any) -> None:
    key = shared_server.key("alice")
    raw = msgpack.packb({"v": 2, "identity": IDENTITY, "streams": {}, "run": {"status": "RUNNING"}, "docs_rev": rev})
    status, body = shared_server.ingest("alice/p/stamp", {}, key, raw=raw, encoding="identity")
    assert status == 400 and body["error"] == "'docs_rev' must be an int from 0 to 2^63-1", body
    assert shared_server.request("GET", "/api/v1/experiments/alice/p/stamp", key=key)[0] == 404  # nothing stored
    edge = msgpack.packb({"v": 2, "identity": IDENTITY, "streams": {}, "run": {"status": "RUNNING"},
                          "docs_rev": 2**63 - 1})
    assert shared_server.ingest("alice/p/stamp-edge", {}, key, raw=edge, encoding="identity")[0] == 200


def _raw_body(extra: dict) -> bytes:
    return zstandard.ZstdCompressor().compress(msgpack.packb({"v": 2, "identity": IDENTITY, **extra}))


def test_row24_decoding_bombs_get_a_4xx_at_once_and_the_server_stays_responsive(shared_server: Server) -> None:
    key = shared_server.key("alice")
    head = msgpack.packb({"v": 2, "identity": IDENTITY, "streams": {}})
    declared = head[:1].replace(b"\x83", b"\x84") + head[1:] + msgpack.packb("x") + b"\xdd" + (2_000_000).to_bytes(4, "big")
    declared += b"\xc0" * 2_000_000  # an array of 2,000,000 nils: 2 MB that would take 16 MB decoded
    status, body = shared_server.ingest("alice/p/bomb", {}, key, raw=declared, encoding="identity")
    assert status == 400 and "max_array_len" in body["error"], body
    nils = zstandard.ZstdCompressor(level=1).compress(b"\xc0" * (70 << 20))  # 70 MiB of nils in a few KB
    status, body = shared_server.ingest("alice/p/bomb", {}, key, raw=nils)
    assert status == 413 and "decompressed body exceeds" in body["error"], body
    assert shared_server.request("GET", "/health")[0] == 200


@pytest.mark.parametrize("where", ["params", "metadata", "log row", "metric value"])
def test_row24_values_nested_past_the_sdk_limit_are_a_400_naming_them_never_a_500(shared_server: Server, where: str) -> None:
    """msgpack decodes 500 levels; the server re-encodes params and rows as JSON, which failed at ~1000
    (a RecursionError: a 500 the client retried until its deadline). The SDK's own bound holds."""
    key = shared_server.key("alice")
    deep = "DEEP"  # replaced below by 1,000 nested maps (msgpack's packer stops at 511)
    block = {"keys": ["loss"], "cols": [[0.5, deep]], "created": [["2026-01-01T00:00:00Z", 2]]}
    extra = {"params": {"params": {"p": deep}},
             "metadata": {"run": {"metadata": {"m": deep}}},
             "log row": {"streams": {"logs": {"start": 0, "rows": [{"message": "m", "metadata": deep}]}}},
             "metric value": {"streams": {"metrics/train": {"start": 0, "blocks": [block]}}}}[where]
    packed = msgpack.packb({"v": 2, "identity": IDENTITY, **extra})
    packed = packed.replace(msgpack.packb(deep), b"\x81\xa1a" * 1000 + b"\x01")
    status, body = shared_server.ingest("alice/p/deep", {}, key, raw=zstandard.ZstdCompressor().compress(packed))
    assert status == 400, body
    assert ("nested deeper than" in body["error"]) if where != "metric value" else ("a metric value is" in body["error"])
    if where in ("log row", "metric value"):  # a row-level refusal: the client sets that one row aside
        assert body["index"] == (0 if where == "log row" else 1), body
    assert shared_server.request("GET", "/health")[0] == 200


def test_row24_bombs_arriving_together_all_get_a_4xx_while_health_and_ingest_go_on(server: Server) -> None:
    import threading

    key = server.key("alice")
    nils = zstandard.ZstdCompressor(level=1).compress(b"\xc0" * (70 << 20))
    head = msgpack.packb({"v": 2, "identity": IDENTITY, "streams": {}})
    # declares 2,000,000 items: over max_array_len (uncompressed: compressed, it is refused for its inflation)
    long_array = (head[:1].replace(b"\x83", b"\x84") + head[1:] + msgpack.packb("x") + b"\xdd"
                  + (2_000_000).to_bytes(4, "big") + b"\xc0" * 2_000_000)
    outcomes: list[int] = []
    done = threading.Event()
    probes: list[int] = []

    def bomb(raw: bytes) -> None:
        outcomes.append(server.ingest("alice/p/bomb", {}, key, raw=raw, encoding="zstd" if raw is nils else "identity")[0])

    def probe() -> None:
        while not done.is_set():
            probes.append(server.request("GET", "/health")[0])

    prober = threading.Thread(target=probe)
    prober.start()
    bombs = [threading.Thread(target=bomb, args=(nils if k % 2 else long_array,)) for k in range(8)]
    for thread in bombs:
        thread.start()
    good = server.ingest("alice/p/fine", _batch(0, 100), key)  # a real client meanwhile
    for thread in bombs:
        thread.join(timeout=120)
    done.set()
    prober.join(timeout=30)
    assert good[0] == 200
    assert sorted(outcomes) == [400] * 4 + [413] * 4
    assert probes and set(probes) == {200}


def test_row24_a_block_without_columns_cannot_declare_rows(shared_server: Server) -> None:
    key = shared_server.key("alice")
    block = {"keys": [], "cols": [], "created": [["2026-01-01T00:00:00Z", 999_999]]}
    status, body = shared_server.ingest("alice/p/empty", {}, key,
                                 raw=_raw_body({"streams": {"metrics/train": {"start": 0, "blocks": [block]}}}))
    assert status == 400 and "malformed block" in body["error"], body
    assert shared_server.request("GET", "/api/v1/experiments/alice/p/empty", key=key)[0] == 404


@pytest.mark.parametrize("level", [5, ["info"], "loud"])
def test_row26_a_log_level_the_sdk_would_refuse_is_a_400(shared_server: Server, level: object) -> None:
    key = shared_server.key("alice")
    row = {"message": "m", "level": level, "timestamp": "2026-01-01T00:00:00Z"}
    status, body = shared_server.ingest("alice/p/lv", {}, key, raw=_raw_body({"streams": {"logs": {"start": 0, "rows": [row]}}}))
    assert status == 400 and body.get("stream") == "logs" and body.get("index") == 0, body


def test_a_client_sent_sequence_number_never_replaces_the_stored_index(app_server: AppServer) -> None:
    key = app_server.key("alice")
    rows = [{"message": f"m{i}", "level": "info", "sequenceNumber": 77} for i in range(3)]
    assert app_server.ingest("alice/p/seq", {}, key, raw=_raw_body({"streams": {"logs": {"start": 0, "rows": rows}}}))[0] == 200
    _, body = app_server.request("GET", "/api/v1/experiments/alice/p/seq/logs", key=key)
    assert [r["sequenceNumber"] for r in body["logs"]] == [0, 1, 2]


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc: this test runs on Linux)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid``: the decode workers are the children of the server's fork server."""
    found, todo = set(), [pid]
    while todo:
        children = _children(todo.pop())
        found |= children
        todo += children
    return found


def _decode_workers(pid: int) -> set[int]:
    """The server's decode workers: the processes its fork server forked (multiprocessing's "forkserver"),
    or, on a system without pidfds, its own spawned children (ml_dash/server/ingest/prepare.py)."""
    children = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in _children(pid)}
    servers = {p for p, cmdline in children.items() if b"forkserver" in cmdline}
    spawned = {p for p, cmdline in children.items() if b"spawn_main" in cmdline}
    return spawned | {worker for server in servers for worker in _children(server)}


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in (Path("/proc") / str(pid) / "status").read_text().lower()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_the_decode_workers_end_with_their_server_however_it_ends(tmp_path: Path, stop: str) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name", "--ingest-workers", "2")
    workers = _decode_workers(srv.proc.pid)
    assert len(workers) == 2  # started with the server
    helpers = _descendants(srv.proc.pid)  # the workers, their fork server, multiprocessing's resource tracker
    headers = {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"}
    assert srv.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(_batch(0, 10)), headers)[0] == 200
    srv.proc.send_signal(getattr(signal, stop))
    srv.proc.communicate(timeout=30)
    deadline = time.monotonic() + 10  # a worker sees its server end at once (a pidfd), the others then
    while time.monotonic() < deadline and any(_alive(p) for p in helpers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in helpers)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_decode_worker_killed_costs_a_503_and_the_server_starts_new_ones(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name", "--ingest-workers", "2")
    try:
        workers = _decode_workers(srv.proc.pid)
        assert len(workers) == 2
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # the pool ends its other workers once one dies: it may have been first
                pass
        headers = {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"}
        statuses = []
        for _ in range(5):  # bounded: the first request may meet the broken pool, a later one the new pool
            status, reply = srv.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(_batch(0, 10)), headers)
            statuses.append(status)
            if status == 200:
                break
            assert status == 503 and "retry later" in reply["error"], reply
        assert statuses[-1] == 200 and len(statuses) <= 2, statuses
        assert srv.request("GET", "/api/v1/experiments/alice/p/r", headers=headers)[1]["streams"] == {"metrics/train": 10}
        assert {p for p in _decode_workers(srv.proc.pid) if _alive(p)} - workers  # new workers, not the dead ones
    finally:
        srv.stop()


def test_a_database_of_schema_2_gets_searchable_log_messages(tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir()
    db = sqlite3.connect(data / "ml-dash.sqlite3")
    db.executescript("""
        CREATE TABLE log_rows (exp_id INTEGER NOT NULL, idx INTEGER NOT NULL, record BLOB NOT NULL, level TEXT,
            PRIMARY KEY (exp_id, idx)) WITHOUT ROWID;
        PRAGMA user_version = 2;
    """)
    db.execute("INSERT INTO log_rows VALUES (1, 0, ?, 'info')", (msgpack.packb({"message": "an old needle"}),))
    db.commit()
    db.close()
    srv = Server(data, "--allow-user-name")
    try:
        headers = {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"}
        # the run of those old rows: its row is made by the first batch, as id 1
        assert srv.request("POST", "/api/v1/runs/alice/p/r/events", encode_body(_batch(0, 1)), headers)[0] == 200
        status, out = srv.request("GET", "/api/v1/experiments/alice/p/r/logs?q=needle", headers=headers)
        assert status == 200 and [r["message"] for r in out["logs"]] == ["an old needle"]
    finally:
        srv.stop()
    from ml_dash.server.storage.sqlite.store import SCHEMA_VERSION

    version = sqlite3.connect(data / "ml-dash.sqlite3").execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION  # migrated to the current schema (5: chunks' storing time, archival)


def test_the_compare_endpoint_buckets_many_runs_in_one_call_and_honours_read_rights(app_server: AppServer) -> None:
    alice, bob = app_server.key("alice"), app_server.key("bob")
    assert app_server.ingest("alice/p/a", _batch(0, 100), alice)[0] == 200
    assert app_server.ingest("alice/p/b", _batch(0, 50, {"run_id": "r2", "writer_id": "w2"}), alice)[0] == 200
    status, out = app_server.request("GET", "/api/v1/compare/metrics/train?runs=alice/p/a,alice/p/b,alice/p/none&buckets=10",
                                 key=alice)
    assert status == 200 and [sum(b["count"] for b in out["runs"][p]) for p in ("alice/p/a", "alice/p/b")] == [100, 50]
    assert out["runs"]["alice/p/none"] == []
    _, only = app_server.request("GET", "/api/v1/compare/metrics/train?runs=alice/p/a&buckets=10&fields=loss", key=alice)
    assert {k for b in only["runs"]["alice/p/a"] for k in b["fields"]} == {"loss"}
    assert app_server.request("GET", "/api/v1/compare/metrics/train?runs=alice/p/a", key=bob)[0] == 403
    assert app_server.request("GET", "/api/v1/compare/metrics/train?runs=alice/p/a/extra", key=alice)[0] == 400
    many = ",".join(f"alice/p/r{k}" for k in range(51))
    assert app_server.request("GET", f"/api/v1/compare/metrics/train?runs={many}", key=alice)[0] == 400


def test_x_forwarded_proto_marks_a_session_secure_only_from_a_proxy_on_this_machine() -> None:
    """Another machine's header could be anyone's: only a loopback peer (a reverse proxy here) is heard.
    (A non-loopback peer cannot connect in these tests: the request's transport is the seam.)"""
    from unittest import mock

    from aiohttp.test_utils import make_mocked_request

    from ml_dash.server.sessions import over_https

    def request(peer: str, proto: str | None) -> Any:
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (peer, 50000) if name == "peername" else default
        headers = {"X-Forwarded-Proto": proto} if proto else {}
        return make_mocked_request("POST", "/api/v1/session", headers=headers, transport=transport)

    assert over_https(request("127.0.0.1", "https")) and over_https(request("::1", "HTTPS, http"))
    assert not over_https(request("10.1.2.3", "https"))  # from elsewhere: not trusted
    assert not over_https(request("127.0.0.1", "http")) and not over_https(request("127.0.0.1", None))


def test_a_host_header_whose_port_is_no_port_is_answered_not_a_500(app_server: AppServer) -> None:
    import http.client

    for host in ("127.0.0.1:abc", "127.0.0.1:99999", "localhost:-1"):
        for path in ("/api/v1/session", "/api/v1/experiments/alice/p/r"):
            conn = http.client.HTTPConnection("127.0.0.1", app_server.port, timeout=30)
            conn.putrequest("GET", path, skip_host=True)
            conn.putheader("Host", host)
            conn.endheaders()
            status = conn.getresponse().status
            conn.close()
            assert status in ({200, 401} if path.endswith("session") else {401}), (host, path, status)  # never a 500


def test_a_nul_in_a_path_or_query_is_a_400_before_any_handler(app_server: AppServer) -> None:
    """SQLite ends a statement's text at a NUL and file systems refuse one in a name: a log search and a
    UI path holding one were 500s. Every route is refused the same way, without quoting the request."""
    import http.client

    key = app_server.key("alice")
    assert app_server.ingest("alice/p/nul", _batch(0, 3), key)[0] == 200
    for path in ("/api/v1/experiments/alice/p/nul/logs?q=step%00", "/api/v1/experiments/alice/p/nul/logs?q=%00",
                 "/api/v1/experiments/alice/p/nul/metrics/train?start=0%00", "/ui/app.js%00.html",
                 "/api/v1/experiments/alice/p/nul%00",
                 "/api/v1/experiments/alice/p/nul/logs?q%00=x"):
        conn = http.client.HTTPConnection("127.0.0.1", app_server.port, timeout=30)
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        status, body = response.status, response.read()
        conn.close()
        assert status == 400, (path, status, body)
        assert b"holds a NUL character" in body, (path, body)
    assert app_server.request("GET", "/api/v1/experiments/alice/p/nul/logs?q=step", key=key)[0] == 200  # without the NUL


def test_a_sigterm_as_soon_as_the_server_says_it_listens_stops_it_cleanly(tmp_path: Path) -> None:
    """The signal handlers are in place before the server announces itself: a supervisor (or a test) that
    sends SIGTERM the moment it reads the URL gets a clean stop ("stopped", exit 0, `ml-dash ui`'s URL
    file removed), not a death by the default action. The SIGTERM here comes from inside the announcement,
    the earliest moment anyone could send it."""
    script = (
        "import asyncio, os, signal\n"
        "from pathlib import Path\n"
        "from ml_dash.server.config import ServerConfig\n"
        "from ml_dash.server.serve import serve\n"
        f"config = ServerConfig(Path({str(tmp_path / 'data')!r}))\n"
        "asyncio.run(serve(config, '127.0.0.1', 0, on_listening=lambda url: os.kill(os.getpid(), signal.SIGTERM)))\n"
        "print('returned')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert "ml-dash server stopped" in out.stdout and "returned" in out.stdout
