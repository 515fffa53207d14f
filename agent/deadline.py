"""A point in (monotonic) time that waits are bounded by, passed down instead of restarted."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """``seconds`` from now (None: never); every wait below it takes :meth:`remaining` at most."""

    __slots__ = ("_at", "cancelled", "clock")

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic,
                 cancelled: Callable[[], bool] | None = None) -> None:
        self.clock = clock
        self._at = None if seconds is None else clock() + max(0.0, seconds)
        self.cancelled = cancelled  # when it answers True, the deadline has passed

    def remaining(self) -> float | None:
        """Seconds left (0 once passed), or None without a bound."""
        if self.cancelled is not None and self.cancelled():
            return 0.0
        return None if self._at is None else max(0.0, self._at - self.clock())

    def bound(self, seconds: float) -> float:
        """``seconds``, or less if the deadline comes first."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0

    def sooner(self, seconds: float | None) -> Deadline:
        """A deadline at most ``seconds`` away and never after this one."""
        child = Deadline(None, self.clock)
        left = self.remaining()
        candidates = [s for s in (left, seconds) if s is not None]
        if candidates:
            child._at = self.clock() + min(candidates)
        return child
