"""Streams: what the caller's thread appends to, and what the agent drains.

A :class:`RowStream` is an append-only JSON-lines stream (one metric, or the
logs). Its hot path is ``queue.append`` plus one length comparison: no lock,
no encoding, no I/O and no wake-up of the event loop. Every ``wake_every``
events the caller takes the slow path once (:meth:`RowStream.on_threshold`),
which wakes the agent and enforces the memory bound.

Memory policy (bounded wait, then counted drops): when the estimated bytes
buffered across the agent pass ``max_buffer_bytes``, the calling thread waits
up to ``max_block_s`` for the agent to drain. If the buffer is still full it
drops the event it just appended, counts it as ``buffer_full``, and keeps
dropping (without waiting again) until the buffer is below half the budget.

A :class:`DocumentSlot` is a latest-wins JSON document (parameters,
experiment.json, metric metadata) replaced atomically on disk.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .jsonlines import ChunkEncoder
from .stats import StreamCounters

if TYPE_CHECKING:
    from .runtime import Agent

class StreamClosedError(RuntimeError):
    """Raised at the call when logging to a stream whose run has ended."""


class RowStream:
    """An append-only JSON-lines stream with contiguous indices from 0."""

    __slots__ = (
        "name",
        "path",
        "queue",
        "wake_at",
        "wake_every",
        "row_bytes",
        "first_key",
        "encode",
        "next_index",
        "drained",
        "counters",
        "has_tensors",
        "state",
        "agent",
        "file_size",
    )

    def __init__(
        self,
        agent: Agent,
        name: str,
        path: Path,
        first_key: str,
        encode: ChunkEncoder,
        row_bytes: int,
        wake_every: int,
    ) -> None:
        self.agent = agent
        self.name = name
        self.path = path
        self.first_key = first_key  # the identity key every record starts with
        self.encode = encode
        self.queue: deque = deque()
        self.wake_every = wake_every
        self.wake_at = wake_every
        self.row_bytes = row_bytes  # estimated bytes one buffered event holds
        self.next_index = 0  # assigned by the agent when the row is written
        self.drained = 0  # events taken off the queue by the agent
        self.counters = StreamCounters()
        self.has_tensors = False
        self.state = "open"  # open | dropping | closed | forked
        self.file_size = 0

    # -- caller's thread -------------------------------------------------
    def on_threshold(self) -> None:
        """Slow path, taken once per ``wake_every`` events or while not 'open'."""
        if self.state != "open":
            self._refuse_or_drop()
            return
        agent = self.agent
        agent.wake()
        if agent.buffered_bytes() > agent.max_buffer_bytes:
            deadline = time.monotonic() + agent.max_block_s
            while agent.buffered_bytes() > agent.max_buffer_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.state = "dropping"
                    self._refuse_or_drop()
                    return
                agent.wait_for_space(min(remaining, 0.05))
        self.wake_at = len(self.queue) + self.wake_every

    def _refuse_or_drop(self) -> None:
        state = self.state
        if state == "closed":
            self._take_back_last()
            raise StreamClosedError(f"stream {self.name!r} is closed: its run has ended")
        if state == "forked":
            self._take_back_last()  # the parent process owns this run's files
            return
        # dropping: leave that mode once the agent has drained below half the budget
        agent = self.agent
        if agent.buffered_bytes() <= agent.max_buffer_bytes // 2:
            self.state = "open"
            self.wake_at = len(self.queue) + self.wake_every
            return
        if self._take_back_last():
            self.counters.drop(1, "buffer_full", self.name)
        agent.wake()

    def _take_back_last(self) -> bool:
        try:
            self.queue.pop()
            return True
        except IndexError:
            return False

    def buffered_bytes(self) -> int:
        return len(self.queue) * self.row_bytes

    # -- agent's thread --------------------------------------------------
    def take(self, limit: int) -> list:
        """Pop up to ``limit`` buffered events, oldest first."""
        queue = self.queue
        pop = queue.popleft
        n = min(len(queue), limit)
        items = [pop() for _ in range(n)]
        self.drained += n
        if self.state == "open":
            self.wake_at = len(queue) + self.wake_every
        return items

    def accepted(self) -> int:
        """Events accepted so far (exact when read on the agent's thread)."""
        return self.drained + len(self.queue) + self.counters.dropped.get("buffer_full", 0)


class DocumentSlot:
    """A latest-wins JSON document: the caller sets a snapshot, the agent writes it."""

    __slots__ = ("path", "value", "version", "written_version")

    def __init__(self, path: Path, value: Any = None) -> None:
        self.path = path
        self.value = value
        self.version = 0 if value is None else 1
        self.written_version = 0

    def set(self, value: Any) -> None:
        """Replace the document (caller's thread); the agent writes it on its next pass."""
        self.value = value
        self.version += 1

    @property
    def dirty(self) -> bool:
        return self.written_version != self.version


class SpaceSignal:
    """Lets a caller blocked on a full buffer wait for the agent's next drain."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout_s: float) -> None:
        self._event.clear()
        self._event.wait(timeout_s)

    def notify(self) -> None:
        self._event.set()
