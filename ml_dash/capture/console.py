"""The console: what the process writes to ``sys.stdout`` and ``sys.stderr``, kept with its runs.

How (a tee on the stream objects, not a replacement of them): the ``write`` of the objects that are
``sys.stdout`` and ``sys.stderr`` when a run starts is replaced, on those objects, by one that calls
the original ``write`` first and then appends the text to an in-memory queue. So:

* the terminal (or file, or pipe) sees exactly what it saw before, and ``write`` returns and raises
  what it did before (a closed stream still raises its ``ValueError``; nothing is captured then);
* every holder of those objects goes through the tee: ``print``, ``logging``'s handlers created
  before the run (``basicConfig``'s handler keeps the stream it found), tqdm, warnings, tracebacks;
* ``sys.stdout`` is never reassigned, so tools that replace it later (pytest's capsys,
  ``contextlib.redirect_stdout``, a user's redirect) work as before; what they take away from the
  terminal is not the console and is not captured, until they put the original back.

The training thread only appends to a ``deque`` (no lock, no I/O, no encoding). A drainer thread
(``ml-dash-console``, every 0.1 s) assembles lines (lines.py: progress bars collapse to their final
state) and hands them to every run capturing the console; it sleeps while nothing is written. Memory is bounded: at most
``MAX_QUEUED_CHARS`` wait in the queue (writes past it are dropped and counted: a drainer that cannot
keep up never grows memory) and each run keeps at most ``RUN_LIMIT_BYTES`` (then lines are dropped
and counted, and the run's log says so once, at its end).

Not captured: writes below Python's ``sys.stdout`` object: C or C++ code writing to file descriptor
1 or 2 (``printf``, a CUDA library's messages), ``os.write(1, ...)``, ``sys.stdout.buffer.write``,
``faulthandler``, and the output of subprocesses (they inherit the file descriptors, not the object).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..agent.lifecycle import start_thread_without_signals
from .lines import LineAssembler

logger = logging.getLogger("ml_dash.capture")

#: Characters that may wait for the drainer; more is dropped and counted (reason ``console_backlog``).
MAX_QUEUED_CHARS = 4 * 1024 * 1024
#: Bytes of console a run keeps (UTF-8, lines without their newline): 16 MiB, then lines are dropped
#: and counted (reason ``console_limit``). W&B keeps output.log whole; a bound keeps a run that prints
#: in a tight loop from filling the disk and the server.
RUN_LIMIT_BYTES = 16 * 1024 * 1024
#: How often the drainer turns queued writes into log lines.
DRAIN_INTERVAL_S = 0.1

#: ``source`` of a console line (in the log line's metadata): which stream it was written to.
SOURCES = ("stdout", "stderr")

LineSink = Callable[[list[tuple[str, str]]], None]
LogLine = Callable[[str, str, dict], None]  # (message, level, metadata): a log line of the run


class _Hub:
    """The process's tee: the patched streams, the queue, the drainer, and the runs that listen."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, str]] = deque()
        self.listening = False  # read by the tee on every write: a plain attribute, no lock
        self.broken = False  # after an internal error, until the last run leaves
        self.enqueued_chars = 0  # written by the tees only
        self.drained_chars = 0  # written by the drainer only: the difference is what waits
        self.dropped_writes = 0  # writes past MAX_QUEUED_CHARS (rare: counted under a lock of their own)
        self.dropped_chars = 0
        self.drop_lock = threading.Lock()
        self._sinks: list[LineSink] = []
        self._assemblers = {source: LineAssembler() for source in SOURCES}
        self._patches: list[_Patch] = []
        self._lock = threading.Lock()  # subscriptions and drains
        self._drainer: _Drainer | None = None

    # -- runs subscribe and leave ------------------------------------------------------------------
    def subscribe(self, sink: LineSink) -> None:
        """Start handing finished lines to ``sink``; patches the current streams when none is."""
        import sys

        with self._lock:
            self._sinks.append(sink)
            for source in SOURCES:
                stream = getattr(sys, source)
                if not any(p.stream is stream for p in self._patches):
                    patch = _Patch.install(self, stream, source)
                    if patch is not None:
                        self._patches.append(patch)
            self.listening = not self.broken
            if self._drainer is None:
                self._drainer = _Drainer(self)
                self._drainer.start()

    def leave(self, sink: LineSink) -> list[tuple[str, str]]:
        """Stop handing lines to ``sink`` after a last drain; return the unfinished lines (a progress
        bar's last state) for it to keep. The last run to leave takes the patches off the streams."""
        self.drain()
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)
            unfinished = [(s, a.unfinished()) for s, a in self._assemblers.items()]
            drainer = None
            if not self._sinks:
                self.listening = self.broken = False
                self._forget_queue()  # a write racing the switch-off is no run's
                self._patches = [p for p in self._patches if not p.remove()]
                self._assemblers = {source: LineAssembler() for source in SOURCES}
                drainer, self._drainer = self._drainer, None
        if drainer is not None:
            drainer.stop(1.0)
        return [(s, text) for s, text in unfinished if text is not None]

    # -- the drainer ---------------------------------------------------------------------------------
    def drain(self) -> None:
        """Turn what the tees queued into lines and hand them to every listening run. A failure stops
        the capture (one warning) until the last run listening has left: never a loop of errors."""
        try:
            self._drain()
        except Exception as exc:  # noqa: BLE001 - said once by _fail; the script goes on
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.broken:
                return
            self.broken = True
            self.listening = False
            self._forget_queue()
        logger.warning("ml-dash: console capture stopped after an internal error (%s: %s); the run goes on",
                       type(exc).__name__, exc)

    def _drain(self) -> None:
        with self._lock:
            if self.broken:
                return
            lines: list[tuple[str, str]] = []
            queue = self.queue
            for _ in range(len(queue)):  # what is there now: a writer that never stops cannot hold this
                source, text = queue.popleft()
                self.drained_chars += len(text)
                lines.extend((source, line) for line in self._assemblers[source].feed(text))
            if lines:
                for sink in list(self._sinks):
                    sink(lines)

    def _forget_queue(self) -> None:
        self.queue.clear()
        self.drained_chars = self.enqueued_chars

    def reset_in_child(self) -> None:
        """After fork, in the child: the parent's runs are not the child's, and its drainer is gone.
        The patches stay, as a plain pass-through, until a run of the child listens again."""
        self.listening = self.broken = False
        self.queue = deque()
        self.enqueued_chars = self.drained_chars = 0
        self._sinks = []
        self._lock = threading.Lock()
        self._drainer = None
        self.drop_lock = threading.Lock()


