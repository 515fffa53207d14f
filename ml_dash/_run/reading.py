"""Reading run directories back: summaries and integrity checks (no agent involved)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format import layout
from ..format.jsonlines import ReadReport, iter_records, read_json
from .metric_summary import MetricSummary
from .runlock import writer_alive


@dataclass(slots=True)
class RunSummary:
    """What ``ml-dash ls`` and ``ml-dash show`` print about one run directory."""

    directory: Path
    prefix: str
    status: str
    metrics: dict[str, int] = field(default_factory=dict)
    log_lines: int = 0
    files: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: The run document (experiment.json) as read: times, status reason.
    document: dict[str, Any] = field(default_factory=dict)
    #: Per metric, its fields' last and best values (only when summarise was asked for values).
    values: dict[str, MetricSummary] = field(default_factory=dict)


#: The folders of a run directory that hold no runs: never walked into (a run of 20,000 metrics has
#: 20,000 folders under ``metrics``, and ``ml-dash ui`` looks for new runs every second).
_RUN_PARTS = frozenset({layout.METRICS_DIR, layout.FILES_DIR, layout.REJECTED_DIR})


def find_runs(root: Path) -> Iterator[Path]:
    """Every directory under ``root`` (itself included) holding an ``experiment.json``, in path order; nothing
    inside a run's own folders (its metrics, files, set-aside rows: a run saved as a file is no run). An
    owner, project or run named ``files`` is found like any other (every ``files`` folder was once skipped,
    and ``ml-dash ui`` answered "no experiment" for ``alice/files/run``)."""
    root = Path(root)
    if (root / layout.EXPERIMENT).is_file():
        yield root
        return
    found = []
    for top, folders, names in os.walk(root):  # symbolic links to folders are not followed
        if layout.EXPERIMENT in names:
            found.append(Path(top))
            folders[:] = [f for f in folders if f not in _RUN_PARTS]
    yield from sorted(found, key=lambda p: p / layout.EXPERIMENT)


class IndexCheck:
    """Follows one stream's identity keys: they must run 0, 1, 2, ... with no index twice."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.expected = 0
        self.duplicates = 0
        self.missing = 0
        self._first: dict[str, int] = {}

    def see(self, index: object) -> None:
        if not isinstance(index, int) or isinstance(index, bool):
            return
        if index == self.expected:
            self.expected += 1
        elif index < self.expected:
            self.duplicates += 1
            self._first.setdefault("duplicate", index)
        else:
            self.missing += index - self.expected
            self._first.setdefault("missing", self.expected)
            self.expected = index + 1

    def problems(self, path: Path) -> list[str]:
        found = []
        if self.duplicates:
            found.append(f"{path}: {self.duplicates} duplicate indices (first {self._first['duplicate']}): "
                         "two writers wrote this stream")
        if self.missing:
            found.append(f"{path}: {self.missing} missing indices (first {self._first['missing']})")
        return found


def _count_rows(path: Path, stream: str, report: ReadReport, values: MetricSummary | None = None) -> int:
    check = IndexCheck(stream)
    key = layout.identity_key(stream)
    rows = 0
    for record in iter_records(path, report):
        rows += 1
        check.see(record.get(key))
        if values is not None:
            values.see(record)
    report.problems.extend(check.problems(path))
    return rows


def written_here(doc: dict[str, Any]) -> bool:
    """Whether a run document was written by a writer of this directory (it records its pid), not
    pulled from a server, whose RUNNING means the server's run is still going."""
    return isinstance(doc.get("pid"), int)


def summarise(directory: Path, values: bool = False) -> RunSummary:
    """Read every file of a run, tolerating damage; damaged lines, and indices that repeat or skip,
    are listed in ``problems``. With ``values``, each metric's fields are summarised too (``ml-dash show``)."""
    directory = Path(directory)
    doc = read_json(directory / layout.EXPERIMENT)
    doc = doc if isinstance(doc, dict) else {}
    status = str(doc.get("status", "UNKNOWN"))
    if status == "RUNNING" and written_here(doc) and writer_alive(directory, doc) is False:
        status = "CRASHED"  # no writer holds it: its process is gone
    summary = RunSummary(directory, str(doc.get("prefix", directory.name)), status, document=doc)
    report = ReadReport()
    for stream, path in layout.discover_streams(directory):
        metric = layout.metric_name(stream)
        folded = MetricSummary() if values and metric is not None else None
        rows = _count_rows(path, stream, report, folded)
        if metric is None:
            summary.log_lines = rows
        else:
            summary.metrics[metric] = rows
            if folded is not None:
                summary.values[metric] = folded
    params = read_json(directory / layout.PARAMS)
    if isinstance(params, dict) and isinstance(params.get("data"), dict):
        summary.params = params["data"]
    files = read_json(directory / layout.FILES_DIR / layout.FILES_METADATA)
    if isinstance(files, dict) and isinstance(files.get("files"), list):
        summary.files = len(files["files"])
    summary.problems = report.problems
    return summary
