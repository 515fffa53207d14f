"""A fault-injecting TCP proxy for tests (toxiproxy is not installable here).

An asyncio server on 127.0.0.1:0 in a background thread forwards each client
connection to the upstream server. Per connection, with probability ``rate``
(seeded, so runs repeat), it applies the current ``mode``:

* ``pass``          forward untouched
* ``down``          accept, then close at once (a server that is not there)
* ``reset_before``  read the request, then reset without forwarding it
* ``reset_after``   forward the request, wait for the server's answer (it has
                    committed), then reset instead of delivering it
* ``status``        answer ``status_line`` with ``Retry-After: retry_after`` itself
* ``latency``       forward, delaying the answer by ``latency_s``
* ``hold``          read the request, hold it ``latency_s``, then forward it even when the client has
                    given up on it by then (a request that sat in a queue on its way arrives late,
                    after the ones that replaced it); its answer goes to the client if it is still there

``only`` (a substring of the request line) and ``limit`` (how many requests at most) narrow which
requests a request-level mode may hit (``down`` refuses whole connections, before any request line).

Whatever the mode but ``hold``, ``upload_bytes_per_s`` (None: as fast as it comes) throttles
the request bodies it forwards, as a slow link between a job and the server
would: streamed piece by piece at that rate (tests/slow_link.py keeps it
precise), never held whole.

It speaks just enough HTTP/1.1 (Content-Length bodies) to decide a fault per
request on a keep-alive connection, as a real middlebox failure would hit any
request. Connections, requests and faults are counted; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from dataclasses import dataclass, field

from .slow_link import Pace

#: What the proxy's side of a client connection buffers (the kernel doubles it).
LINK_BUFFER_BYTES = 64 * 1024


@dataclass
class FaultProxy:
    upstream_port: int
    mode: str = "pass"
    rate: float = 1.0
    status_line: str = "503 Service Unavailable"
    retry_after: str | None = "1"
    latency_s: float = 0.0
    upload_bytes_per_s: float | None = None
    only: str = ""  # fault only requests whose request line contains this
    limit: int | None = None  # fault at most this many requests (None: no limit)
    seed: int = 1234
    connections: int = 0
    requests: int = 0  # HTTP requests, whatever connection carried them (keep-alive hides a hot loop)
    request_lines: list[str] = field(default_factory=list)  # "PUT /api/v1/... HTTP/1.1", in order
    faults: int = 0
    held_forwarded: int = 0  # ``hold`` requests forwarded once their time was up
    statuses: list[int] = field(default_factory=list)  # of the responses passed on (a held one's client may be gone)
    port: int = 0
    _loop: asyncio.AbstractEventLoop = field(init=False, repr=False)
    _thread: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        started = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True, name="fault-proxy")
        self._thread.start()
        assert started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def attach(self, upstream_port: int) -> None:
        """Forward to the server on ``upstream_port`` from now on (unfaulted)."""
        self.set(upstream_port=upstream_port, mode="pass")

    def detach(self) -> None:
        """Behave as a server that is not there (every connection reset)."""
        self.set(mode="down")

    def set(self, **settings: object) -> None:
        for key, value in settings.items():
            setattr(self, key, value)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        listener = socket.create_server(("127.0.0.1", 0))
        # A link holds a fraction of a second of data, not the megabytes loopback lets the kernel take in
        # (receive buffers grow to 6 MiB there): a sender throttled here is then seen to be throttled
        # by its socket, as it would be by a slow link, instead of finishing its writes while seconds of
        # its body still wait in buffers. Accepted connections inherit the size.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_BUFFER_BYTES)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, sock=listener))
        self.port = self._server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: request by request (keep-alive), a fault decided for each."""
        self.connections += 1
        up_writer = None
        try:
            if self.mode == "down" and self._rng.random() < self.rate:
                self.faults += 1
                _reset(writer)
                return
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.upstream_port), 5)
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                self.requests += 1
                self.request_lines.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
                line = self.request_lines[-1]
                mode = self.mode if self.mode != "pass" and self._rng.random() < self.rate else "pass"
                if self.only not in line or (self.limit is not None and self.faults >= self.limit):
                    mode = "pass"
                if mode != "pass":
                    self.faults += 1
                if mode in ("reset_before", "down", "status"):  # the whole request arrives; none goes on
                    await _forward(reader, None, _content_length(await _continue(head, writer)), None)
                if mode in ("reset_before", "down"):
                    _reset(writer)
                    return
                if mode == "status":
                    headers = f"HTTP/1.1 {self.status_line}\r\nContent-Length: 2\r\nConnection: close\r\n"
                    if self.retry_after is not None:
                        headers += f"Retry-After: {self.retry_after}\r\n"
                    writer.write((headers + "\r\n{}").encode())
                    await writer.drain()
                    writer.close()
                    return
                head = await _continue(head, writer)
                if mode == "hold":
                    response = await self._hold(head, reader, up_reader, up_writer)
                else:
                    up_writer.write(head)
                    await _forward(reader, up_writer, _content_length(head), self.upload_bytes_per_s)
                    response = await _read_message(up_reader, body=not head.startswith(b"HEAD "))
                if response is None:
                    _reset(writer)
                    return
                if mode == "reset_after":
                    _reset(writer)  # the server answered (so it committed); the client never hears it
                    return
                if mode == "latency":
                    await asyncio.sleep(self.latency_s)
                self.statuses.append(int(response.split(b" ", 2)[1]))
                writer.write(response)
                await writer.drain()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            _reset(writer)
        finally:
            if up_writer is not None:
                up_writer.close()


    async def _hold(self, head: bytes, reader: asyncio.StreamReader, up_reader: asyncio.StreamReader,
                    up_writer: asyncio.StreamWriter) -> bytes | None:
        """The ``hold`` mode: the whole request read, held, then sent on, whatever the client did meanwhile."""
        length = _content_length(head)
        body = await asyncio.wait_for(reader.readexactly(length), 120) if length else b""
        await asyncio.sleep(self.latency_s)
        up_writer.write(head + body)
        response = await _read_message(up_reader, body=not head.startswith(b"HEAD "))
        self.held_forwarded += 1
        return response