class _Drainer:
    """The thread that drains the hub: it sleeps until a write arrives (an idle run costs no wake-ups),
    then waits ``DRAIN_INTERVAL_S`` for more to come and drains them at once."""

    def __init__(self, hub: _Hub) -> None:
        self.wake = threading.Event()  # set by the first write after the drainer last looked
        self._hub = hub
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ml-dash-console", daemon=True)

    def start(self) -> None:
        start_thread_without_signals(self._thread)

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        hub = self._hub
        while not self._stop.is_set():
            self.wake.wait()
            if self._stop.wait(DRAIN_INTERVAL_S):
                return
            self.wake.clear()
            hub.drain()  # a write after the clear set the flag again: the next turn takes it


class _Patch:
    """The tee on one stream object: its ``write`` attribute, set on the object itself."""

    def __init__(self, stream: Any, tee: Callable[[Any], Any], previous: Any) -> None:
        self.stream = stream
        self._tee = tee
        self._previous = previous  # an instance attribute ``write`` someone set before us, or None

    @classmethod
    def install(cls, hub: _Hub, stream: Any, source: str) -> _Patch | None:
        if stream is None:  # pythonw, a daemon with the stream closed at start: print() writes nowhere
            logger.debug("ml-dash: sys.%s is None; its console is not captured", source)
            return None
        write = stream.write
        previous = vars(stream).get("write") if hasattr(stream, "__dict__") else None
        tee = _make_tee(hub, write, source)
        try:
            stream.write = tee
        except (AttributeError, TypeError):  # an object that takes no attributes (__slots__, a C type)
            logger.debug("ml-dash: sys.%s (%s) takes no tee; its console is not captured", source, type(stream).__name__)
            return None
        return cls(stream, tee, previous)

    def remove(self) -> bool:
        """Take the tee off (True), unless someone patched over it since: then it stays, passing through."""
        current = vars(self.stream).get("write")
        if current is not self._tee:
            return False
        if self._previous is not None:
            self.stream.write = self._previous
        else:
            del self.stream.write
        return True


def _make_tee(hub: _Hub, write: Callable[[Any], Any], source: str) -> Callable[[Any], Any]:
    queue_chars = MAX_QUEUED_CHARS

    def write_and_keep(text: Any) -> Any:
        written = write(text)  # first, and as before: its result and its exceptions are the caller's
        if hub.listening and isinstance(text, str) and text:
            if hub.enqueued_chars - hub.drained_chars < queue_chars:
                queue = hub.queue
                queue.append((source, text))
                hub.enqueued_chars += len(text)
                drainer = hub._drainer
                if drainer is not None and not drainer.wake.is_set():  # a flag read; set once a drain
                    drainer.wake.set()
            else:
                with hub.drop_lock:
                    hub.dropped_writes += 1
                    hub.dropped_chars += len(text)
        return written

    write_and_keep.__wrapped__ = write  # type: ignore[attr-defined]  # what it wraps, for inspection
    return write_and_keep


