"""Bodies that trickle hold of a real server's body budget (server/http/admission.py) only what they have
sent, and not for ever (docs/server.md "What one request and one key may cost"): two keys each trickling
bodies, whether from their first byte, after sending nearly 16 MiB at once, or as file uploads, do
not stop a third client's ingest; every trickling request is answered; no traceback.

Before: a chunked body reserved the 16 MiB it may grow to before its first byte, and a file upload
its 1 MiB piece for its whole life, for as long as bytes kept coming; two keys filled the 64 MiB and
every other client got 503 for as long as they trickled.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload.retry import Outcome, send_with_retries
from ml_dash.agent.upload.transport import HttpTransport
from ml_dash.format.wire import encode_body, metric_blocks

from .server_process import Server
from .trickle import Trickler, chunk
from .waiting import PATIENCE_S, wait_for

pytestmark = pytest.mark.timeout(600)
MiB = 1 << 20


def _ingest_head(owner: str, run: str) -> bytes:
    return (f"POST /api/v1/runs/{owner}/p/{run}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-ML-Dash-User: {owner}\r\n"
            "Content-Encoding: zstd\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()


def _file_head(owner: str, name: str) -> bytes:
    return (f"PUT /api/v1/runs/{owner}/p/files-run/files/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-ML-Dash-User: {owner}\r\nX-Content-SHA256: {'0' * 64}\r\nContent-Length: 1000000\r\n"
            "Connection: close\r\n\r\n").encode()


def _ingests(srv: Server, owner: str, run: str) -> int:
    """The status of a small valid ingest body from ``owner`` (one metric row)."""
    block = {"keys": ["v"], "cols": [[1]], "created": [["2026-12-01T00:00:00Z", 1]]}
    body = {"v": 2, "identity": {"run_id": run, "writer_id": run}, "streams": {"metrics/m": {"start": 0, "blocks": [block]}}}
    return srv.request("POST", f"/api/v1/runs/{owner}/p/{run}/events", encode_body(body),
                       {"X-ML-Dash-User": owner, "Content-Encoding": "zstd", "Content-Type": "application/octet-stream"})[0]


def _server(tmp_path: Path) -> Server:
    # a short silence timeout: the drips (every 0.5 s) keep a body alive; silence ends it in 3 s
    return Server(tmp_path / "data", "--allow-user-name", "--body-timeout-s", "3")


def test_two_keys_trickling_bodies_from_their_first_byte_leave_room_for_others(tmp_path: Path) -> None:
    srv = _server(tmp_path)
    trickle = Trickler(srv.port)
    try:
        # each key two chunked bodies: before, 2 x 16 MiB reserved each, a key's whole half
        for owner in ("bob", "carol"):
            for k in range(2):
                trickle.open(_ingest_head(owner, f"t{k}"), drip=chunk(b"x"))
        trickle.open(_ingest_head("bob", "t-first"), first=chunk(b"x"), drip=chunk(b"x"))
        wait_for(lambda: srv.request("GET", "/health")[0] == 200, "the server answers")
        statuses = [_ingests(srv, "alice", f"a{k}") for k in range(3)]  # while they trickle
        assert statuses == [200, 200, 200], statuses
        trickle.stop_dripping()  # silent now: the body timeout answers each
        wait_for(trickle.all_answered, "every trickling request answered", trickle.statuses)
        assert set(trickle.statuses()) == {408}, trickle.statuses()
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def test_two_keys_opening_many_small_trickling_bodies_leave_room_for_a_third_and_are_told_their_limit(
        tmp_path: Path) -> None:
    """A body under its first step holds that step (256 KiB) and keeps no pace: 128 such bodies of one key
    held its half of the budget, and two keys all of it (the third key's ingest got 503). A key has at most
    64 bodies under way now; one more gets 429 with Retry-After, naming the limit."""
    srv = _server(tmp_path)
    trickle = Trickler(srv.port)
    per_key = 130  # more than the 128 that filled a key's half
    try:
        for owner in ("bob", "carol"):
            for k in range(per_key):
                trickle.open(_ingest_head(owner, f"s{k}"), first=chunk(b"x"), drip=chunk(b"x"))
        # every head read (the bodies admitted, or refused) before the third key comes: else it could come first
        wait_for(lambda: trickle.unread() == 0, "the server has read every head", trickle.unread)
        statuses = [_ingests(srv, "alice", f"a{k}") for k in range(3)]
        assert statuses == [200, 200, 200], statuses
        wait_for(lambda: sum(conn.status == 429 for conn in trickle.conns) == 2 * (per_key - 64),
                 "each key's bodies past 64 refused with 429", trickle.statuses)
        over = [conn for conn in trickle.conns if conn.status == 429]
        assert all(b"Retry-After: 2" in conn.reply and b"the most one key may have at once (64" in conn.reply
                   for conn in over), over[0].reply
        trickle.stop_dripping()  # silent now: the body timeout answers the others
        wait_for(trickle.all_answered, "every trickling request answered", trickle.statuses)
        assert set(trickle.statuses()) == {408, 429}, trickle.statuses()
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def test_bodies_trickling_from_their_first_byte_are_cut_for_their_pace_while_they_still_drip(
        tmp_path: Path) -> None:
    """Four keys each at their limit of 64 bodies, each body sending a byte every 0.5 s from its first,
    held 4 x 64 x 256 KiB: the whole 64 MiB, for as long as they dripped (a body kept its pace only past
    its first step). A body keeps its pace (64 KiB/s, the body timeout's 3 s of slack) from its first byte
    now: each is answered 408 naming the pace while it still drips, and a fifth key's ingest gets in."""
    srv = _server(tmp_path)
    trickle = Trickler(srv.port)
    try:
        for owner in ("bob", "carol", "dave", "erin"):
            for k in range(64):
                trickle.open(_ingest_head(owner, f"d{k}"), first=chunk(b"x"), drip=chunk(b"x"))
        wait_for(trickle.all_answered, "every dripping body answered while it drips", trickle.statuses)
        assert set(trickle.statuses()) == {408}, trickle.statuses()
        assert all(b"slower than 65536 bytes/s" in conn.reply for conn in trickle.conns), trickle.conns[0].reply
        assert _ingests(srv, "alice", "after") == 200
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def test_file_uploads_and_ingest_bodies_count_alike_against_a_keys_limit(tmp_path: Path) -> None:
    """--max-bodies-per-key 4: two ingest bodies and two file uploads of one key under way; its next body,
    of either kind, is refused 429 naming the limit; another key's is not; the key's SDK waits as told
    and gets in once its bodies are answered."""
    srv = Server(tmp_path / "data", "--allow-user-name", "--body-timeout-s", "3", "--max-bodies-per-key", "4")
    trickle = Trickler(srv.port)
    try:
        for k in range(2):
            trickle.open(_ingest_head("bob", f"t{k}"), first=chunk(b"x"), drip=chunk(b"x"))
            trickle.open(_file_head("bob", f"f{k}.bin"), first=b"x")
        wait_for(lambda: trickle.unread() == 0, "the server has read every head", trickle.unread)
        refused = [trickle.open(_file_head("bob", "more.bin"), first=b"x"),
                   trickle.open(_ingest_head("bob", "more"), first=chunk(b"x"), drip=chunk(b"x"))]
        wait_for(lambda: all(conn.status for conn in refused), "the fifth and sixth answered",
                 lambda: [conn.reply[:200] for conn in refused])
        for conn in refused:
            assert conn.status == 429 and b"Retry-After: 2" in conn.reply, conn.reply
            assert b'bob has 4 request bodies under way, the most one key may have at once (4' in conn.reply
            assert b'"limit":4}' in conn.reply, conn.reply
        assert _ingests(srv, "alice", "a") == 200
        trickle.stop_dripping()  # silent now: answered 408 in 3 s, and bob's bodies are under his limit again
        outcomes: list[Outcome] = []

        async def sdk_sends() -> Outcome:  # bob's SDK meanwhile: told 429 and when to retry, it waits and gets in
            transport = HttpTransport(srv.url, {"X-ML-Dash-User": "bob"})

            async def attempt(timeout_s: float | None) -> Outcome:
                outcomes.append(await transport.post_events("bob/p/sdk", _rows_body("sdk", 10), timeout_s or 30.0, None))
                return outcomes[-1]

            try:
                return await send_with_retries(attempt, Deadline(PATIENCE_S), 30.0)
            finally:
                await transport.close()

        assert asyncio.run(sdk_sends()).status == 200, outcomes
        assert outcomes[0].status == 429 and outcomes[0].retry_after_s == 2, outcomes
        wait_for(trickle.all_answered, "every trickling request answered", trickle.statuses)
        assert sorted(trickle.statuses()) == [408] * 4 + [429] * 2, trickle.statuses()
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def _rows_body(run: str, rows: int) -> bytes:
    """A valid ingest body of ``rows`` rows of random values (about 100 bytes a row once compressed)."""
    rng = random.Random(run)
    data = [{"data": {f"f{k}": rng.random() for k in range(10)}, "createdAt": "2026-12-01T00:00:00.000000Z"}
            for _ in range(rows)]
    return encode_body({"v": 2, "identity": {"run_id": run, "writer_id": run},
                        "streams": {"metrics/train": {"start": 0, "blocks": metric_blocks(data)}}})


@pytest.mark.slow  # about 20 s on 2 cores: left out of the fast ring (docs/development.md)
def test_bodies_that_send_nearly_16_mib_and_then_trickle_are_cut_and_the_sdk_gets_in(tmp_path: Path) -> None:
    """Holding only what was sent is not enough alone: 4 bodies of 16 MiB less 512 KiB, sent at once and
    then a byte every 0.5 s, truly hold 62 to 63 of the 64 MiB (a 3 MiB body is refused 503 part-way
    while they do). Past its first step a body must keep 64 KiB/s on average, with the body timeout's slack
    (20 s here): these get 408 and give their bytes back. A third key's 2.5 MiB body, sent by the SDK's
    transport under its retry policy, is refused part-way with 503 and Retry-After, waits as told, and
    is accepted once they are cut."""
    srv = Server(tmp_path / "data", "--allow-user-name", "--body-timeout-s", "20")
    trickle = Trickler(srv.port)
    body = _rows_body("after", 32_000)
    assert len(body) > 2 * MiB
    try:
        for owner in ("bob", "carol"):
            for k in range(2):
                trickle.open(_ingest_head(owner, f"fast{k}"), first=chunk(bytes(16 * MiB - 512 * 1024)),
                             drip=chunk(b"x"))
        # probe only once the server has read them: a probe read alongside a body still arriving may take the
        # room that body needs, and then the body, not the probe, is refused (and holds nothing after)
        wait_for(lambda: trickle.unread() == 0, "the server has read the four bodies", trickle.unread)
        # 400 once read whole; 503 while there is no room for it. 3 MiB: more than the 2 MiB the four bodies
        # leave whether or not each also holds its 256 KiB step ahead (a 2 MiB probe fitted exactly when a
        # loaded machine had them hold just what they sent)
        garbage = random.Random(0).randbytes(3 * MiB)
        probes: list[int] = []

        def probe_refused() -> bool:
            probes.append(srv.request("POST", "/api/v1/runs/dave/p/probe/events", garbage,
                                      {"X-ML-Dash-User": "dave", "Content-Encoding": "zstd"})[0])
            return probes[-1] == 503

        wait_for(probe_refused, "the trickling bodies hold the budget", lambda: (probes, trickle.statuses()))
        outcomes: list[Outcome] = []

        async def sdk_sends() -> Outcome:
            transport = HttpTransport(srv.url, {"X-ML-Dash-User": "alice"})

            async def attempt(timeout_s: float | None) -> Outcome:
                outcomes.append(await transport.post_events("alice/p/after", body, timeout_s or 30.0, None))
                return outcomes[-1]

            try:
                return await send_with_retries(attempt, Deadline(PATIENCE_S), 30.0)
            finally:
                await transport.close()

        last = asyncio.run(sdk_sends())
        assert last.status == 200, (last, outcomes)
        refused = [o for o in outcomes if o.status == 503]
        assert refused and all(o.retry_after_s for o in refused), outcomes  # refused part-way, told when to retry
        assert {o.status for o in outcomes} <= {200, 503}, outcomes
        assert len(srv.metric_rows("alice/p/after", headers={"X-ML-Dash-User": "alice"})) == 32_000
        wait_for(trickle.all_answered, "every trickling request answered", trickle.statuses)
        # cut for its pace (408), or found no room to grow when another's first step came first (503)
        assert set(trickle.statuses()) <= {408, 503} and 408 in trickle.statuses(), trickle.statuses()
        assert all(b"slower than 65536 bytes/s" in conn.reply for conn in trickle.conns if conn.status == 408)
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def test_trickling_file_uploads_hold_nothing_of_the_budget(tmp_path: Path) -> None:
    """A file upload held its 1 MiB piece for its whole life: 33 trickling uploads per key took the
    64 MiB. Now a piece is held while it is written, and an upload that waits for bytes holds none."""
    srv = _server(tmp_path)
    trickle = Trickler(srv.port)
    try:
        for owner in ("bob", "carol"):
            for k in range(33):
                trickle.open(_file_head(owner, f"f{k}.bin"), first=b"x")
        wait_for(lambda: srv.request("GET", "/health")[0] == 200, "the server answers")
        statuses = [_ingests(srv, "alice", f"a{k}") for k in range(3)]
        assert statuses == [200, 200, 200], statuses
        trickle.stop_dripping()
        wait_for(trickle.all_answered, "every trickling upload answered", trickle.statuses)
        assert set(trickle.statuses()) == {408}, trickle.statuses()
    finally:
        trickle.close()
        srv.stop()
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]
