"""Reading request bodies with a bound on their size and on the time between their pieces.

A client that stops sending in the middle of a body (or sends a byte now and then) would otherwise
hold its handler, its connection and what was read so far until the connection dies. Every read of
a body waits at most ``idle_timeout_s`` for its next piece; then the request fails with 408 (which a
client retries: the server is fine, the transfer was not); so does a body whose connection is lost.

A body that holds memory of the server's body budget (server/http/admission.py) must also keep a pace
(:class:`Pace`): a byte now and then is not silence, and a body that sent 16 MiB at once and then
trickled held them for as long as it trickled, whoever waited for room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..errors import PayloadTooLarge, RequestTimeout
from .admission import BODY_STEP_BYTES, BodyHold


class Pace:
    """The slowest a body that holds memory may arrive: ``bytes_per_s`` on average since its start, with
    at most ``bank_s`` seconds of credit ahead (bytes sent fast early buy ``bank_s`` of trickling, not
    an hour of it). Kept from its first byte: a body holds a step of the budget before it sends it, and
    one kept only past its first step held that step (256 KiB) for as long as it sent a byte now and then;
    four keys of 64 such bodies held the whole budget for as long as they liked. A legitimate slow link is not cut: a body at ``bytes_per_s`` or faster never falls behind,
    however large, and a small one has ``bank_s`` to arrive whole.
    """

    def __init__(self, bytes_per_s: int, bank_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bytes_per_s = bytes_per_s
        self.bank_s = bank_s
        self.clock = clock
        self.received = 0
        self._due = clock() + bank_s  # when the body is behind its pace if nothing more arrives

    def arrived(self, size: int) -> None:
        self.received += size
        if self.bytes_per_s > 0:
            self._due = min(self.clock() + self.bank_s, self._due + size / self.bytes_per_s)

    def seconds_left(self) -> float | None:
        """Until the body is behind its pace (0 or less: it is); None while it is not kept."""
        if self.bytes_per_s <= 0:
            return None
        return self._due - self.clock()

    def behind(self) -> RequestTimeout:
        return RequestTimeout(f"the request body arrived slower than {self.bytes_per_s} bytes/s on average "
                              f"(after {self.received} bytes); a body the server holds in memory must keep that pace")


def declared_size(request: web.Request, max_bytes: int) -> int:
    """The bytes the body will take: its ``Content-Length`` (413 at once past ``max_bytes``, before a byte
    of it is read), or ``max_bytes`` when it sends none (chunked)."""
    length = request.content_length
    if length is None:
        return max_bytes
    if length > max_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes is over {max_bytes} bytes")
    return length


class WholeWithin:
    """A body that must arrive whole within ``seconds`` of its first read, kept as a :class:`Pace` is (one
    deadline checked between reads: a ``wait_for`` around the whole read could lose its cancellation to a
    read finishing at that moment, and then wait for as long as the body trickled)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._due = clock() + seconds

    def arrived(self, size: int) -> None:
        pass

    def seconds_left(self) -> float:
        return self._due - self.clock()

    def behind(self) -> RequestTimeout:
        return RequestTimeout(f"the request body did not arrive whole within {self.seconds:g} s")


async def read_body(request: web.Request, max_bytes: int, idle_timeout_s: float,
                    whole_within_s: float | None = None) -> bytes:
    """The whole body, at most ``max_bytes`` (413 beyond); with ``whole_within_s``, all of it within that
    long (408 past it). For a small body read before the server knows its caller (a sign-in): it holds
    no budget, so no pace bounds it, and a byte every few seconds held its connection for a day."""
    deadline = None if whole_within_s is None else WholeWithin(whole_within_s)
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(request, 1 << 20, idle_timeout_s, deadline):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body over {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def read_held_body(request: web.Request, max_bytes: int, hold: BodyHold, idle_timeout_s: float,
                         min_bytes_per_s: int) -> bytes:
    """The whole body, at most ``max_bytes`` (413 beyond), holding of the body budget what has arrived
    and a step ahead (no more than its Content-Length): 503 when the budget has no room for the next
    step. From its first byte it keeps a :class:`Pace` of ``min_bytes_per_s`` (0: none) with
    ``idle_timeout_s`` of credit, or fails with 408."""
    cap = min(request.content_length or max_bytes, max_bytes)
    pace = Pace(min_bytes_per_s, idle_timeout_s)
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(request, 1 << 20, idle_timeout_s, pace):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body over {max_bytes} bytes")
        hold.cover(min(cap, (size // BODY_STEP_BYTES + 1) * BODY_STEP_BYTES))
        parts.append(chunk)
    return b"".join(parts)


#: The share of the body timeout a wait cut by the pace must have lasted for the body to be told it was silent.
_SILENCE_SHARE = 0.9


async def body_chunks(request: web.Request, size: int, idle_timeout_s: float,
                      pace: Pace | WholeWithin | None = None) -> AsyncIterator[bytes]:
    """The body in pieces of up to ``size`` bytes, each awaited at most ``idle_timeout_s`` (and, with
    ``pace``, no longer than the body may take to keep it, or to arrive whole)."""
    while True:
        left = pace.seconds_left() if pace is not None else None
        if left is not None and left <= 0:
            assert pace is not None
            raise pace.behind()
        wait_s = idle_timeout_s if left is None else min(idle_timeout_s, left)
        try:
            chunk = await asyncio.wait_for(request.content.read(size), wait_s)
        except asyncio.TimeoutError:
            # A body silent for (nearly) the whole body timeout is told so, though its pace, kept from its
            # first byte with the same slack, ran out a moment first: silence is what it has to fix
            if wait_s < idle_timeout_s * _SILENCE_SHARE:
                assert pace is not None
                raise pace.behind() from None
            raise RequestTimeout(f"no part of the request body arrived for {idle_timeout_s:g} s") from None
        except ConnectionResetError:  # the client went away mid-body: its fault, and no bug of ours (no 500)
            raise RequestTimeout("the connection was lost before the whole request body arrived") from None
        if not chunk:
            return
        if pace is not None:
            pace.arrived(len(chunk))
        yield chunk
