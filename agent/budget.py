"""The memory budget every stream of one agent shares: what a stream may ask of the agent, and no more.

A :class:`~.streams.RowStream` needs four things from whoever drains it: the
budget's capacity in bytes, how much is buffered now across all runs, a way to
wait (bounded) for the agent to free space, and a way to ask the agent to
drain now. The agent owns one :class:`BufferBudget` and hands it to every
stream, so a stream never holds the agent itself (which would let it reach
every run, pool and setting of the process; issue 15, "no back-pointers").
The run writer reports freed space through :meth:`BufferBudget.space_freed`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class SpaceSignal:
    """Lets a caller blocked on a full buffer wait for the agent's next drain."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout_s: float) -> None:
        self._event.clear()
        self._event.wait(timeout_s)

    def notify(self) -> None:
        self._event.set()


class BufferBudget:
    """The bytes every stream of one agent may hold in memory together, and the bounded wait for room.

    ``buffered_bytes`` is the owner's callable, stored as it is (no wrapper), and :meth:`wake` a method
    of this class (a call through a stored bound method costs ~15 ns more), so the streams' slow path
    costs what it did when it called the agent directly.
    """

    __slots__ = ("_request_drain", "_space", "buffered_bytes", "capacity_bytes", "drain_requested", "max_block_s")

    def __init__(self, capacity_bytes: int, max_block_s: float, buffered_bytes: Callable[[], int],
                 request_drain: Callable[[], None]) -> None:
        #: the budget (``ML_DASH_MAX_BUFFER_MB``): past it, a caller waits, then drops (agent/streams.py)
        self.capacity_bytes = capacity_bytes
        #: the longest a caller waits for room before dropping (``ML_DASH_MAX_BLOCK_S``)
        self.max_block_s = max_block_s
        #: estimated bytes buffered now, across every run of the owner
        self.buffered_bytes = buffered_bytes
        #: a drain was asked for and has not started yet: further wake-ups cost one attribute read
        self.drain_requested = False
        self._request_drain = request_drain  # thread-safe: schedules a drain on the owner's loop
        self._space = SpaceSignal()

    def wake(self) -> None:
        """Ask the owner to drain now; at most one request pending (a stream crossing its threshold, or
        a caller waiting for room, must not flood the owner's loop with wake-ups)."""
        if not self.drain_requested:
            self.drain_requested = True
            self._request_drain()

    def drain_started(self) -> None:
        """Called by the owner as a drain begins: the next :meth:`wake` asks again."""
        self.drain_requested = False

    def wait_for_space(self, timeout_s: float) -> None:
        """Ask for a drain, then wait until some space is freed or ``timeout_s`` passes (the caller
        checks :attr:`buffered_bytes` again: a wake-up is a hint, not a promise of room)."""
        self.wake()
        self._space.wait(timeout_s)

    def space_freed(self) -> None:
        """Called by the writer after each write: wakes callers waiting on a full buffer."""
        self._space.notify()
