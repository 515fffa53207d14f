"""What request bodies may hold of the server at once, and who waits when they would hold more.

Two bounds, both taken before the work they bound:

* **Body memory**: a request holds of the budget the bytes of its body that have arrived, and one
  step (:data:`BODY_STEP_BYTES`) ahead of them, never more than its ``Content-Length`` (the largest
  body allowed when it sends none); it gives them back when it is answered. Its first step is taken
  before a byte is read: a request that finds no room for it waits in a queue of bounded length, for
  a bounded time; past either bound it is answered 503 with ``Retry-After`` (which clients honour),
  its body unread. Each further step is taken as the body reaches it, without waiting (a request
  waiting for room while it holds some could wait for another that waits for it): a body that finds
  no room is answered 503 with ``Retry-After`` and gives back what it held. So a body that trickles
  holds only what it has sent, not the 16 MiB it may grow to (two keys each trickling a chunked body
  once took the whole budget, and every other client got 503 for as long as they trickled); the
  pace a body holding more than a step must keep is server/http/bodies.py's.
  A caller (a key) holds at most :data:`CALLER_SHARE` of the budget, so one key cannot take all of it.
* **Bodies per caller**: a caller has at most ``max_bodies_per_key`` request bodies (ingest and file
  uploads alike) under way at once, counted from before the first step is waited for until the request
  is answered; one more is answered 429 with ``Retry-After`` (which clients honour) and names the limit.
  Bytes alone did not bound a caller: a body under its first step holds that step (256 KiB) whatever
  it has sent, so about 128 connections of one key, each trickling a fresh small body, held the key's
  half of the budget, and two keys all of it. Counted, a key holds at most ``max_bodies_per_key`` steps
  that way (64: 16 MiB of the 64), and other keys get in. Four keys together still hold all 64 MiB that
  way, but only for the body timeout's slack: a body keeps its pace from its first byte (bodies.py), so
  keeping the budget full takes opening 256 fresh bodies every 30 s, and the bodies queued behind them
  get in as each is cut.
* **Work**: bodies being decoded or stored at once (one per ingest worker and two more, whose batches
  wait for the database): what a decoded batch holds in memory is bounded by their number, not by how
  many small bodies arrived.

A body not yet read costs the server nothing but its connection: its bytes wait in the kernel and the
client's TCP window (and aiohttp's buffer of a connection, under 1 MiB), not in the server's memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import TooManyRequests, Unavailable

#: The most of the body budget one caller may hold at once.
CALLER_SHARE = 0.5
#: What a refused request is told to wait before it tries again.
RETRY_AFTER_S = 2
#: What a body holds of the budget ahead of the bytes that have arrived: the unit it grows by.
BODY_STEP_BYTES = 256 * 1024


@dataclass(slots=True)
class _Waiter:
    size: int
    holder: str
    granted: asyncio.Future[None]


class BodyBudget:
    """Bytes of request bodies held at once: at most ``capacity`` in all, ``capacity * CALLER_SHARE``
    per holder; waiters are admitted in arrival order as room appears (one that does not fit yet lets
    those behind it that do go first)."""

    def __init__(self, capacity: int, queue: int, wait_s: float) -> None:
        self.capacity = capacity
        self.per_holder = int(capacity * CALLER_SHARE)
        self.queue = queue
        self.wait_s = wait_s
        self.used = 0
        self._held: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def reserve(self, size: int, holder: str) -> AsyncIterator[None]:
        """Hold ``size`` bytes (at most a holder's share) for the block; Unavailable (503) when there is
        no room within the queue's bounds."""
        async with self.hold(size, holder):
            yield

    @asynccontextmanager
    async def hold(self, first: int, holder: str) -> AsyncIterator[BodyHold]:
        """A :class:`BodyHold` of ``first`` bytes (waited for as :meth:`reserve` waits), which may grow
        and shrink within the block; whatever it holds at the end is given back."""
        held = BodyHold(self, holder)
        await held.take(first)
        try:
            yield held
        finally:
            held.drop()

    async def _acquire(self, size: int, holder: str) -> None:
        if self._fits(size, holder):
            self._take(size, holder)
            return
        if len(self._waiters) >= self.queue:
            raise Unavailable(f"the server is busy: {len(self._waiters)} requests wait for room for their bodies",
                              retry_after_s=RETRY_AFTER_S)
        waiter = _Waiter(size, holder, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), self.wait_s)
        except asyncio.TimeoutError:
            if not waiter.granted.done():
                self._forget(waiter)
                raise Unavailable(f"the server is busy: no room for this request's body within {self.wait_s:g} s",
                                  retry_after_s=RETRY_AFTER_S) from None
        except asyncio.CancelledError:  # the client went away while it waited
            if waiter.granted.done():
                self._release(size, holder)
            else:
                self._forget(waiter)
            raise

    def _forget(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        waiter.granted.cancel()

    def _fits(self, size: int, holder: str) -> bool:
        return self.used + size <= self.capacity and self._held.get(holder, 0) + size <= self.per_holder

    def _take(self, size: int, holder: str) -> None:
        if not size:
            return
        self.used += size
        self._held[holder] = self._held.get(holder, 0) + size

    def _release(self, size: int, holder: str) -> None:
        if not size:
            return
        self.used -= size
        left = self._held[holder] - size
        if left:
            self._held[holder] = left
        else:
            del self._held[holder]
        for waiter in list(self._waiters):
            if self._fits(waiter.size, waiter.holder):
                self._waiters.remove(waiter)
                self._take(waiter.size, waiter.holder)
                waiter.granted.set_result(None)


class BodyHold:
    """What one request holds of a :class:`BodyBudget` now: it grows as its body arrives
    (:meth:`cover`), or is taken a piece at a time and given back between pieces (:meth:`take`,
    :meth:`drop`)."""

    def __init__(self, budget: BodyBudget, holder: str) -> None:
        self.budget = budget
        self.holder = holder
        self.held = 0

    async def take(self, size: int) -> None:
        """Hold ``size`` bytes, waiting in the budget's queue for room (Unavailable past its bounds).
        Only from holding nothing: a request that waits while it holds bytes could wait for one that
        waits for those."""
        assert self.held == 0, "take() waits; a request holding bytes grows with cover()"
        size = min(size, self.budget.per_holder)
        await self.budget._acquire(size, self.holder)
        self.held = size

    def cover(self, size: int) -> None:
        """Hold at least ``size`` bytes (at most a holder's share), now or never: Unavailable (503 with
        Retry-After) when the budget or the holder's share has no room for the rest."""
        size = min(size, self.budget.per_holder)
        more = size - self.held
        if more <= 0:
            return
        if not self.budget._fits(more, self.holder):
            raise Unavailable(f"the server is busy: no room to hold more than {self.held} bytes of this request's "
                              "body", retry_after_s=RETRY_AFTER_S)
        self.budget._take(more, self.holder)
        self.held = size

    def drop(self) -> None:
        """Give back everything held."""
        held, self.held = self.held, 0
        self.budget._release(held, self.holder)


class CallerBodies:
    """Request bodies each caller has under way at once: at most ``per_caller``."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._under_way: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Bodies under way, every caller's."""
        return sum(self._under_way.values())

    @asynccontextmanager
    async def admit(self, caller: str) -> AsyncIterator[None]:
        """One more body of ``caller`` for the block; TooManyRequests (429 with Retry-After, naming the
        limit) when it has ``per_caller`` already. Nothing waits here: a caller at its limit has that
        many connections open already, and a queue would only hold one more."""
        under_way = self._under_way.get(caller, 0)
        if under_way >= self.per_caller:
            raise TooManyRequests(f"{caller} has {under_way} request bodies under way, the most one key may have at "
                                  f"once ({self.per_caller}, the server's --max-bodies-per-key)",
                                  retry_after_s=RETRY_AFTER_S, limit=self.per_caller)
        self._under_way[caller] = under_way + 1
        try:
            yield
        finally:
            left = self._under_way[caller] - 1
            if left:
                self._under_way[caller] = left
            else:
                del self._under_way[caller]


class IngestGate:
    """The bounds of the module docstring, for the routes that take bodies."""

    def __init__(self, body_bytes: int, queue: int, wait_s: float, slots: int, bodies_per_caller: int) -> None:
        self.callers = CallerBodies(bodies_per_caller)
        self.bodies = BodyBudget(body_bytes, queue, wait_s)
        self.work = asyncio.Semaphore(slots)
