"""The connections a real server holds at once (server/http/connections.py): a flood of connections that
send nothing or a slow head (no key needed) neither takes the server's descriptors nor keeps clients out;
when every connection has a request in hand, a new one is told 503 with Retry-After, naming the limit.

Before: aiohttp accepted every connection; under a limit of 400 open files, 500 such connections took
them all: the server stopped accepting (a traceback a second, "accept: Too many open files") and
``/health`` timed out."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ml_dash.format.wire import encode_body

from .server_process import Server, recv_until_closed
from .trickle import Trickler, chunk
from .waiting import wait_for

pytestmark = pytest.mark.timeout(300)


def _ingest(srv: Server, owner: str) -> int:
    body = encode_body({"v": 2, "identity": {"run_id": "r", "writer_id": "w"}, "streams": {}})
    return srv.request("POST", f"/api/v1/runs/{owner}/p/r/events", body,
                       {"X-ML-Dash-User": owner, "Content-Encoding": "zstd"})[0]


def test_a_flood_of_silent_and_slow_head_connections_leaves_the_server_answering(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name", open_files=400)  # holds (400 - 320) / 2 = 40
    flood: list[socket.socket] = []
    try:
        for k in range(500):
            conn = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            if k % 2:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # a head that never ends
            flood.append(conn)
        # while they are all open, the oldest of them that are owed nothing make room for clients (one that came
        # with the flood's last burst may be told 503 with Retry-After first, as the SDK is, and retries)
        wait_for(lambda: srv.request("GET", "/health")[0] == 200, "a client served amid the flood")
        wait_for(lambda: _ingest(srv, "alice") == 200, "a client's ingest accepted amid the flood")
    finally:
        for conn in flood:
            conn.close()
        srv.stop()
    assert "Too many open files" not in srv.stderr and "Traceback" not in srv.stderr, srv.stderr[-3000:]


def _ingest_head(owner: str, run: str) -> bytes:
    return (f"POST /api/v1/runs/{owner}/p/{run}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-ML-Dash-User: {owner}\r\n"
            "Content-Encoding: zstd\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()


def test_past_the_limit_with_every_connection_busy_a_new_one_is_told_to_retry(tmp_path: Path) -> None:
    """--max-connections 16, held by 16 trickling bodies of two keys (each under its own limit): a new
    connection is answered 503 with Retry-After naming the limit; once they are answered, clients are served."""
    srv = Server(tmp_path / "data", "--allow-user-name", "--max-connections", "16", "--body-timeout-s", "3")
    trickle = Trickler(srv.port)
    try:
        for owner in ("bob", "carol"):
            for k in range(8):
                trickle.open(_ingest_head(owner, f"t{k}"), first=chunk(b"x"), drip=chunk(b"x"))
        wait_for(lambda: trickle.unread() == 0, "the server has read every head", trickle.unread)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as late:
            late.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply, closed = recv_until_closed(late, 30)
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable") and b"Retry-After: 2" in reply, reply
        assert b"the server holds as many connections as it may (16, its --max-connections)" in reply and closed
        trickle.stop_dripping()  # silent now: the body timeout answers them, and their connections close
        wait_for(trickle.all_answered, "every trickling request answered", trickle.statuses)
        wait_for(lambda: srv.request("GET", "/health")[0] == 200, "a client served once they are gone")
    finally:
        trickle.close()
        srv.stop()
    assert "refused 1 connection(s): the server holds as many as it may (16, --max-connections)" in srv.stderr
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def test_a_sign_in_body_that_trickles_is_answered_within_twice_the_body_timeout(tmp_path: Path) -> None:
    """A sign-in comes before the server knows a key: its body holds no budget and keeps no pace, so a
    space every 0.5 s (never silent for the 3 s body timeout) held its connection for as long as its 4 KiB
    lasted, over half an hour. Its body must now arrive whole within twice the body timeout (3 s, where
    twice and the square of 2 would agree)."""
    srv = Server(tmp_path / "data", "--allow-user-name", "--body-timeout-s", "3")
    trickle = Trickler(srv.port)
    try:
        trickle.open(b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 4000\r\n\r\n", first=b"{", drip=b" ")
        wait_for(trickle.all_answered, "the trickling sign-in answered", trickle.statuses)
        assert trickle.statuses() == [408], trickle.conns[0].reply
        assert b"the request body did not arrive whole within 6 s" in trickle.conns[0].reply
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]
