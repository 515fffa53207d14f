"""A point in (monotonic) time that waits are bounded by, passed down instead of restarted."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """``seconds`` from now (None: never); every wait below it takes :meth:`remaining` at most.

    A deadline that ``cuts_transfers`` (the end of a run, ``ml-dash sync --timeout``) also bounds a
    request under way. One that does not (a background upload pass) bounds the waits and when a new
    request may start; a request that keeps moving runs to its end (each request still times out
    when it stops moving): otherwise a file that takes longer than a pass would never arrive."""

    __slots__ = ("_at", "cancelled", "clock", "cuts_transfers")

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic,
                 cancelled: Callable[[], bool] | None = None, cuts_transfers: bool = True) -> None:
        self.clock = clock
        self._at = None if seconds is None else clock() + max(0.0, seconds)
        self.cancelled = cancelled  # when it answers True, the deadline has passed
        self.cuts_transfers = cuts_transfers

    def remaining(self) -> float | None:
        """Seconds left (0 once passed), or None without a bound."""
        if self.cancelled is not None and self.cancelled():
            return 0.0
        return None if self._at is None else max(0.0, self._at - self.clock())

    def bound(self, seconds: float) -> float:
        """``seconds``, or less if the deadline comes first."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def transfer_s(self) -> float | None:
        """What one request under way may take in all: the time left, or None when this deadline does
        not cut transfers."""
        return self.remaining() if self.cuts_transfers else None

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0

    def sooner(self, seconds: float | None) -> Deadline:
        """A deadline at most ``seconds`` away and never after this one."""
        child = Deadline(None, self.clock, cuts_transfers=self.cuts_transfers)
        left = self.remaining()
        candidates = [s for s in (left, seconds) if s is not None]
        if candidates:
            child._at = self.clock() + min(candidates)
        return child
