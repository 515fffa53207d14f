"""What one valid key may make a real ``ml-dash server`` process spend (docs/server.md "What one request and
one key may cost"), against a server on 127.0.0.1, for each attack of issue 14 (point 4):

* 100,000 streams in one small body;
* a run's metrics past its limit;
* columns of a million nils in 2 KiB;
* bodies that decode to many small objects (a worker's memory);
* two dozen large bodies at once (the server's and its workers' resident memory, read with psutil);
* a comparison of many runs in many buckets.
"""

from __future__ import annotations

import os
import random
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
import zstandard

from ml_dash.format.wire import LIMITS, encode_body

from .server_process import Server

pytestmark = pytest.mark.timeout(900)
STAMP = "2026-12-01T00:00:00Z"
USER = {"X-ML-Dash-User": "alice"}
#: docs/server.md's bound on the server's memory (the process and its ingest workers) under any requests.
SERVER_MEMORY_BOUND = 768 << 20


def _body(run: str, streams: dict[str, Any]) -> dict[str, Any]:
    return {"v": 2, "identity": {"run_id": run, "writer_id": run}, "reply": "named", "streams": streams}


def _one_row_streams(first: int, count: int) -> dict[str, Any]:
    block = {"keys": ["v"], "cols": [[1]], "created": [[STAMP, 1]]}
    return {f"metrics/m{i:06d}": {"start": 0, "blocks": [block]} for i in range(first, first + count)}


def _post(srv: Server, run: str, raw: bytes, encoding: str = "zstd") -> tuple[int, Any]:
    return srv.request("POST", f"/api/v1/runs/alice/p/{run}/events", raw,
                       {**USER, "Content-Encoding": encoding, "Content-Type": "application/octet-stream"})


def _streams_of(srv: Server, run: str) -> dict[str, int]:
    status, exp = srv.document(f"alice/p/{run}", headers=USER)  # every page of the run's streams
    return exp["streams"] if status == 200 else {}


@pytest.fixture
def dev_server(tmp_path: Path):
    srv = Server(tmp_path / "data", "--allow-user-name")
    yield srv
    srv.stop()


def test_one_small_body_naming_100000_streams_is_a_413_naming_the_limit(dev_server: Server) -> None:
    raw = encode_body(_body("wide", _one_row_streams(0, 100_000)))
    assert len(raw) < 100 << 10  # the body: 79 KiB
    status, reply = _post(dev_server, "wide", raw)
    assert status == 413 and f"at most {LIMITS.max_streams}" in reply["error"], reply
    assert dev_server.request("GET", "/api/v1/experiments/alice/p/wide", headers=USER)[0] == 404  # nothing stored


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_a_run_takes_100000_metrics_over_many_requests_and_refuses_the_next_by_name(dev_server: Server) -> None:
    for first in range(0, 100_000, LIMITS.max_streams):  # the server's defaults
        status, reply = _post(dev_server, "wide", encode_body(_body("wide", _one_row_streams(first, LIMITS.max_streams))))
        assert status == 200, reply
    assert len(_streams_of(dev_server, "wide")) == 100_000
    status, reply = _post(dev_server, "wide", encode_body(_body("wide", _one_row_streams(100_000, 2))))
    assert status == 422 and reply["streams"] == ["metrics/m100000", "metrics/m100001"], reply
    assert "at most 100000 metrics" in reply["error"]
    more = _body("wide", {"metrics/m000007": {"start": 1, "blocks": [{"keys": ["v"], "cols": [[2]], "created": [[STAMP, 1]]}]}})
    assert _post(dev_server, "wide", encode_body(more))[0] == 200  # the run's metrics still take rows


