"""How the process ends decides how an unfinished run ends, as W&B's exit hooks decide it.

W&B wraps ``sys.exit`` (to learn the exit code) and ``sys.excepthook`` (to learn of an uncaught
exception) and finishes the run at exit. So does this module, once per process:

=================================  ===================================
the script ends by                 an unfinished run ends
=================================  ===================================
returning, ``sys.exit()``/``(0)``  COMPLETED
``sys.exit(n)``, ``n`` not 0       FAILED, "exit code n"
an uncaught exception              FAILED, "Type: message"
an uncaught KeyboardInterrupt      CANCELLED
SIGTERM                            CANCELLED (by ml-dash's own handler: the pending
                                   uncommitted row and the summary file are not written;
                                   explicit summary values are, as rows)
=================================  ===================================

Our ``atexit`` handler must run before ml-dash's own (which would end the run COMPLETED without the
pending row and the summary file): ``atexit`` runs handlers last-registered first, so
:func:`install` re-registers ours at every ``wandb.init``, after the run has started the engine.
"""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("ml_dash")


class ExitState:
    """What is known of the process's end so far."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.exception: BaseException | None = None


state = ExitState()
_finishers: list[Callable[[ExitState], None]] = []
_hooked = False


def on_exit(finisher: Callable[[ExitState], None]) -> None:
    """Call ``finisher(state)`` at interpreter exit (until :func:`forget`)."""
    _finishers.append(finisher)
    install()


def forget(finisher: Callable[[ExitState], None]) -> None:
    if finisher in _finishers:
        _finishers.remove(finisher)


def install() -> None:
    """Hook ``sys.exit`` and ``sys.excepthook`` once; (re-)register the atexit handler to run first."""
    global _hooked
    if not _hooked:
        _hooked = True
        sys.exit = _exit_chain(sys.exit)
        sys.excepthook = _excepthook_chain(sys.excepthook)
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


def _exit_chain(previous: Callable[..., Any]) -> Callable[..., Any]:
    def exit(code: Any = None) -> None:
        state.exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        previous(code)

    return exit


def _excepthook_chain(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        state.exception = exc
        previous(exc_type, exc, tb)

    return hook


def _at_exit() -> None:
    for finisher in list(reversed(_finishers)):
        try:
            finisher(state)
        except Exception:  # one run's failure to end must not keep the others from ending
            logger.exception("ml-dash: error while finishing a W&B-shaped run at exit")
