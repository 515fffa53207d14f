"""``exp.metrics``: time series of scalar rows.

``exp.metrics("train").log(loss=0.5, step=i)`` is the hot path of a training
loop. It checks value types (a ``type()`` lookup per field), appends
the fields dict (with the logging time as ``_ts``) to the stream's queue and
compares one length: the agent does the rest. ``_ts`` is therefore reserved. Rows land in ``metrics/<name>/data.jsonl`` as
``{"index": i, "data": {..., "_ts": seconds}, "createdAt": iso}``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .agent import RowStream, StreamClosedError, restore_metric_row
from .agent.jsonlines import ReadReport, iter_records
from .agent.values import PLAIN_SCALARS, check_scalar, is_tensor
from .errors import RunStateError
from .naming import validate_metric_name

if TYPE_CHECKING:
    from .experiment import Experiment

#: Name of the stream that ``exp.metrics.log(...)`` (no name) writes to.
DEFAULT_METRIC = "default"

_now = time.time
_PLAIN = PLAIN_SCALARS


class _LoggerMethods:
    """What both implementations of a metric logger share (everything but ``log``)."""

    __slots__ = ()

    def __init__(self, experiment: Experiment, name: str, stream: RowStream) -> None:
        self.name = name
        self._experiment = experiment
        self.bind(stream)

    def bind(self, stream: RowStream) -> None:
        self._stream = stream
        self._queue = stream.queue

    def _log_slow(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """``log({...}, **more)``: merge the positional dict, then log as keywords."""
        merged = _merge(_fields, fields) if _fields is not None else fields
        self.log(**merged)

    def _check_fields(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value.__class__ not in _PLAIN:
                checked = check_scalar(key, value)
                if checked is not value:
                    fields[key] = checked
                elif is_tensor(checked):
                    self._stream.has_tensors = True

    def _on_threshold(self) -> None:
        try:
            self._stream.on_threshold()
        except StreamClosedError:
            raise RunStateError(self._experiment._not_running_message()) from None

    def read(self, start_index: int = 0, limit: int | None = 1000, flush: bool = True) -> list[dict[str, Any]]:
        """Rows ``start_index`` onwards (at most ``limit``), including what is still buffered.

        Each row is ``{"index": i, "data": {...}, "createdAt": ...}`` with NaN and
        infinities restored as floats. In remote mode, a run this process has not
        started is read from the server.
        """
        server = self._experiment._server_reads()
        if server is not None:
            return server.metric_rows(self.name, start_index, limit)
        if flush:
            self._experiment.flush()
        return read_metric_rows(self._stream.path, start_index, limit)

    def __repr__(self) -> str:
        return f"<MetricLogger {self.name!r} of {self._experiment.prefix!r}>"


class PyMetricLogger(_LoggerMethods):
    """One named metric stream (``exp.metrics("train")``), pure-Python ``log``."""

    __slots__ = ("name", "_experiment", "_stream", "_queue")

    def log(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """Append one row; returns at once. Values: int, float, bool, None, str,
        numpy scalars or scalar torch tensors (read later by the agent, never
        synchronised here). ``step=``/``epoch=`` are ordinary fields.
        """
        if _fields is not None:
            fields = _merge(_fields, fields)
        for value in fields.values():
            if value.__class__ not in _PLAIN:
                self._check_fields(fields)
                break
        fields["_ts"] = _now()  # inside the dict: a (ts, dict) tuple would stay GC-tracked
        queue = self._queue
        queue.append(fields)
        if len(queue) >= self._stream.wake_at:
            self._on_threshold()


def _native_logger_class() -> type | None:
    """The C implementation of ``log`` (ml_dash/_fastlog.c), unless absent or switched off."""
    if os.environ.get("ML_DASH_PURE_PYTHON"):
        return None
    try:
        from ._fastlog import FastLogger
    except ImportError:
        return None

    class CMetricLogger(_LoggerMethods, FastLogger):
        """One named metric stream (``exp.metrics("train")``); ``log`` runs in C.

        Same behaviour as :class:`PyMetricLogger` (the C code calls back into
        ``_check_fields``, ``_on_threshold`` and ``_log_slow`` for anything but
        plain scalars below the wake threshold), at about half the cost per call.
        """

        __slots__ = ("name", "_experiment", "_stream", "_queue")

        def bind(self, stream: RowStream) -> None:
            _LoggerMethods.bind(self, stream)
            self._bind_queue(stream.queue, stream)

    return CMetricLogger


#: The logger class ``exp.metrics(name)`` creates: C-accelerated when built.
MetricLogger: type = _native_logger_class() or PyMetricLogger


def _merge(positional: dict[str, Any], keywords: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(positional, dict):
        raise TypeError(f"metrics log() takes a dict of fields or keyword fields, not {type(positional).__name__}")
    for key in positional:
        if not isinstance(key, str):
            raise TypeError(f"metric field names must be str, got {key!r}")
    return {**positional, **keywords}


def read_metric_rows(path: Any, start_index: int = 0, limit: int | None = None, report: ReadReport | None = None) -> list[dict[str, Any]]:
    """Read a metric's ``data.jsonl`` tolerantly (a torn last line is skipped and reported)."""
    report = report if report is not None else ReadReport()
    rows = []
    for record in iter_records(path, report):
        index = record.get("index")
        if not isinstance(index, int) or index < start_index:
            continue
        rows.append(restore_metric_row(record))
        if limit is not None and len(rows) >= limit:
            break
    return rows


