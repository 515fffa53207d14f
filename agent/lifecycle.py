"""Process-level hooks: interpreter exit, SIGTERM, uncaught exceptions, fork.

Whoever owns runs (the SDK) registers a *closer* with :func:`on_shutdown`; at
shutdown each closer is called with a reason (``"exit"``, ``"exception"`` or
``"sigterm"``) and a deadline, then the agent writes whatever is left. The
agent registers itself as hooks (:func:`install`: how to flush, how long exit
may take, what to reset in a forked child), so this module never reaches into
the agent's class.

* ``atexit``: runs after non-daemon threads are joined; the agent thread and
  its worker pool are daemons and still serve it.
* ``SIGTERM``: installed only from the main thread; flushes, then hands the
  signal to the previous handler (a callable is called; ``SIG_DFL`` is
  restored and the signal re-raised so the exit status stays "killed by
  SIGTERM"; ``SIG_IGN`` is respected).
* the agent's threads block SIGTERM and SIGINT, so the kernel hands them
  to a thread that runs the handlers promptly (:func:`start_thread_without_signals`).
* fork: the child does not inherit the agent thread. Runs inherited from the
  parent are switched off in the child (the parent keeps writing them);
  experiments the child creates get a fresh agent.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("ml_dash.agent")


class Closer(Protocol):
    def shutdown(self, reason: str, deadline: float) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineHooks:
    """What the process hooks need of the engine that writes the runs (the agent), registered by it."""

    pid: int  # the process the engine runs in: a forked child's copy has no thread behind it
    exit_timeout_s: float  # how long the end of the process may take (ML_DASH_EXIT_TIMEOUT_S)
    flush: Callable[[float], object]  # write (and fsync) everything buffered, within the seconds given
    reset_in_child: Callable[[], None]  # after fork, in the child: stop using the parent's engine


#: The running engine's hooks (None until an agent starts, and again in a forked child).
_engine: EngineHooks | None = None


# Strong references: a running run must be ended at exit even when its Experiment is no longer
# referenced anywhere (a notebook cell run again); closers leave with forget() when their run ends.
_closers: set[Any] = set()
_installed_for_pid: int | None = None
_sigterm_for_pid: int | None = None
_fork_hook_installed = False
_previous_sigterm: Any = None
_uncaught = False
_shutdown_done = False


def on_shutdown(closer: Closer) -> None:
    """Call ``closer.shutdown(reason, deadline)`` when the process exits or is terminated."""
    _closers.add(closer)


def forget(closer: Closer) -> None:
    _closers.discard(closer)


def shutdown(reason: str, timeout_s: float | None = None) -> None:
    """Close every registered closer, then flush the agent, within ``timeout_s``."""
    global _shutdown_done
    if _shutdown_done:
        return
    _shutdown_done = True
    engine = _engine
    if timeout_s is None:  # checked when the agent started; 10 s when it never did
        timeout_s = engine.exit_timeout_s if engine is not None else 10.0
    deadline = time.monotonic() + timeout_s
    for closer in list(_closers):
        try:
            closer.shutdown(reason, deadline)
        except Exception:
            logger.exception("ml-dash: error while closing a run at %s", reason)
    if engine is not None and engine.pid == os.getpid():
        engine.flush(max(0.0, deadline - time.monotonic()))


def _at_exit() -> None:
    shutdown("exception" if _uncaught else "exit")


def _on_sigterm(signum: int, frame: Any) -> None:
    shutdown("sigterm")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


#: Signals the process's own handlers must see; the agent's threads never take them.
_MAIN_THREAD_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def start_thread_without_signals(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGTERM and SIGINT blocked in it (and in the threads it starts).

    Linux delivers a process-directed signal to any thread that does not block
    it. When one of the agent's threads takes SIGTERM, CPython's handler only
    runs once the main thread next executes bytecode, so a main thread inside
    ``time.sleep(60)`` would not notice the signal for a minute.
    """
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
    try:
        thread.start()  # a new thread inherits the mask of the thread starting it
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _excepthook_chain(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(exc_type: type, exc: BaseException, tb: Any) -> None:
        global _uncaught, _uncaught_exception
        _uncaught = not issubclass(exc_type, KeyboardInterrupt)
        if issubclass(exc_type, KeyboardInterrupt):
            _mark_interrupted()
        elif isinstance(exc, BaseException):
            _uncaught_exception = exc
        previous(exc_type, exc, tb)

    return hook


#: The exception that is ending the process, kept so that a run left open records it as its reason
#: ("ValueError: loss is nan") and its console keeps the traceback, not just "uncaught exception"
_uncaught_exception: BaseException | None = None


def uncaught_exception() -> BaseException | None:
    """The exception the process is ending with (seen by ``sys.excepthook``), if any."""
    return _uncaught_exception


_interrupted = False


def _mark_interrupted() -> None:
    global _interrupted
    _interrupted = True


def interrupted() -> bool:
    """True when the process is ending because of an uncaught KeyboardInterrupt."""
    return _interrupted


def _after_fork_in_child() -> None:
    global _engine, _installed_for_pid, _shutdown_done
    engine, _engine = _engine, None
    if engine is not None:
        engine.reset_in_child()
    _closers.clear()
    _installed_for_pid = None  # the handlers themselves are inherited: SIGTERM stays installed
    _shutdown_done = False


def install(engine: EngineHooks) -> None:
    """Register the engine that just started (the agent) and install the hooks once per process."""
    global _engine, _installed_for_pid, _fork_hook_installed
    _engine = engine
    if _installed_for_pid != os.getpid():
        _installed_for_pid = os.getpid()
        atexit.register(_at_exit)
        sys.excepthook = _excepthook_chain(sys.excepthook)
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_installed = True
    install_sigterm()


def install_sigterm() -> None:
    """Take SIGTERM (once per process), when called on the main thread: only there can Python set
    signal handlers. Called when the agent starts and again whenever a run starts, so a first run
    started from another thread does not leave later ones without it."""
    global _previous_sigterm, _sigterm_for_pid
    if _sigterm_for_pid == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_for_pid = os.getpid()
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)