_hub = _Hub()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _hub.reset_in_child())


def hub() -> _Hub:
    """The process's console hub."""
    return _hub


class RunConsole:
    """One run's share of the console: each finished line becomes a log line of the run
    (level ``info``, metadata ``{"source": "stdout" | "stderr"}``), at most ``limit_bytes`` of them;
    at the end, the unfinished lines, the traceback of the error that ended the run (level ``error``,
    source ``traceback``) and, when lines were dropped, one line saying how many."""

    def __init__(self, log: LogLine, limit_bytes: int | None = None) -> None:
        self._log = log
        self._limit = RUN_LIMIT_BYTES if limit_bytes is None else limit_bytes
        self.kept_lines = self.kept_bytes = 0
        self.dropped: dict[str, int] = {}
        self._dropped_bytes = 0
        self._backlog_at_start = (0, 0)
        self._ended = False

    def start(self) -> None:
        self._backlog_at_start = (_hub.dropped_writes, _hub.dropped_chars)
        _hub.subscribe(self.take)

    def take(self, lines: list[tuple[str, str]]) -> None:
        """Keep ``lines`` (called by the drainer)."""
        for source, line in lines:
            self._keep(line, "info", source)

    def stop(self, error: BaseException | None) -> None:
        """Keep what is left: the unfinished lines, the traceback of ``error``, the count of drops."""
        if self._ended:
            return
        for source, line in _hub.leave(self.take):
            self._keep(line, "info", source)
        if error is not None and not isinstance(error, SystemExit):
            self._keep(traceback_text(error), "error", "traceback", bounded=False)
        backlog = _hub.dropped_writes - self._backlog_at_start[0]
        if backlog > 0:
            self.dropped["console_backlog"] = backlog
            self._notice(f"ml-dash: {backlog:,} writes to the console ({_hub.dropped_chars - self._backlog_at_start[1]:,} "
                         f"characters) came faster than they could be kept (more than {MAX_QUEUED_CHARS:,} waiting) "
                         "and are not kept")
        if self.dropped.get("console_limit"):
            self._notice(f"ml-dash: the console of this run passed {self._limit:,} bytes; "
                         f"{self.dropped['console_limit']:,} later lines ({self._dropped_bytes:,} bytes) are not kept")
        self._ended = True

    def _notice(self, text: str) -> None:
        """A line of ml-dash's own about the console (what was not kept, and why): level ``warn``."""
        self._keep(text, "warn", "ml-dash", bounded=False)

    def stats(self) -> dict[str, Any]:
        """Lines and bytes kept; ``dropped`` by reason: ``console_limit`` (lines past the run's bound),
        ``console_backlog`` (writes past the queue's bound, counted at the end), ``refused``, ``run_ended``."""
        return {"lines": self.kept_lines, "bytes": self.kept_bytes, "dropped": dict(self.dropped)}

    def _keep(self, line: str, level: str, source: str, bounded: bool = True) -> None:
        if self._ended:
            return
        size = len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))
        if bounded and self.kept_bytes + size > self._limit:
            self._drop("console_limit")
            self._dropped_bytes += size
            return
        try:
            self._log(line, level, {"source": source})
        except ValueError:  # text the log refuses (a lone surrogate): kept with it escaped
            try:
                self._log(line.encode("utf-8", "backslashreplace").decode("utf-8"), level, {"source": source})
            except Exception:  # noqa: BLE001 - counted as refused
                self._drop("refused")
                return
        except Exception:  # noqa: BLE001 - the run ended under the drainer (RunStateError): nothing more is kept
            self._drop("run_ended")
            return
        self.kept_lines += 1
        self.kept_bytes += size

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

#: The longest traceback kept whole (a log line and its metadata fit in 1 MiB); a longer one keeps
#: its first quarter and its last three quarters (the innermost frames and the error) around a marker.
MAX_TRACEBACK_CHARS = 1_000_000


def traceback_text(error: BaseException) -> str:
    """The traceback Python would print for ``error`` (causes and contexts included)."""
    import traceback

    text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip("\n")
    if len(text.encode("utf-8", "surrogatepass")) <= MAX_TRACEBACK_CHARS:
        return text
    head, tail = MAX_TRACEBACK_CHARS // 16, MAX_TRACEBACK_CHARS * 3 // 16  # 4 bytes a char at worst
    return f"{text[:head]}\n... ({len(text) - head - tail:,} characters left out) ...\n{text[-tail:]}"