class Metrics(dict):
    """``exp.metrics``: ``exp.metrics("train")`` is the named stream, ``exp.metrics.log(...)``
    logs to the unnamed one (``metrics/default``).

    A dict of name -> :class:`MetricLogger` whose call is ``dict.__getitem__``:
    ``exp.metrics("train")`` sits in every step of a training loop, and a C-level
    lookup saves a Python frame (~50 ns here); new names go through ``__missing__``.
    """

    __call__ = dict.__getitem__

    def __init__(self, experiment: Experiment) -> None:
        super().__init__()
        self._experiment = experiment
        self._create_lock = threading.Lock()  # first use of a name from several threads at once

    def __missing__(self, name: str) -> MetricLogger:
        validate_metric_name(name)
        with self._create_lock:
            logger = dict.get(self, name)
            if logger is None:
                logger = self[name] = MetricLogger(self._experiment, name, self._experiment._metric_stream(name))
        return logger

    def log(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """Log one row to the unnamed metric (stored as ``metrics/default``)."""
        self[DEFAULT_METRIC].log(_fields, **fields)

    def names(self) -> list[str]:
        """Metric names that have a directory on disk or a logger in this process."""
        on_disk = {p.name for p in (self._experiment.directory / "metrics").glob("*") if p.is_dir()}
        return sorted(on_disk | set(self))

    def _rebind_all(self) -> None:
        with self._create_lock:
            for name, logger in self.items():
                logger.bind(self._experiment._metric_stream(name))

    def __repr__(self) -> str:
        return f"<Metrics {sorted(self)} of {self._experiment.prefix!r}>"


def metric_metadata(name: str, existing: dict[str, Any] | None, rows: int, now_iso: str) -> dict[str, Any]:
    """The ``metrics/<name>/metadata.json`` document (upstream shape) for a metric of ``rows`` rows."""
    base = dict(existing or {})
    base.setdefault("metricId", uuid.uuid4().hex)
    base.setdefault("name", name)
    base.setdefault("description", None)
    base.setdefault("tags", [])
    base.setdefault("metadata", None)
    base.setdefault("createdAt", now_iso)
    base["totalDataPoints"] = rows
    base["nextIndex"] = rows
    base["updatedAt"] = now_iso
    return base


__all__ = ["DEFAULT_METRIC", "MetricLogger", "Metrics", "PyMetricLogger", "read_metric_rows"]
