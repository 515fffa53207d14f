"""A slow link for tests: a byte rate that is kept precisely, and an HTTP/1.1 client on a real socket
whose request body goes out at that rate.

:class:`Pace` is shared by this client and the fault proxy's throttle (tests/fault_proxy.py). It is a
token bucket with a small burst: what a link delivers at once when a transfer starts (TCP sends its
first segments back to back; HTTP clients write the head with the first part of the body), then
never more than the rate on average since the start, so a 48 MiB body at 3 MiB/s takes 16 s, not
16 s plus every sleep's overshoot. The burst matters: body bytes that arrive right behind the head
are the ones a server can mistake for the next request's head.
"""

from __future__ import annotations

import hashlib
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

MiB = 1 << 20
#: What a sender writes at a time: small, so that a body arrives as a stream of pieces.
PIECE_BYTES = 16 * 1024


class Pace:
    """When the next bytes may go out so that, from the first, ``bytes_per_s`` holds on average."""

    def __init__(self, bytes_per_s: float, burst_bytes: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.bytes_per_s = bytes_per_s
        self.clock = clock
        self._start = clock()
        self._allowed = burst_bytes  # bytes that may go before the rate applies
        self._sent = 0

    def wait_before(self, size: int) -> float:
        """Seconds to wait before sending ``size`` more bytes (0: now); counts them as sent."""
        self._sent += size
        due = self._start + max(0, self._sent - self._allowed) / self.bytes_per_s
        return max(0.0, due - self.clock())


@dataclass(frozen=True, slots=True)
class Body:
    """``size`` bytes that differ everywhere (nothing compresses or repeats them), made piece by piece:
    a 256 MiB body is never whole in memory."""

    size: int
    seed: int = 0

    def pieces(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        left = self.size
        while left > 0:
            piece = rng.randbytes(min(PIECE_BYTES, left))
            left -= len(piece)
            yield piece

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.pieces():
            digest.update(piece)
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: the status (None when the connection closed without one) and the rest."""

    status: int | None
    text: bytes
    error: str | None  # why sending stopped early, if it did


def http_head(method: str, path: str, headers: dict[str, str], content_length: int) -> bytes:
    """A request head that asks the server to close after its reply (so the reply ends at EOF)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {content_length}", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def in_pieces(data: bytes) -> Iterator[bytes]:
    """``data`` as a sender writes it."""
    return (data[start:start + PIECE_BYTES] for start in range(0, len(data), PIECE_BYTES))


def send_slowly(port: int, head: bytes, body: Iterable[bytes], bytes_per_s: float, timeout_s: float = 120.0) -> Reply:
    """Send ``head`` and then the ``body`` pieces at ``bytes_per_s`` to 127.0.0.1:``port``; read the reply
    to its end.

    The head with the first piece, and two more pieces, leave at once; then the rate holds. Sending
    stops at the first error (the server closed, or answered early); what the server said is read
    either way."""
    error, sent = None, 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        pace = Pace(bytes_per_s, burst_bytes=len(head) + 3 * PIECE_BYTES)
        try:
            for piece in _with_head(head, body):
                time.sleep(pace.wait_before(len(piece)))
                conn.sendall(piece)
                sent += len(piece)
        except OSError as exc:
            error = f"{type(exc).__name__} after {sent} bytes"
        return _reply(conn, error)


def _with_head(head: bytes, body: Iterable[bytes]) -> Iterator[bytes]:
    """The head goes out with the first piece, as HTTP clients send it (aiohttp, urllib3)."""
    pieces = iter(body)
    yield head + next(pieces, b"")
    yield from pieces


def _reply(conn: socket.socket, error: str | None) -> Reply:
    text = b""
    try:
        while chunk := conn.recv(65536):
            text += chunk
    except OSError:
        pass  # a reset after the reply, or instead of one: what arrived is the answer
    status = int(text.split(b" ", 2)[1]) if text.startswith(b"HTTP/1.1 ") else None
    return Reply(status, text, error)
