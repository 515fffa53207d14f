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
SIGTERM                            CANCELLED, "SIGTERM"
=================================  ===================================

In every case the pending row (``commit=False``) is committed and the summary file written first.

Our handlers must run before ml-dash's own (which would end the run without the pending row and the
summary file): ``atexit`` runs handlers last-registered first, so :func:`install` re-registers ours
at every ``wandb.init``, after the run has started the engine; our SIGTERM handler wraps the one
ml-dash installed when the run started, and hands the signal on to it. A SIGTERM the process ignores
stays ignored. A forked child forgets its parent's runs (the parent ends them).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("ml_dash")


class ExitState:
    """What is known of the process's end so far."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.exception: BaseException | None = None
        self.terminated = False  # SIGTERM


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
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_finishers.clear)
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
    _install_sigterm()


def _install_sigterm() -> None:
    """Wrap the SIGTERM handler in place (Python sets handlers only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_IGN, None) or getattr(previous, "ml_dash_wandb", False):
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        state.terminated = True
        _at_exit()
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: die of the signal, as the process would have
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    on_sigterm.ml_dash_wandb = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, on_sigterm)


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
