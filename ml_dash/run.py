"""``exp.run``: the run lifecycle (RUNNING, then COMPLETED, FAILED or CANCELLED).

``with exp.run:`` starts the run and ends it COMPLETED, FAILED on an exception
(never swallowed) or CANCELLED on KeyboardInterrupt. Interpreter exit without
an explicit end completes it (FAILED after an uncaught exception), and SIGTERM
cancels it; both flush first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .format.values import reason_text
from .format.vocabulary import RunStatus

if TYPE_CHECKING:
    from types import TracebackType

    from ._run.session import RunSession
    from .experiment import Experiment


class Run:
    """Controls one experiment's run: ``start``, ``complete``, ``fail``, ``cancel``."""

    def __init__(self, session: RunSession, experiment: Experiment) -> None:
        self._session = session
        self._experiment = experiment

    @property
    def status(self) -> RunStatus:
        return self._session.status

    def start(self) -> Experiment:
        """Begin logging; the directory and ``experiment.json`` (RUNNING) are written now.

        Raises :class:`~ml_dash.errors.RunLockedError` when another writer holds the directory and
        :class:`~ml_dash.errors.RunConflictError` when the resume policy refuses what the prefix holds.
        """
        self._session.start()
        return self._experiment

    def complete(self, timeout_s: float | None = None) -> bool:
        """End the run COMPLETED after writing everything; False if ``timeout_s`` passed first."""
        return self._session.finish(RunStatus.COMPLETED, None, timeout_s)

    def fail(self, reason: str | BaseException | None = None, timeout_s: float | None = None) -> bool:
        """End the run FAILED, recording ``reason`` (a str, or an exception as ``"Type: message"``)."""
        return self._session.finish(RunStatus.FAILED, reason_text(reason), timeout_s, _error(reason))

    def cancel(self, reason: str | BaseException | None = None, timeout_s: float | None = None) -> bool:
        """End the run CANCELLED, recording ``reason``."""
        return self._session.finish(RunStatus.CANCELLED, reason_text(reason), timeout_s, _error(reason))

    def __enter__(self) -> Experiment:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc_type is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.complete()  # sys.exit() / sys.exit(0): a normal end
        elif issubclass(exc_type, KeyboardInterrupt):
            self.cancel("KeyboardInterrupt")
        else:
            self.fail(exc if exc is not None else exc_type.__name__)
        return False

    def __repr__(self) -> str:
        return f"<Run of {self._session.prefix!r}: {self.status}>"


def _error(reason: str | BaseException | None) -> BaseException | None:
    """The exception that ends a run, when it is one (its traceback is kept with the console)."""
    return reason if isinstance(reason, BaseException) else None
