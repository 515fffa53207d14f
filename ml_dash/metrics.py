"""``exp.metrics``: time series of scalar rows.

``exp.metrics("train").log(loss=0.5, step=i)`` is the hot path of a training
loop. It checks value types (a ``type()`` lookup per field), appends
``(time, fields)`` to the stream's queue and compares one length: the agent
does the rest. Rows land in ``metrics/<name>/data.jsonl`` as
``{"index": i, "data": {..., "_ts": seconds}, "createdAt": iso}``.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Iterator

from .agent import RowStream, StreamClosedError, restore_metric_row
from .agent.jsonlines import ReadReport, iter_records, mark_non_finite_metric_row
from .agent.values import PLAIN_SCALARS, check_scalar, is_tensor
from .errors import RunStateError
from .naming import validate_metric_name

if TYPE_CHECKING:
    from .experiment import Experiment

#: Name of the stream that ``exp.metrics.log(...)`` (no name) writes to.
DEFAULT_METRIC = "default"

_now = time.time
_PLAIN = PLAIN_SCALARS


def build_metric_row(index: int, ts: float, fields: dict, created_at: str) -> dict:
    fields["_ts"] = ts
    return {"index": index, "data": fields, "createdAt": created_at}


class MetricLogger:
    """One named metric stream of an experiment (``exp.metrics("train")``)."""

    __slots__ = ("name", "_experiment", "_stream", "_queue")

    def __init__(self, experiment: Experiment, name: str, stream: RowStream) -> None:
        self.name = name
        self._experiment = experiment
        self.bind(stream)

    def bind(self, stream: RowStream) -> None:
        self._stream = stream
        self._queue = stream.queue

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
        queue = self._queue
        queue.append((_now(), fields))
        stream = self._stream
        if len(queue) >= stream.wake_at:
            try:
                stream.on_threshold()
            except StreamClosedError:
                raise RunStateError(self._experiment._not_running_message()) from None

    def _check_fields(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value.__class__ not in _PLAIN:
                checked = check_scalar(key, value)
                if checked is not value:
                    fields[key] = checked
                elif is_tensor(checked):
                    self._stream.has_tensors = True

    def read(self, start_index: int = 0, limit: int | None = 1000, flush: bool = True) -> list[dict[str, Any]]:
        """Rows ``start_index`` onwards (at most ``limit``), including what is still buffered.

        Each row is ``{"index": i, "data": {...}, "createdAt": ...}`` with NaN and
        infinities restored as floats.
        """
        if flush:
            self._experiment.flush()
        return read_metric_rows(self._stream.path, start_index, limit)

    def __repr__(self) -> str:
        return f"<MetricLogger {self.name!r} of {self._experiment.prefix!r}>"


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


class Metrics:
    """``exp.metrics``: call it with a name for a stream, or log to the unnamed one."""

    def __init__(self, experiment: Experiment) -> None:
        self._experiment = experiment
        self._loggers: dict[str, MetricLogger] = {}

    def __call__(self, name: str = DEFAULT_METRIC) -> MetricLogger:
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._create(name)
        return logger

    def _create(self, name: str) -> MetricLogger:
        validate_metric_name(name)
        stream = self._experiment._metric_stream(name)
        logger = self._loggers[name] = MetricLogger(self._experiment, name, stream)
        return logger

    def log(self, _fields: dict[str, Any] | None = None, /, **fields: Any) -> None:
        """Log one row to the unnamed metric (stored as ``metrics/default``)."""
        self(DEFAULT_METRIC).log(_fields, **fields)

    def names(self) -> list[str]:
        """Metric names that have a directory on disk or a logger in this process."""
        on_disk = {p.name for p in (self._experiment.directory / "metrics").glob("*") if p.is_dir()}
        return sorted(on_disk | set(self._loggers))

    def __iter__(self) -> Iterator[MetricLogger]:
        return iter(list(self._loggers.values()))

    def _rebind_all(self) -> None:
        for name, logger in self._loggers.items():
            logger.bind(self._experiment._metric_stream(name))


def metric_metadata(name: str, existing: dict[str, Any] | None, stream: RowStream, now_iso: str) -> dict[str, Any]:
    """The ``metrics/<name>/metadata.json`` document (upstream shape) after ``stream``'s writes."""
    base = dict(existing or {})
    base.setdefault("metricId", uuid.uuid4().hex)
    base.setdefault("name", name)
    base.setdefault("description", None)
    base.setdefault("tags", [])
    base.setdefault("metadata", None)
    base.setdefault("createdAt", now_iso)
    base["totalDataPoints"] = stream.next_index
    base["nextIndex"] = stream.next_index
    base["updatedAt"] = now_iso
    return base


__all__ = ["DEFAULT_METRIC", "MetricLogger", "Metrics", "build_metric_row", "mark_non_finite_metric_row", "read_metric_rows"]
