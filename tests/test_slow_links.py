"""Slow links: a body that keeps arriving is never cut, however long it takes; silence is.

The server's request-head timeout covers the head only, and its body timeout the silence between a
body's pieces; every request gets a status. The SDK's uploads time out when nothing moves, not
after a fixed total, so a checkpoint crosses a 2 MiB/s link and a stalled server is still given up.
Senders here are real sockets throttled precisely (tests/slow_link.py); the two big uploads (256 MiB
at 8 MiB/s takes 32 s) are this suite's long test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ml_dash import Experiment
from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload import live_upload
from ml_dash.agent.upload.retry import Outcome, send_with_retries
from ml_dash.agent.upload.transport import HttpTransport
from ml_dash.format.wire import encode_body, metric_blocks
from ml_dash.server.http.protocol import QuietAppRunner

from .fault_proxy import FaultProxy
from .server_process import Server, direct, recv_until_closed
from .slow_link import Body, MiB, Reply, http_head, in_pieces, send_slowly
from .waiting import wait_for

USER = {"X-ML-Dash-User": "alice"}


def _in_threads(calls: list[Callable[[], Reply]]) -> list[Reply]:
    """Run the senders at once (each a thread: they sleep most of the time), their replies in order."""
    replies: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        replies[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,), name=f"slow-sender-{i}") for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return replies


def _put_slowly(server: Server, path: str, body: Body, bytes_per_s: float) -> Callable[[], Reply]:
    head = http_head("PUT", f"/api/v1/runs/alice/p/slow/files/{path}",
                     {**USER, "X-Content-SHA256": body.sha256(), "Content-Type": "application/octet-stream"}, body.size)
    return lambda: send_slowly(server.port, head, body.pieces(), bytes_per_s)


def _stored_sha256(server: Server, path: str, headers: dict[str, str]) -> str:
    """The sha256 of a file of alice/p/slow as the server gives it back, read in pieces (never whole)."""
    digest = hashlib.sha256()
    request = urllib.request.Request(server.url + f"/api/v1/experiments/{path}", headers=headers)
    with direct.open(request, timeout=60) as resp:
        while piece := resp.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


# -- the server -------------------------------------------------------------------------------------


class _RecordingTransport(asyncio.Transport):
    """What the handler writes and whether it closed: the one way to put body bytes at the moment between
    the parser's head and the handler's start, which a real socket reaches only by chance."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def test_body_bytes_that_come_before_the_handler_starts_never_start_the_head_clock() -> None:
    async def scenario() -> tuple[bool, bytes]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=f"{len(await request.read())} bytes")

        app = web.Application()
        app.router.add_put("/f", handler)
        runner = QuietAppRunner(app, head_timeout_s=0.2)
        await runner.setup()
        try:
            assert runner.server is not None
            connection = runner.server()
            transport = _RecordingTransport()
            connection.connection_made(transport)
            await asyncio.sleep(0)  # the connection waits for a request
            connection.data_received(b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n" + b"a" * 10)
            await asyncio.sleep(0)  # it has taken the request; the handler's task has not run yet
            connection.data_received(b"b" * 10)
            await asyncio.sleep(0.5)  # the body takes longer than the head may
            connection.data_received(b"c" * 10)
            for _ in range(200):
                if transport.closed or b"bytes" in transport.written:
                    break
                await asyncio.sleep(0.01)
            return transport.closed, bytes(transport.written)  # before the clean-up closes it
        finally:
            await runner.cleanup()

    closed, written = asyncio.run(scenario())
    assert not closed and written.startswith(b"HTTP/1.1 200 OK") and written.endswith(b"30 bytes"), written


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_slow_file_uploads_are_stored_however_long_their_bodies_take(tmp_path: Path) -> None:
    """12 MiB at 3 MiB/s and 56 MiB at 8 MiB/s (4 s and 7 s, at the same time) against a head that must be
    whole within 2 s and a body never silent for 5 s: the default limits (10 s, 30 s) and the sizes they
    were tried with (48 MiB and 256 MiB, 16 s and 32 s) at a fifth of the time, the same ratios."""
    server = Server(tmp_path / "data", "--allow-user-name", "--head-timeout-s", "2", "--body-timeout-s", "5")
    try:
        small, big = Body(12 * MiB, seed=1), Body(56 * MiB, seed=2)
        replies = _in_threads([_put_slowly(server, "small.bin", small, 3 * MiB),
                               _put_slowly(server, "big.bin", big, 8 * MiB)])
        for reply in replies:
            assert reply.status == 200, (reply.error, reply.text[:300])
        assert _stored_sha256(server, "alice/p/slow/files/small.bin", USER) == small.sha256()
        assert _stored_sha256(server, "alice/p/slow/files/big.bin", USER) == big.sha256()
    finally:
        server.stop()


def _ingest_body(rows: int, seed: int) -> bytes:
    """A valid bulk body of ``rows`` rows of random values (about 100 bytes a row once compressed)."""
    rng = random.Random(seed)
    data = [{"data": {f"f{k}": rng.random() for k in range(10)}, "createdAt": "2026-11-26T00:00:00.000000Z"}
            for _ in range(rows)]
    identity = {"run_id": f"run-{seed}", "writer_id": "writer-a"}
    return encode_body({"v": 2, "identity": identity,
                        "streams": {"metrics/train": {"start": 0, "blocks": metric_blocks(data)}}})


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_concurrent_slow_ingest_bodies_each_get_their_answer(tmp_path: Path) -> None:
    """Twelve valid ingest bodies at once, each arriving for longer than the head may take: every one is
    answered and stored (they were closed without a status when their head clock ran on)."""
    server = Server(tmp_path / "data", "--allow-user-name", "--head-timeout-s", "1")
    rows = 10_000
    try:
        bodies = [_ingest_body(rows, seed) for seed in range(12)]
        assert all(len(body) > 800_000 for body in bodies)  # 2 s or more at 0.4 MiB/s

        def sender(i: int) -> Callable[[], Reply]:
            head = http_head("POST", f"/api/v1/runs/alice/p/ingest{i}/events",
                             {**USER, "Content-Encoding": "zstd", "Content-Type": "application/octet-stream"},
                             len(bodies[i]))
            return lambda: send_slowly(server.port, head, in_pieces(bodies[i]), 0.4 * MiB)

        replies = _in_threads([sender(i) for i in range(12)])
        assert [r.status for r in replies] == [200] * 12, [(r.status, r.error) for r in replies]
        for i in range(12):
            assert len(server.metric_rows(f"alice/p/ingest{i}", key=None, headers=USER)) == rows
    finally:
        server.stop()


def _trickle(conn: socket.socket, data: bytes, per_byte_s: float) -> int | None:
    """Send ``data`` a byte at a time; the number of bytes sent when the server closed, None if it never did."""
    for sent, byte in enumerate(data):
        try:
            conn.sendall(bytes([byte]))
            conn.settimeout(per_byte_s)
            if conn.recv(1) == b"":
                return sent + 1
        except TimeoutError:
            continue
        except OSError:
            return sent
    return None


def test_a_trickling_head_is_still_closed_on_a_new_and_on_a_kept_alive_connection(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", "--head-timeout-s", "1")
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10  # a byte a second: a minute if let be
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as fresh:
            assert _trickle(fresh, head, 1.0) is not None, "a head that never completed kept its connection"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = kept.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"}")  # kept alive: the next head is timed
            assert _trickle(kept, head, 1.0) is not None, "the next request's head was never timed"
    finally:
        server.stop()


def _pipelined_requests() -> dict[str, tuple[bytes, bytes]]:
    """Requests that a client may send before a pipelined one, each as (what is sent first, its end):
    a body with a Content-Length, a chunked body, and a GET (a head without a body)."""
    body = _ingest_body(10, seed=7)
    ingest = {**USER, "Content-Encoding": "zstd", "Content-Type": "application/octet-stream"}
    sized = http_head("POST", "/api/v1/runs/alice/p/piped/events", ingest, len(body)).replace(b"Connection: close\r\n", b"")
    chunked = (b"POST /api/v1/runs/alice/p/piped-chunked/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-ML-Dash-User: alice\r\n"
               b"Content-Encoding: zstd\r\nTransfer-Encoding: chunked\r\n\r\n")
    return {"a sized body": (sized + body[:-10], body[-10:]),
            "a chunked body": (chunked + f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\n\r\n"),
            "a GET": (b"GET /health HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n\r\n")}


@pytest.mark.parametrize("before", list(_pipelined_requests()))
def test_a_pipelined_head_that_begins_in_the_segment_ending_the_request_before_it_is_timed(
        tmp_path: Path, before: str) -> None:
    """The end of a request and the first bytes of the next head in one send, then silence: the request
    is answered and the connection closed at the head timeout (1 s). It waited for the keep-alive
    timeout (75 s) when the head's bytes came with the end of the request before it. (The 30 s bound
    tells the two timeouts apart on a loaded machine; it measures no speed.)"""
    server = Server(tmp_path / "data", "--allow-user-name", "--head-timeout-s", "1")
    first, end = _pipelined_requests()[before]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(first)
            time.sleep(0.2)  # its own segment, most likely; arriving with the rest is the same case
            conn.sendall(end + b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aa")
            reply, closed = recv_until_closed(conn, 30)
        assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:300]
        assert closed, f"after {before}, a pipelined head that stalled kept its connection: {reply[:300]!r}"
    finally:
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr[-3000:]


def test_a_body_that_goes_silent_gets_408_on_every_route_that_reads_one(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", "--allow-user-name", "--body-timeout-s", "1")
    routes = [("PUT", "/api/v1/runs/alice/p/r/files/x.bin", {"X-Content-SHA256": "0" * 64}),
              ("POST", "/api/v1/runs/alice/p/r/events", {"Content-Encoding": "zstd"}),
              ("POST", "/api/v1/session", {"Content-Type": "application/json"})]
    conns = []
    try:
        for method, path, headers in routes:  # all at once: the three silences run out together
            conns.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            conns[-1].sendall(http_head(method, path, {**USER, **headers}, 1000) + b"{" * 10)
        for conn, (_, path, _) in zip(conns, routes):
            reply, _ = recv_until_closed(conn, 15)
            assert reply.startswith(b"HTTP/1.1 408 Request Timeout"), (path, reply[:300])
            assert b"no part of the request body arrived for 1 s" in reply, path
    finally:
        for conn in conns:
            conn.close()
        server.stop()


def test_a_sign_in_body_that_arrives_in_pieces_is_read_to_its_end(tmp_path: Path) -> None:
    """One read of a body returns what has arrived: the sign-in read one piece and refused it as not JSON."""
    server = Server(tmp_path / "data", "--allow-user-name")
    body = b'{"user": "alice"}'
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(http_head("POST", "/api/v1/session", {"Content-Type": "application/json"}, len(body)) + body[:5])
            time.sleep(0.3)
            conn.sendall(body[5:])
            reply, _ = recv_until_closed(conn, 15)
        assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:300]
        assert reply.endswith(b'{"owner":"alice"}') and b"Set-Cookie: " in reply
    finally:
        server.stop()


# -- the SDK ----------------------------------------------------------------------------------------


def test_a_pass_deadline_bounds_when_requests_start_not_a_transfer_under_way() -> None:
    """A background pass (30 s) must not cut a transfer that is moving; the end of a run must."""
    timeouts: list[float | None] = []

    async def attempt(timeout_s: float | None) -> Outcome:
        timeouts.append(timeout_s)
        return Outcome(200)

    background, ending = Deadline(1.0, cuts_transfers=False), Deadline(1.0)
    asyncio.run(send_with_retries(attempt, background, 30.0))
    asyncio.run(send_with_retries(attempt, ending, 30.0))
    assert timeouts[0] == 30.0 and background.transfer_s() is None  # each wait 30 s, the whole unbounded
    assert timeouts[1] is not None and timeouts[1] <= 1.0
    ending_total = ending.transfer_s()
    assert ending_total is not None and ending_total <= 1.0
    assert Deadline(5.0, cuts_transfers=False).sooner(1.0).cuts_transfers is False


def test_an_upload_to_a_server_that_stopped_reading_times_out(tmp_path: Path) -> None:
    """A server that took the connection and reads nothing (a stopped process; a link dead without a
    reset): the body stops moving and the request ends after the request timeout, with a reason."""
    checkpoint = tmp_path / "ckpt.bin"
    with checkpoint.open("wb") as f:
        f.truncate(64 * MiB)  # more than every socket buffer between here and there holds

    async def both(url: str) -> list[Any]:
        transport = HttpTransport(url, USER)
        try:
            put = await transport.put_file("alice/p/r", "ckpt.bin", checkpoint, {"X-Content-SHA256": "0" * 64},
                                           1.0, None)
            post = await transport.post_events("alice/p/r", os.urandom(32 * MiB), 1.0, None)
            return [put, post]
        finally:
            await transport.close()

    with socket.create_server(("127.0.0.1", 0)) as sink:  # listens; never accepts, never reads
        outcomes = asyncio.run(both(f"http://127.0.0.1:{sink.getsockname()[1]}"))
    for outcome in outcomes:
        assert outcome.status == 0 and outcome.retryable, outcome
        assert outcome.reason == "nothing of the request body was taken for 1 s", outcome


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_a_bulk_body_that_takes_longer_than_the_request_timeout_is_not_cut(tmp_path: Path) -> None:
    """14 MiB at 2 MiB/s with a 5 s request timeout: the body keeps moving, so the server's answer comes
    back (a 400 here: the bytes are no zstd body; what matters is that the server read them all)."""
    server = Server(tmp_path / "data", "--allow-user-name")
    proxy = FaultProxy(server.port, upload_bytes_per_s=2 * MiB)

    async def post() -> Any:
        transport = HttpTransport(proxy.url, USER)
        try:
            return await transport.post_events("alice/p/r", random.Random(3).randbytes(14 * MiB), 5.0, None)
        finally:
            await transport.close()

    try:
        outcome = asyncio.run(post())
    finally:
        proxy.close()
        server.stop()
    assert outcome.status == 400 and "zstd" in outcome.reason, outcome


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_a_checkpoint_and_metric_rows_cross_a_slow_link(workdir: Path, server: Server, monkeypatch: Any) -> None:
    """A 32 MiB checkpoint at 4 MiB/s takes 8 s: twice the request timeout (4 s here, 30 s by default) and
    twice a live upload pass (4 s here, 30 s by default). It crosses in one request, as do the metric
    rows, while the run goes on. (The timeout stays above what the link's buffers hold, up to ~10 MiB
    between the client and the proxy: those bytes reach the server after the client wrote its last, with
    nothing moving for the client meanwhile; at 2 s, a loaded machine timed the request out.)"""
    monkeypatch.setenv("ML_DASH_REQUEST_TIMEOUT_S", "4")
    monkeypatch.setattr(live_upload, "PASS_DEADLINE_S", 4.0)  # the run's agent is in this process
    key = server.key("alice")
    proxy = FaultProxy(server.port, upload_bytes_per_s=4 * MiB)
    checkpoint = random.Random(7).randbytes(32 * MiB)
    rows = 25_000  # random values: about 100 bytes a row
    try:
        exp = Experiment(prefix="alice/proj/slow", remote=proxy.url, api_key=key)
        with exp.run:
            exp.files("checkpoints").save(checkpoint, "ckpt.bin")
            rng = random.Random(8)
            train = exp.metrics("train")
            for _ in range(rows):
                train.log(**{f"f{k}": rng.random() for k in range(10)})

            def arrived() -> bool:  # the stored count (every row is read once, below): no 10 MB read per poll
                status, listing = server.request("GET", "/api/v1/experiments/alice/proj/slow/files", key=key)
                _status, doc = server.document("alice/proj/slow", key=key)
                stored = doc.get("streams", {}).get("metrics/train", 0)
                return status == 200 and len(listing["files"]) == 1 and stored == rows

            wait_for(arrived, "the checkpoint and every row over the slow link", proxy)
        assert [row["index"] for row in server.metric_rows("alice/proj/slow", key=key)] == list(range(rows))
        expected = hashlib.sha256(checkpoint).hexdigest()
        _status, listing = server.request("GET", "/api/v1/experiments/alice/proj/slow/files", key=key)
        assert [f["checksum"] for f in listing["files"]] == [expected]
        stored = _stored_sha256(server, "alice/proj/slow/files/checkpoints/ckpt.bin", {"Authorization": f"Bearer {key}"})
        assert stored == expected
        puts = [line for line in proxy.request_lines if line.startswith("PUT ")]
        assert len(puts) == 1, puts  # a cut transfer is sent again from its start
        assert len(proxy.statuses) == proxy.requests, "a request was given up on the way"
    finally:
        proxy.close()
