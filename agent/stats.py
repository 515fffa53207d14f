"""Counters for every event the agent accepts, writes or drops.

Nothing is lost silently: each drop goes through :meth:`StreamCounters.drop`
with one of the reasons in :data:`DROP_REASONS`, and the first drop of each
reason in a process logs one warning. ``written`` is counted by the agent's
thread alone; drops come from the agent and, for ``buffer_full``, from every
logging thread, so :meth:`StreamCounters.drop` takes a lock (drops are rare).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

logger = logging.getLogger("ml_dash.agent")

#: The closed set of reasons an accepted event may be dropped for.
DROP_REASONS = frozenset(
    {
        "buffer_full",  # the caller waited the bounded time and the buffer stayed full
        "unserializable",  # the agent could not encode a value
        "tensor_read_failed",  # a logged tensor could not be read (device error, GPU hung past the timeout)
        "disk_error",  # the write to the run directory failed (disk full, permissions)
        "internal_error",  # a bug in the agent; the traceback is logged once
    }
)

_warned_reasons: set[str] = set()


@dataclass(slots=True)
class StreamCounters:
    """Accounting for one stream: ``accepted == written + dropped + pending``."""

    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def drop(self, n: int, reason: str, stream: str) -> None:
        """Count ``n`` events of ``stream`` as dropped for ``reason`` (one warning per reason)."""
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        if n <= 0:
            return
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        if reason not in _warned_reasons:
            _warned_reasons.add(reason)
            logger.warning(
                "ml-dash dropped %d event(s) of stream %r: %s (counted in exp.stats(); "
                "further drops for this reason are counted silently)",
                n,
                stream,
                reason,
            )

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())
