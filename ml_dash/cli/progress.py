"""A one-line progress bar for the command line (``ml-dash sync``), drawn only on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_FULL, _EMPTY, _LEFT, _RIGHT = "\u2588", "\u00b7", "\u2595", "\u258f"


class ProgressBar:
    """Redraws ``label ▕████····▏ done/total rows pct`` in place, at most every ``min_interval_s``.

    Disabled (draws nothing) when ``stream`` is not a terminal, so logs and
    pipes get only the summary line the caller prints afterwards.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None = None, enabled: bool | None = None,
                 width: int = 24, min_interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = max(0, total)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.min_interval_s = min_interval_s
        self._drawn = False
        self._clock = clock
        self._last_draw: float | None = None  # never drawn (a monotonic clock may start near 0 after boot)

    def render(self, done: int) -> str:
        """The bar's text for ``done`` rows (clamped to the total)."""
        done = min(max(0, done), self.total)
        fraction = done / self.total if self.total else 1.0
        filled = int(fraction * self.width)
        bar = _FULL * filled + _EMPTY * (self.width - filled)
        return f"{self.label} {_LEFT}{bar}{_RIGHT} {done:,}/{self.total:,} rows {fraction:4.0%}"

    def update(self, done: int) -> None:
        """Show ``done`` rows sent (rate-limited, except for the last one)."""
        if not self.enabled:
            return
        now = self._clock()
        if done < self.total and self._last_draw is not None and now - self._last_draw < self.min_interval_s:
            return
        self._last_draw = now
        self.stream.write("\r" + self.render(done))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line so the next output starts on a fresh one."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
