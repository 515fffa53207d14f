"""The run directory: every file name, stream name and identity key, in one place.

Layout version 1 (the specification's), written by the agent and the SDK,
read by the CLI, ``ml-dash sync`` and ``ml-dash pull``::

    <run directory>/
    ├── experiment.json              the run's document (name, prefix, status, run_id, writer_id, ...)
    ├── parameters.json              {"version": 2, "data": {...}, "createdAt", "updatedAt"}
    ├── logs.jsonl                   stream "logs"; records keyed by "sequenceNumber"
    ├── metrics/<name>/data.jsonl    stream "metrics/<name>"; records keyed by "index"
    ├── metrics/<name>/metadata.json
    ├── files/<path>                 saved files, listed in files/.files_metadata.json
    ├── .ml-dash.lock                locked (fcntl) by the one process writing the run
    ├── .ml-dash-upload.json         per server: what it acknowledged (the upload cursor)
    └── .ml-dash-rejected/           rows a server or the uploader set aside, one JSON file each

A stream's identity key is contiguous from 0 within its file. Nothing else in
the tree spells these names: writers and readers import them from here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

EXPERIMENT = "experiment.json"
PARAMS = "parameters.json"
LOGS_FILE = "logs.jsonl"
METRICS_DIR = "metrics"
METRIC_DATA = "data.jsonl"
METRIC_METADATA = "metadata.json"
FILES_DIR = "files"
FILES_METADATA = ".files_metadata.json"
LOCK_FILE = ".ml-dash.lock"
UPLOAD_CURSOR = ".ml-dash-upload.json"
REJECTED_DIR = ".ml-dash-rejected"

LOG_STREAM = "logs"
METRIC_PREFIX = "metrics/"
LOG_KEY = "sequenceNumber"
METRIC_KEY = "index"

#: The run fields of experiment.json that a server stores (and ``pull`` writes back).
RUN_FIELDS = ("description", "tags", "metadata", "status", "status_reason", "created_at", "started_at",
              "ended_at", "hostname")


def metric_stream(name: str) -> str:
    """The stream name of metric ``name``."""
    return METRIC_PREFIX + name


def metric_name(stream: str) -> str | None:
    """The metric a stream name refers to, or None for the logs (or anything else)."""
    return stream[len(METRIC_PREFIX):] if stream.startswith(METRIC_PREFIX) else None


def identity_key(stream: str) -> str:
    """The key every record of ``stream`` starts with."""
    return LOG_KEY if stream == LOG_STREAM else METRIC_KEY


def stream_path(directory: Path, stream: str) -> Path:
    """The JSON-lines file of ``stream`` in a run directory."""
    metric = metric_name(stream)
    if metric is None:
        return Path(directory) / LOGS_FILE
    return Path(directory) / METRICS_DIR / metric / METRIC_DATA


def metric_metadata_path(directory: Path, metric: str) -> Path:
    return Path(directory) / METRICS_DIR / metric / METRIC_METADATA


def discover_streams(directory: Path) -> list[tuple[str, Path]]:
    """The streams of a run directory that have a file, logs first, then metrics by name."""
    return [(name, Path(path)) for name, path, _ in stream_sizes(directory)]


def stream_sizes(directory: Path | str) -> list[tuple[str, str, int]]:
    """:func:`discover_streams` as (stream, path as text, size): one stat per stream and no path objects (a
    run may have 20,000 streams, and the upload and ``ml-dash ui`` ask every second)."""
    base = os.fspath(directory)
    found = [(LOG_STREAM, f"{base}/{LOGS_FILE}")]
    try:
        with os.scandir(f"{base}/{METRICS_DIR}") as entries:  # the entry's type comes with the listing
            names = sorted(entry.name for entry in entries if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        names = []
    found += [(metric_stream(name), f"{base}/{METRICS_DIR}/{name}/{METRIC_DATA}") for name in names]
    out = []
    for name, path in found:
        try:
            status = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(status.st_mode):
            out.append((name, path, status.st_size))
    return out
