"""Reading run directories back: summaries and integrity checks (no agent involved)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .agent.jsonlines import ReadReport, iter_records, read_json


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


def find_runs(root: Path) -> Iterator[Path]:
    """Every directory under ``root`` (itself included) holding an ``experiment.json``."""
    root = Path(root)
    if (root / "experiment.json").is_file():
        yield root
        return
    for doc in sorted(root.rglob("experiment.json")):
        if "files" not in doc.relative_to(root).parts[:-1]:
            yield doc.parent


def summarise(directory: Path) -> RunSummary:
    """Read every file of a run, tolerating damage; damaged lines are listed in ``problems``."""
    directory = Path(directory)
    doc = read_json(directory / "experiment.json")
    doc = doc if isinstance(doc, dict) else {}
    summary = RunSummary(directory, str(doc.get("prefix", directory.name)), str(doc.get("status", "UNKNOWN")))
    report = ReadReport()
    for data in sorted((directory / "metrics").glob("*/data.jsonl")):
        summary.metrics[data.parent.name] = sum(1 for _ in iter_records(data, report))
    summary.log_lines = sum(1 for _ in iter_records(directory / "logs.jsonl", report))
    params = read_json(directory / "parameters.json")
    if isinstance(params, dict) and isinstance(params.get("data"), dict):
        summary.params = params["data"]
    files = read_json(directory / "files/.files_metadata.json")
    if isinstance(files, dict) and isinstance(files.get("files"), list):
        summary.files = len(files["files"])
    summary.problems = report.problems
    return summary