async def _continue(head: bytes, writer: asyncio.StreamWriter) -> bytes:
    """A request that waits for ``100 Continue`` before its body (botocore's PutObject and UploadPart)
    gets it from the proxy, which forwards the head without the ``Expect``: the proxy reads a request
    whole before it forwards the answer, so the upstream's own interim answer would stall both."""
    lines = head.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(b"expect:")]
    if len(kept) == len(lines):
        return head
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await writer.drain()
    return b"\r\n".join(kept)


async def _read_message(reader: asyncio.StreamReader, body: bool = True) -> bytes | None:
    """One HTTP/1.1 message with a Content-Length body (all this project's traffic), or None at EOF. An
    answer to HEAD (``body`` False) has none, whatever its Content-Length says (S3's HEAD Object)."""
    head = await _read_head(reader)
    if head is None:
        return None
    length = _content_length(head) if body else 0
    body = await asyncio.wait_for(reader.readexactly(length), 120) if length else b""
    return head + body


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """A message's head, or None at EOF."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None


def _content_length(head: bytes) -> int:
    length = 0
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
        if line.lower().startswith("transfer-encoding:") and "chunked" in line.lower():
            raise ValueError("chunked bodies are not supported by this proxy")
    return length


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, length: int,
                   bytes_per_s: float | None) -> None:
    """``length`` body bytes from ``reader`` to ``writer`` (None: read and dropped), in pieces, at
    ``bytes_per_s`` at most (None: as they come). Each piece waits 120 s at most."""
    pace = Pace(bytes_per_s) if bytes_per_s else None
    piece_bytes = max(4096, int(bytes_per_s / 50)) if bytes_per_s else 1 << 20  # 50 pieces a second
    left = length
    while left:
        piece = await asyncio.wait_for(reader.read(min(piece_bytes, left)), 120)
        if not piece:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(piece)
        if pace is not None:
            await asyncio.sleep(pace.wait_before(len(piece)))
        if writer is not None:
            writer.write(piece)
            await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.close()