def test_a_request_past_the_runs_metrics_names_only_the_streams_that_do_not_fit(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name", "--max-metrics-per-run", "10")
    try:
        logs = {"logs": {"start": 0, "rows": [{"message": "the log is no metric", "level": "INFO"}]}}
        assert _post(srv, "r", encode_body(_body("r", {**_one_row_streams(0, 8), **logs})))[0] == 200
        status, reply = _post(srv, "r", encode_body(_body("r", _one_row_streams(8, 5))))
        assert status == 422 and reply["streams"] == ["metrics/m000010", "metrics/m000011", "metrics/m000012"], reply
        assert len(_streams_of(srv, "r")) == 9  # nothing of the refused request was stored
        voids = {f"metrics/v{i}": {"start": 0, "void": 1, "reason": "x"} for i in range(3)}  # voids start streams too
        assert _post(srv, "r", encode_body(_body("r", voids)))[0] == 422
        assert _post(srv, "r", encode_body(_body("r", _one_row_streams(8, 2))))[0] == 200
        assert len(_streams_of(srv, "r")) == 11
    finally:
        srv.stop()


def test_columns_of_nils_that_compress_to_nothing_are_refused_before_they_are_decoded(dev_server: Server) -> None:
    def nils(rows: int) -> bytes:
        block = {"keys": [f"c{k}" for k in range(60)], "cols": [[None] * rows] * 60, "created": [[STAMP, rows]]}
        return encode_body(_body("nils", {"metrics/nil": {"start": 0, "blocks": [block]}}))

    # the body (2 KiB for 60,000,000 values), and one within the size cap (6,000,000 values)
    for raw in (nils(1_000_000), nils(100_000)):
        status, reply = _post(dev_server, "nils", raw)
        assert status == 413 and f"at most {LIMITS.max_inflation} times its {len(raw)} bytes" in reply["error"], reply
    assert dev_server.request("GET", "/api/v1/experiments/alice/p/nils", headers=USER)[0] == 404
    # the same values sent as they are cost the client what they cost the server: taken
    block = {"keys": ["a", "b"], "cols": [[None] * 10_000] * 2, "created": [[STAMP, 10_000]]}
    plain = msgpack.packb(_body("nils", {"metrics/nil": {"start": 0, "blocks": [block]}}))
    assert _post(dev_server, "nils", plain, encoding="identity")[0] == 200


def _short_strings(rows: int, columns: int) -> bytes:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pairs = [a + b for a in letters for b in letters]  # drawn whole: a million draws a column take a second, not ten
    cols = [rng.choices(pairs, k=rows) for _ in range(columns)]
    block = {"keys": [f"s{k}" for k in range(columns)], "cols": cols, "created": [[STAMP, rows]]}
    return encode_body(_body("strings", {"metrics/s": {"start": 0, "blocks": [block]}}))


def test_a_body_that_decodes_past_a_workers_memory_is_a_413_and_the_worker_lives_on(dev_server: Server) -> None:
    """Two-letter strings: 3 bytes each on the wire, 59 once decoded; 5,000,000 of them would take ~370 MB."""
    raw = _short_strings(1_000_000, 5)
    status, reply = _post(dev_server, "strings", raw)
    assert status == 413 and "an ingest worker may use" in reply["error"], reply
    assert _post(dev_server, "fine", _short_strings(100_000, 2))[0] == 200  # the same kind of body, smaller
    workers = psutil.Process(dev_server.proc.pid).children(recursive=True)  # under the fork server
    assert len(workers) >= 3, workers  # the fork server and the two workers (and a resource tracker)
    assert all(w.memory_info().rss < 400 << 20 for w in workers), [w.memory_info().rss for w in workers]


def _random_floats(mib: float) -> bytes:
    """Valid msgpack that zstd cannot shrink: 3 columns of random doubles and one of random ints."""
    rows = int(mib * (1 << 20) / 32)  # 9 bytes a float, 5 an int
    floats = list(struct.unpack(f"<{rows * 3}d", os.urandom(rows * 24)))
    ints = list(struct.unpack(f"<{rows}I", os.urandom(rows * 4)))
    block = {"keys": ["a", "b", "c", "n"], "cols": [floats[0::3], floats[1::3], floats[2::3], ints],
             "created": [[STAMP, rows]]}
    return zstandard.ZstdCompressor(level=3).compress(msgpack.packb(_body("big", {"metrics/big": {"start": 0,
                                                                                                 "blocks": [block]}})))


class _Memory(threading.Thread):
    """The most resident memory the server and its workers held together, sampled until stopped, and
    never less than the sum of what each held at its peak and still holds (VmHWM) at the end."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.server = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self._sum(lambda p: p.memory_info().rss))

    def peaks(self) -> int:
        def hwm(proc: psutil.Process) -> int:
            with open(f"/proc/{proc.pid}/status") as status:
                return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmHWM:"))
        return self._sum(hwm)

    def _sum(self, measure: Callable[[psutil.Process], int]) -> int:
        total = 0
        for proc in [self.server, *self.server.children(recursive=True)]:
            try:
                total += measure(proc)
            except (psutil.Error, OSError):
                pass
        return total


def test_two_dozen_large_bodies_at_once_each_get_an_answer_while_health_answers_and_memory_stays_bounded(
        tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name")  # the default head timeout: bodies that wait are answered
    memory = _Memory(srv.proc.pid)
    payload = _random_floats(15.5)
    assert len(payload) <= LIMITS.max_compressed_bytes  # nearly the largest body the server takes
    outcomes: list[tuple[int, str | None]] = []
    health: list[int] = []
    done = threading.Event()

    def send(k: int) -> None:
        try:
            import urllib.error
            import urllib.request

            from .server_process import direct
            req = urllib.request.Request(f"{srv.url}/api/v1/runs/alice/p/big-{k}/events", data=payload, method="POST",
                                         headers={**USER, "Content-Encoding": "zstd"})
            with direct.open(req, timeout=300) as resp:
                outcomes.append((resp.status, None))
        except urllib.error.HTTPError as err:
            outcomes.append((err.code, err.headers.get("Retry-After")))
        except OSError as exc:  # no HTTP answer at all
            outcomes.append((0, repr(exc)))

    def probe() -> None:
        while not done.is_set():
            health.append(srv.request("GET", "/health")[0])

    try:
        memory.start()
        prober = threading.Thread(target=probe)
        prober.start()
        senders = [threading.Thread(target=send, args=(k,)) for k in range(24)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=600)
        done.set()
        prober.join(timeout=60)
        memory.stop.set()
        peak = max(memory.peak, memory.peaks())
    finally:
        srv.stop()
    assert len(outcomes) == 24 and all(status == 200 or (status == 503 and retry) for status, retry in outcomes), outcomes
    assert any(status == 200 for status, _ in outcomes)
    assert health and set(health) == {200}
    assert peak < SERVER_MEMORY_BOUND, f"{peak >> 20} MiB"
    assert "Traceback" not in srv.stderr, srv.stderr[-3000:]


def test_a_client_gone_in_the_middle_of_its_body_is_no_server_error(tmp_path: Path) -> None:
    """A body cut off by its client raised ConnectionResetError in the handler: a 500 and a traceback."""
    import socket

    srv = Server(tmp_path / "data", "--allow-user-name")
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
                sock.sendall(b"POST /api/v1/runs/alice/p/cut/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"X-ML-Dash-User: alice\r\nContent-Encoding: zstd\r\nContent-Length: 1000000\r\n\r\n"
                             + b"\0" * 100_000)
        assert srv.request("GET", "/health")[0] == 200
        assert _post(srv, "cut", encode_body(_body("cut", _one_row_streams(0, 1))))[0] == 200
    finally:
        srv.stop()
    assert "Traceback" not in srv.stderr and "internal error" not in srv.stderr, srv.stderr[-3000:]


def test_a_comparison_is_bounded_by_its_buckets_in_all_not_per_run(dev_server: Server) -> None:
    """50 runs of 10,000 buckets each was half a million buckets (gigabytes of JSON for a wide metric)."""
    runs = ",".join(f"alice/p/r{k}" for k in range(50))
    status, reply = dev_server.request("GET", f"/api/v1/compare/metrics/train?runs={runs}&buckets=10000", headers=USER)
    assert status == 400 and "at most 200000 buckets in all" in reply["error"], reply
    status, reply = dev_server.request("GET", f"/api/v1/compare/metrics/train?runs={runs}&buckets=4000", headers=USER)
    assert status == 200 and len(reply["runs"]) == 50  # a chart 4,000 pixels wide, of 50 runs


@pytest.mark.parametrize("flag", ["--body-memory-mb", "--worker-memory-mb", "--max-metrics-per-run"])
def test_a_limit_flag_out_of_its_range_is_one_line_naming_it(tmp_path: Path, flag: str) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "server", "--data", str(tmp_path), flag, "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith(f"ml-dash server: {flag} 0 must be within"), out.stderr


def test_a_file_upload_declaring_more_than_the_server_takes_is_refused_before_its_body(server: Server) -> None:
    """A file PUT whose Content-Length is past the per-file limit gets 413 at once (it was read until the
    body went silent, then 408)."""
    import socket

    key = server.key("alice")
    head = (f"PUT /api/v1/runs/alice/p/r/files/big.bin HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {10**15}\r\nX-Content-SHA256: {'0' * 64}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as conn:
        conn.sendall(head.encode() + b"x" * 1024)
        reply = conn.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "at most" in reply
