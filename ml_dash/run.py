"""``exp.run``: the run lifecycle (RUNNING, then COMPLETED, FAILED or CANCELLED).

``with exp.run:`` starts the run and ends it COMPLETED, FAILED on an exception
(never swallowed) or CANCELLED on KeyboardInterrupt. Interpreter exit without
an explicit end completes it (FAILED after an uncaught exception), and SIGTERM
cancels it; both flush first.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .experiment import Experiment


class RunStatus(str, Enum):
    """Recorded as ``status`` in ``experiment.json``."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


class Run:
    """Controls one experiment's run: ``start``, ``complete``, ``fail``, ``cancel``."""

    def __init__(self, experiment: Experiment) -> None:
        self._experiment = experiment

    @property
    def status(self) -> RunStatus:
        return self._experiment._status

    def start(self) -> Experiment:
        """Begin logging; the directory and ``experiment.json`` (RUNNING) are written now."""
        self._experiment._start()
        return self._experiment

    def complete(self, timeout_s: float | None = None) -> bool:
        """End the run COMPLETED after writing everything; False if ``timeout_s`` passed first."""
        return self._experiment._finish(RunStatus.COMPLETED, None, timeout_s)

    def fail(self, reason: str | None = None, timeout_s: float | None = None) -> bool:
        """End the run FAILED (with an optional reason recorded in ``experiment.json``)."""
        return self._experiment._finish(RunStatus.FAILED, reason, timeout_s)

    def cancel(self, reason: str | None = None, timeout_s: float | None = None) -> bool:
        """End the run CANCELLED."""
        return self._experiment._finish(RunStatus.CANCELLED, reason, timeout_s)

    def __enter__(self) -> Experiment:
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc_type is None:
            self.complete()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.cancel("KeyboardInterrupt")
        else:
            self.fail(f"{exc_type.__name__}: {exc}")
        return False

    def __repr__(self) -> str:
        return f"<Run of {self._experiment.prefix!r}: {self.status}>"
