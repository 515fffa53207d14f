"""A fake transport for the uploader's status branches: a small in-memory server and a script of faults.

The uploader sees it through the Transport seam (agent/upload/transport.py). Each
request first takes the next scripted reply, if any (a status, Retry-After,
a body, or a callable deciding from the request, which stays first while it
answers None); once the script is used up
it is answered the way the real server answers: rows stored once per index,
409 with the counts for a batch past them, the counts of the request's streams and
the run's totals in a 2xx (every stream's count for a body without ``"reply": "named"``, as the server
answers an older client on a small run).
Time is a fake clock that only moves when the uploader sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from ml_dash.agent.upload.retry import Outcome
from ml_dash.format.wire import block_rows, decode_body, metric_rows


@dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Request:
    kind: str  # events | file | run
    body: dict[str, Any] | None = None
    path: str | None = None
    timeout_s: float | None = None  # what the uploader allowed each wait of this request

    def data(self, stream: str) -> list[Any]:
        """The rows' data (metric fields, or the log records), in order."""
        payload = (self.body or {}).get("streams", {}).get(stream) or {}
        if "rows" in payload:
            return [msgpack.unpackb(bytes(r)) if isinstance(r, (bytes, bytearray)) else r for r in payload["rows"]]
        return [row["data"] for row in metric_rows(0, payload.get("blocks", []))]

    def rows(self, stream: str) -> int:
        payload = (self.body or {}).get("streams", {}).get(stream)
        if payload is None or "void" in payload:
            return 0
        if "rows" in payload:
            return len(payload["rows"])
        return sum(block_rows(b) for b in payload["blocks"])


Reply = Outcome | Callable[[Request], Outcome | None]


class FakeTransport:
    """Scripted replies, then a well-behaved server; every request recorded."""

    remote = "http://fake.invalid"

    def __init__(self, script: list[Reply] | None = None, clock: FakeClock | None = None) -> None:
        self.script: list[Reply] = list(script or [])
        self.clock = clock
        self.requests: list[Request] = []
        self.stored: dict[str, int] = {}
        self.rows: dict[str, dict[int, Any]] = {}
        self.voids: dict[str, list[tuple[int, int, str]]] = {}
        self.files: dict[str, bytes] = {}
        self.run_id: str | None = None
        self.closed = False
        self.hanging = 0  # this many requests from now on never get an answer (until cancelled)

    async def post_events(self, prefix: str, body: bytes, timeout_s: float, total_s: float | None,
                          encoding: str = "zstd") -> Outcome:
        request = Request("events", decode_body(body, encoding), timeout_s=timeout_s)
        if self.hanging:
            self.hanging -= 1
            self.requests.append(request)
            await asyncio.Event().wait()  # a server that accepted the connection and went silent
        return self._answer(request, self._store)

    async def put_file(self, prefix: str, path: str, source: Path, headers: dict[str, str], timeout_s: float,
                       total_s: float | None) -> Outcome:
        request = Request("file", path=path, timeout_s=timeout_s)

        def store(_: Request) -> Outcome:
            self.files[path] = Path(source).read_bytes()
            return Outcome(200, body={"path": path})

        return self._answer(request, store)

    async def get_run(self, prefix: str, timeout_s: float) -> Outcome:
        request = Request("run", timeout_s=timeout_s)

        def describe(_: Request) -> Outcome:
            if self.run_id is None:
                return Outcome(404, body={"error": "no such run"})
            return Outcome(200, body={"run_id": self.run_id, "streams": dict(self.stored)})

        return self._answer(request, describe)

    async def close(self) -> None:
        self.closed = True

    def lose_everything(self) -> None:
        """The server at the same URL comes back with a fresh store."""
        self.stored.clear()
        self.rows.clear()
        self.voids.clear()
        self.files.clear()
        self.run_id = None

    def events(self) -> list[Request]:
        return [r for r in self.requests if r.kind == "events"]

    def _answer(self, request: Request, normal: Callable[[Request], Outcome]) -> Outcome:
        self.requests.append(request)
        if self.script:  # a callable that answers None lets this request through and waits for the next
            reply = self.script[0]
            outcome = reply(request) if callable(reply) else reply
            if outcome is not None:
                self.script.pop(0)
                return outcome
        return normal(request)

    def _store(self, request: Request) -> Outcome:
        body = request.body or {}
        identity = body.get("identity", {})
        if self.run_id is not None and identity.get("run_id") != self.run_id:
            return Outcome(409, body={"error": "another run", "conflict": {"kind": "run", "run_id": self.run_id}})
        for stream, payload in body.get("streams", {}).items():
            if payload["start"] > self.stored.get(stream, 0):
                return Outcome(409, body={"error": "gap", **self._acknowledgement(body)})
        self.run_id = identity.get("run_id")
        for stream, payload in body.get("streams", {}).items():
            start = payload["start"]
            if "void" in payload:
                end = start + payload["void"]
                if end > self.stored.get(stream, 0):
                    self.voids.setdefault(stream, []).append((start, payload["void"], payload["reason"]))
            else:
                end = start + request.rows(stream)
                kept = self.rows.setdefault(stream, {})
                settled = self.stored.get(stream, 0)  # as the server: rows below it are a resend, not stored
                for index, data in zip(range(start, end), request.data(stream)):
                    if index >= settled:
                        kept[index] = data
            self.stored[stream] = max(self.stored.get(stream, 0), end)
        return Outcome(200, body=self._acknowledgement(body))

    def _acknowledgement(self, body: dict[str, Any]) -> dict[str, Any]:
        """A reply's counts (ml_dash/format/wire.py, "Replies")."""
        if body.get("reply") == "named":
            acked = {stream: self.stored.get(stream, 0) for stream in body.get("streams", {})}
        else:
            acked = dict(self.stored)
        return {"acked": acked, "run_streams": len(self.stored), "run_rows": sum(self.stored.values())}
