"""One run's capture: started when the run starts, stopped (before its streams close) when it ends.

Everything here runs off the training thread except ``start`` (registering the console, starting
one thread) and ``stop`` (a last drain of the console, a last system row, joining the thread within
``STOP_TIMEOUT_S``). What capture writes goes through the run's ordinary faces (``exp.logs``,
``exp.metrics("system")``, ``exp.files``, the run's metadata), so it is written, uploaded, synced and
pulled like anything a script logs, and counted the same way. A failure of capture is one warning,
never an exception in the training script.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._ticker import Ticker
from .console import LogLine, RunConsole
from .provenance import FILES_PREFIX, collect
from .settings import CaptureSettings
from .system import SYSTEM_METRIC, SystemSampler

if TYPE_CHECKING:
    from .._run.session import RunSession
    from ..experiment import Experiment

logger = logging.getLogger("ml_dash.capture")

#: The longest a run's end waits for the capture thread (a provenance still reading git is abandoned).
STOP_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class RunSinks:
    """Where capture writes: the run's faces, and nothing else of it."""

    log: LogLine  # (message, level, metadata): a log line of the run
    system_row: Callable[[dict[str, float]], None]  # a row of the metric ``system``
    add_metadata: Callable[[str, Any], None]  # a key of the run's metadata
    save_file: Callable[[str, bytes], None]  # (name, content): a file under ``provenance/``
    directory: Path  # the run directory (the disk whose use is sampled)


class RunCapture:
    """The console, the system sampler and the provenance of one run, as ``settings`` asks."""

    def __init__(self, settings: CaptureSettings, sinks: RunSinks) -> None:
        self.settings = settings
        self._sinks = sinks
        self._console: RunConsole | None = None
        self._sampler: SystemSampler | None = None
        self._ticker: Ticker | None = None
        self._lock = threading.Lock()  # the end against a late provenance or row
        self._ended = False
        self.system_rows = 0
        self.provenance_recorded = False

    def start(self) -> None:
        """Called when the run starts, on the thread starting it."""
        if self.settings.console:
            try:
                self._console = RunConsole(self._sinks.log)
                self._console.start()
            except Exception as exc:  # noqa: BLE001 - capture fails as one warning, never as the script's exception
                self._console = None
                _warn("console capture", exc)
        interval = self.settings.system_interval_s
        if interval > 0 or self.settings.provenance:
            self._ticker = Ticker("ml-dash-capture", interval if interval > 0 else None, self._sample,
                                  lambda exc: _warn("system metrics", exc), setup=self._setup)
            self._ticker.start()

    def stop(self, error: BaseException | None) -> None:
        """Called when the run ends, before its streams close: keep what is left, stop the thread."""
        if self._console is not None:
            try:
                self._console.stop(error)
            except Exception as exc:  # noqa: BLE001 - capture fails as one warning, never as the script's exception
                _warn("console capture", exc)
        joined = self._ticker.stop(STOP_TIMEOUT_S) if self._ticker is not None else True
        sampler = self._sampler
        if joined and sampler is not None:
            try:
                self._sample()  # a last row: a run shorter than the interval has one too
            except Exception as exc:  # noqa: BLE001 - one warning, never the script's exception
                _warn("system metrics", exc)
        with self._lock:
            self._ended = True
        if joined and sampler is not None:
            sampler.close()

    def stats(self) -> dict[str, Any]:
        """What capture kept and dropped, for ``exp.stats()["capture"]``."""
        out: dict[str, Any] = {"system": {"interval_s": self.settings.system_interval_s, "rows": self.system_rows},
                               "provenance": {"recorded": self.provenance_recorded}}
        if self._console is not None:
            out["console"] = self._console.stats()
        return out

    # -- on the capture thread -----------------------------------------------------------------------
    def _setup(self) -> None:
        gpus = None
        if self.settings.system_interval_s > 0 or self.settings.provenance:
            from .gpu import open_gpus
            from .system import open_sampler

            reader = open_gpus()
            gpus = _describe(reader)
            if self.settings.system_interval_s > 0:
                try:
                    self._sampler = open_sampler(self._sinks.directory, reader)
                except Exception as exc:  # noqa: BLE001 - one warning; the provenance is still recorded
                    _warn("system metrics", exc)
            if self._sampler is None and reader is not None:
                reader.close()  # named for the provenance; nothing samples it
        if self.settings.provenance:
            self._record_provenance(gpus)

    def _record_provenance(self, gpus: dict[str, Any] | None) -> None:
        try:
            record, files = collect(Path.cwd(), gpus)
        except Exception as exc:  # noqa: BLE001 - capture fails as one warning, never as the script's exception
            _warn("provenance", exc)
            return
        with self._lock:
            if self._ended:
                return
            try:
                for name, content in files.items():
                    self._sinks.save_file(name, content)
                self._sinks.add_metadata("provenance", record)
                self.provenance_recorded = True
            except Exception as exc:  # noqa: BLE001 - capture fails as one warning, never as the script's exception
                _warn("provenance", exc)

    def _sample(self) -> None:
        sampler = self._sampler
        if sampler is None:
            return
        fields = sampler.sample()
        with self._lock:
            if fields and not self._ended:
                self._sinks.system_row(fields)
                self.system_rows += 1


def _describe(reader: Any) -> dict[str, Any] | None:
    if reader is None:
        return None
    try:
        return reader.describe()
    except Exception:
        logger.debug("ml-dash: could not name the GPUs", exc_info=True)
        return None


def _warn(what: str, exc: BaseException) -> None:
    logger.warning("ml-dash: %s stopped after an error (%s: %s); the run goes on without it", what,
                   type(exc).__name__, exc)


def attach(session: RunSession, settings: CaptureSettings, experiment: Experiment) -> RunCapture | None:
    """Capture for ``experiment``'s run as ``settings`` asks: started with the run, stopped at its end.
    None when nothing is asked."""
    if not settings.anything:
        return None
    capture = RunCapture(settings, _sinks(session, weakref.ref(experiment)))
    session.on_start(capture.start)
    session.on_end(capture.stop)
    return capture


def _sinks(session: RunSession, experiment: Callable[[], Experiment | None]) -> RunSinks:
    """The run's faces, reached through a weak reference: the capture thread and the console must not
    keep an Experiment alive that its script has let go of (a notebook cell run again)."""

    def log(message: str, level: str, metadata: dict) -> None:
        exp = experiment()
        if exp is not None:
            exp.logs.log(message, level, metadata)

    def system_row(fields: dict[str, float]) -> None:
        exp = experiment()
        if exp is not None:
            exp.metrics(SYSTEM_METRIC).log(fields)

    def save_file(name: str, content: bytes) -> None:
        exp = experiment()
        if exp is not None:
            exp.files(FILES_PREFIX).save(content, name)  # its type from its name (text/plain)

    return RunSinks(log=log, system_row=system_row, add_metadata=session.add_metadata, save_file=save_file,
                    directory=session.directory)
