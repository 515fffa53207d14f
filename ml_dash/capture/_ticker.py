"""A daemon thread that calls one function every interval until stopped: capture's only threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..agent.lifecycle import start_thread_without_signals

logger = logging.getLogger("ml_dash.capture")


class Ticker:
    """Calls ``tick()`` every ``interval_s`` seconds (never when it is None: only ``setup`` runs) on its own daemon thread (named ``name``).

    The thread blocks SIGTERM and SIGINT (the training script's handlers must run on its main thread)
    and is a daemon: a process never waits for it to exit. An exception from ``tick`` stops the ticker
    (or from ``setup``, called once on the thread before the first wait) after ``on_error`` is told: capture must never crash the training script, nor spin on a failure.
    """

    def __init__(self, name: str, interval_s: float | None, tick: Callable[[], None],
                 on_error: Callable[[BaseException], None], setup: Callable[[], None] | None = None) -> None:
        self._interval_s = interval_s
        self._setup = setup
        self._tick = tick
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        start_thread_without_signals(self._thread)

    def stop(self, timeout_s: float) -> bool:
        """Stop ticking; True when the thread ended within ``timeout_s`` (a tick in progress finishes first)."""
        self._stop.set()
        if self._thread.ident is None or self._thread is threading.current_thread():
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        try:
            if self._setup is not None:  # on this thread: what it costs (imports, a driver's start) is not the caller's
                self._setup()
            while self._interval_s is not None and not self._stop.wait(self._interval_s):
                self._tick()
        except Exception as exc:  # noqa: BLE001 - capture must never crash the script; on_error says it once
            self._on_error(exc)
