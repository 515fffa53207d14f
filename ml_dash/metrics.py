"""``exp.metrics``: time series of scalar rows.

``exp.metrics("train").log(loss=0.5, step=i)`` is the hot path of a training
loop. It checks that the row is plain (a ``type()`` lookup per field: floats,
bools, None, 64-bit ints, short ASCII strings, short ASCII names, at most 32
fields), appends the fields dict (with the logging time as ``_ts``) to the
stream's queue and compares one length: the agent does the rest. Any other
row is checked against the value domain (ml_dash/format/values.py) first: refused with
a TypeError/ValueError naming the field, or accepted, converted (numpy values)
and, when big, counted at its own size against the memory bound. ``_ts`` is
reserved. Rows land in ``metrics/<name>/data.jsonl`` as
``{"index": i, "data": {..., "_ts": seconds}, "createdAt": iso}``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agent import RowStream, SizedRow, StreamClosedError, restore_metric_row
from .agent.backlog import offset_of_index
from .agent.streams import metric_row_bytes
from .agent.tensors import is_tensor
from .errors import RunStateError
from .format.jsonlines import ReadReport, iter_records
from .format.latest import LATEST_KEY, latest_from_document, latest_part
from .format.layout import METRIC_KEY, METRICS_DIR
from .format.naming import validate_metric_name
from .format.values import (
    INT_MAX,
    INT_MIN,
    MAX_NAME_CHARS,
    MAX_ROW_BYTES,
    NARROW_ROW_FIELDS,
    RESERVED_FIELD,
    SMALL_STR_CHARS,
    check_name,
    metric_value,
    utf8_size,
)

if TYPE_CHECKING:
    from ._run.session import RunSession

#: Name of the stream that ``exp.metrics.log(...)`` (no name) writes to.
DEFAULT_METRIC = "default"

_now = time.time
_BUILTIN_VALUES = (str, float, int, bool, type(None))


class _LoggerMethods:
    """What both implementations of a metric logger share (everything but ``log``)."""

    # The slots are the subclasses' (the C one's must follow its base's layout); the type checker is
    # told about them here.
    if TYPE_CHECKING:
        __slots__ = ("_owner", "_queue", "_session", "_stream", "name")
        name: str
        _owner: Any
        _session: RunSession
        _stream: RowStream
        _queue: Any

        def log(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None: ...
    else:
        __slots__ = ()

    def __init__(self, session: RunSession, name: str, stream: RowStream) -> None:
        self.name = name
        self._session = session
        # The Experiment, strongly: a handle kept by a training loop keeps its run referenced, so a new
        # Experiment on the directory is refused instead of ending the run under it (session._end_orphan).
        # Taken once here; ``log`` never touches it.
        self._owner = session.holder()
        self.bind(stream)

    def bind(self, stream: RowStream) -> None:
        self._stream = stream
        self._queue = stream.queue

    def _log_slow(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """``log({...}, **more)``: merge the positional dict, then log as keywords."""
        merged = _merge(_fields, fields) if _fields is not None else fields
        self.log(**merged)

    def _check_fields(self, fields: dict[str, Any]) -> dict[str, Any] | SizedRow | None:
        """Check a row that is not plain against the value domain; convert numpy values in place.
        Returns what to append (the dict, or a SizedRow when it is big), or None when the memory
        bound dropped it."""
        size = string_bytes = 0
        for key in list(fields):
            if key == RESERVED_FIELD:
                raise ValueError(f"metric field name {RESERVED_FIELD!r} is reserved: ml-dash records the logging time in it")
            what = f"metric field {key!r} of {self.name!r}"
            check_name(f"a metric field name of {self.name!r}", key)
            value, value_size = metric_value(what, fields[key])
            if value is not fields[key]:
                fields[key] = value
            if value.__class__ not in _BUILTIN_VALUES and is_tensor(value):
                self._stream.has_tensors = True
            size += utf8_size(what, key) + value_size
            if value.__class__ is str:
                string_bytes += value_size
        if size > MAX_ROW_BYTES:
            raise ValueError(f"a row of metric {self.name!r} is {size:,} bytes (names and strings, 16 per other value); "
                             f"the limit is {MAX_ROW_BYTES:,}")
        if string_bytes > SMALL_STR_CHARS or len(fields) > NARROW_ROW_FIELDS:  # past the fixed estimate
            return self._stream.admit_sized(fields, metric_row_bytes(len(fields) + 1) + string_bytes)
        return fields

    def _on_threshold(self, row: Any) -> None:
        try:
            self._stream.on_threshold(row)
        except StreamClosedError:
            raise RunStateError(self._session.not_running_message()) from None

    def read(self, start_index: int = 0, limit: int | None = 1000, flush: bool = True) -> list[dict[str, Any]]:
        """Rows ``start_index`` onwards (at most ``limit``), including what is still buffered.

        Each row is ``{"index": i, "data": {...}, "createdAt": ...}`` with NaN and
        infinities restored as floats. In remote mode, a run this process has not
        started is read from the server.
        """
        server = self._session.server_reads()
        if server is not None:
            return server.metric_rows(self.name, start_index, limit)
        if flush:
            self._session.flush()
        return read_metric_rows(self._stream.path, start_index, limit)

    def __repr__(self) -> str:
        return f"<MetricLogger {self.name!r} of {self._session.prefix!r}>"


def _is_plain_row(fields: dict[str, Any]) -> bool:
    """The pure-Python twin of the C fast path's check (ml_dash/_fastlog.c): a row its stream's fixed
    memory estimate covers, of values that need no check."""
    if len(fields) > NARROW_ROW_FIELDS:
        return False
    chars = 0
    for key, value in fields.items():
        cls = value.__class__
        if cls is str:
            chars += len(value)
            if chars > SMALL_STR_CHARS or not value.isascii():
                return False
        elif not (cls is float or value is None or cls is bool or (cls is int and INT_MIN <= value <= INT_MAX)):
            return False
        if not (0 < len(key) <= MAX_NAME_CHARS and key.isascii()):
            return False
    return True


class PyMetricLogger(_LoggerMethods):
    """One named metric stream (``exp.metrics("train")``), pure-Python ``log``."""

    __slots__ = ("_owner", "_queue", "_session", "_stream", "name")

    def log(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """Append one row; returns at once. Values: int, float, bool, None, str,
        numpy scalars or one-element torch tensors (read later by the agent, never
        synchronised here); see ml_dash/agent/values.py for the domain and sizes.
        ``step=``/``epoch=`` are ordinary fields.
        """
        if _fields is not None:
            fields = _merge(_fields, fields)
        row: Any = fields
        if RESERVED_FIELD in fields or not _is_plain_row(fields):
            row = self._check_fields(fields)
            if row is None:
                return
        fields["_ts"] = _now()  # inside the dict: a (ts, dict) tuple would stay GC-tracked
        queue = self._queue
        queue.append(row)
        if len(queue) >= self._stream.wake_at:
            self._on_threshold(row)


def _native_logger_class() -> type | None:
    """The C implementation of ``log`` (ml_dash/_fastlog.c), unless absent or switched off."""
    if os.environ.get("ML_DASH_PURE_PYTHON"):
        return None
    try:
        from ._fastlog import FastLogger  # type: ignore[import-not-found]  # built from _fastlog.c
    except ImportError:
        return None

    class CMetricLogger(_LoggerMethods, FastLogger):
        """One named metric stream (``exp.metrics("train")``); ``log`` runs in C.

        Same behaviour as :class:`PyMetricLogger` (the C code calls back into
        ``_check_fields``, ``_on_threshold`` and ``_log_slow`` for anything but
        plain rows below the wake threshold), at about half the cost per call.
        """

        __slots__ = ("_owner", "_queue", "_session", "_stream", "name")

        def bind(self, stream: RowStream) -> None:
            _LoggerMethods.bind(self, stream)
            self._bind_queue(stream.queue, stream)

    return CMetricLogger


#: The logger class ``exp.metrics(name)`` creates: C-accelerated when built.
MetricLogger: type[_LoggerMethods] = _native_logger_class() or PyMetricLogger


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
    # indices grow along the file: a bisection finds where start_index begins (no decoding before it)
    offset = offset_of_index(Path(path), METRIC_KEY, start_index) if start_index > 0 else 0
    for record in iter_records(path, report, offset):
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

    def __init__(self, session: RunSession) -> None:
        super().__init__()
        self._session = session
        self._owner = session.holder()  # a handle keeps its Experiment referenced (see _LoggerMethods)
        self._create_lock = threading.Lock()  # first use of a name from several threads at once
        session.on_start(self._rebind_all)

    def __missing__(self, name: str) -> _LoggerMethods:
        validate_metric_name(name)
        with self._create_lock:
            logger = dict.get(self, name)
            if logger is None:
                logger = self[name] = MetricLogger(self._session, name, self._session.metric_stream(name))
        return logger

    def log(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """Log one row to the unnamed metric (stored as ``metrics/default``)."""
        self[DEFAULT_METRIC].log(_fields, **fields)

    def names(self) -> list[str]:
        """Metric names that have a directory on disk or a logger in this process."""
        on_disk = {p.name for p in (self._session.directory / METRICS_DIR).glob("*") if p.is_dir()}
        return sorted(on_disk | set(self))

    def _rebind_all(self) -> None:
        with self._create_lock:
            for name, logger in self.items():
                logger.bind(self._session.metric_stream(name))

    def __repr__(self) -> str:
        return f"<Metrics {sorted(self)} of {self._session.prefix!r}>"


def metric_metadata(name: str, existing: dict[str, Any] | None, rows: int, now_iso: str,
                    latest: dict[str, Any] | None = None, latest_end: int = 0) -> dict[str, Any]:
    """The ``metrics/<name>/metadata.json`` document (upstream shape) for a metric of ``rows`` rows; with
    ``latest`` (the values this process wrote, its rows ending at byte ``latest_end`` of the file), also
    each field's latest value, over those ``existing`` holds (a resumed run keeps the fields it logged
    before)."""
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
    if latest:  # over the part of ``existing`` (as the writer reopened it: ml_dash/format/latest.py caught_up)
        kept = latest_from_document(existing)
        values = {**kept.values, **latest} if kept is not None else latest
        base[LATEST_KEY] = latest_part(values, kept.start if kept is not None else 0, latest_end)
    return base


__all__ = ["DEFAULT_METRIC", "MetricLogger", "Metrics", "PyMetricLogger", "read_metric_rows"]
