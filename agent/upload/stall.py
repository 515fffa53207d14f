"""A request body's time limit that is about silence, not length.

aiohttp's client has a total timeout, which cuts a transfer that keeps moving (a 64 MiB checkpoint
over a 2 MiB/s link takes 32 s), and ``sock_read``, which starts only once the whole body is sent:
nothing of aiohttp's notices a server that stops taking a body half-way (a stopped process, a link
that died without a reset), and the upload would wait on it for ever. S3 clients time a transfer
out the same way in both directions: botocore's ``read_timeout`` bounds each socket operation and
there is no total. Here the body goes out in pieces; each piece the connection takes is progress,
and a :class:`StallGuard` ends the request when none was taken for ``idle_s``. Once the body is
sent, ``sock_read`` bounds the wait for the answer.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import BinaryIO, final

#: One piece of a body: small enough that progress is seen often on a slow link (0.1 s at 2 MiB/s),
#: large enough that pieces cost nothing on a fast one.
PIECE_BYTES = 256 * 1024


class Stalled(TimeoutError):
    """Nothing of the request body was taken for the guard's ``idle_s``."""


@final
class StallGuard:
    """``async with StallGuard(idle_s) as guard:`` around a request whose body comes from
    :meth:`pieces_of` or :meth:`pieces_from`: the request is cancelled, and :class:`Stalled` raised,
    when ``idle_s`` pass without the connection taking a piece, from the body's start to its end."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self._last_progress = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False
        self._cancelling = 0

    async def __aenter__(self) -> StallGuard:
        self._task = asyncio.current_task()
        if sys.version_info >= (3, 11):
            self._cancelling = self._task.cancelling() if self._task is not None else 0
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._stand_down()
        if not self._fired:
            return
        # our cancellation arrived in the block (the timer is off before anything here awaits)
        if sys.version_info >= (3, 11) and self._task is not None and self._task.uncancel() > self._cancelling:
            return  # someone else cancelled the task as well: that cancellation goes on
        raise Stalled(f"nothing of the request body was taken for {self.idle_s:g} s") from exc

    def _watch(self) -> None:
        """The body starts (with the head, which goes out with its first piece)."""
        self._moved()
        self._timer = self._loop.call_later(self.idle_s, self._check)

    def _moved(self) -> None:
        self._last_progress = self._loop.time()

    def _stand_down(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """One timer at a time, re-armed for the rest of the quiet period: no timer per piece."""
        quiet_s = self._loop.time() - self._last_progress
        if quiet_s < self.idle_s:
            self._timer = self._loop.call_later(self.idle_s - quiet_s, self._check)
            return
        self._timer = None
        if self._task is not None:
            self._fired = True
            self._task.cancel()

    async def pieces_of(self, data: bytes) -> AsyncIterator[bytes]:
        """``data`` in pieces; every piece the connection takes counts as progress."""
        self._watch()
        for start in range(0, len(data), PIECE_BYTES):
            yield data[start:start + PIECE_BYTES]
            self._moved()  # the writer asks for the next piece once it has handed this one on
        self._stand_down()  # the body is sent: the wait for the answer is sock_read's

    async def pieces_from(self, source: BinaryIO) -> AsyncIterator[bytes]:
        """The rest of an open file in pieces, read on a thread (never whole in memory)."""
        self._watch()
        while piece := await self._loop.run_in_executor(None, source.read, PIECE_BYTES):
            yield piece
            self._moved()
        self._stand_down()
