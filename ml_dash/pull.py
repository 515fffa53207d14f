"""``ml-dash pull``: write a server-side run into a directory in the local layout.

The directory gets the server's run id and a writer id of its own, and an
upload cursor saying the server holds everything pulled: a run continued
there later sends only its new rows. A directory that already holds a run is
never overwritten (its rows may be ones the server lacks).
"""

from __future__ import annotations

import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Iterator

from .agent import utc_iso, write_document
from .agent import layout
from .agent.cursor import StreamCursor, UploadCursor
from .agent.jsonlines import dumps
from .errors import MLDashError
from .metrics import metric_metadata
from .naming import clean_relative_path, safe_join, validate_metric_name, validate_prefix
from .runlock import RunLock
from .server_reads import ServerReads


class PullError(MLDashError):
    pass


def pull(prefix: str, remote: str, api_key: str | None, user_name: str | None, target: Path) -> dict[str, int]:
    """Download ``prefix`` into ``target/<prefix>``; returns rows and files written per stream."""
    validate_prefix(prefix)
    server = ServerReads(remote, prefix, api_key, user_name, timeout_s=60.0)
    exp = server.experiment()
    if exp is None:
        raise PullError(f"{server.remote} has no run {prefix}")
    directory = Path(target) / prefix
    if (directory / layout.EXPERIMENT).exists():
        raise PullError(f"{directory} already holds a run; pull into another directory (--to) so that no local "
                        "row is replaced")
    lock = RunLock.acquire(directory, prefix, purpose="pulls")
    try:
        return _pull_into(server, exp, directory, prefix)
    finally:
        lock.release()


def _pull_into(server: ServerReads, exp: dict[str, Any], directory: Path, prefix: str) -> dict[str, int]:
    now = utc_iso()
    params_version = now
    write_document(directory / layout.PARAMS,
                   dumps({"version": 2, "data": exp.get("params") or {}, "createdAt": now, "updatedAt": params_version}))
    cursor = UploadCursor(directory, server.remote, prefix)
    counts: dict[str, int] = {}
    for stream in sorted(exp.get("streams", {})):
        if stream == layout.LOG_STREAM:
            path = directory / layout.LOGS_FILE
            counts[stream] = _write_lines(server.pages("/logs", "logs", layout.LOG_KEY), path)
        else:
            metric = layout.metric_name(stream)
            if metric is None:
                continue
            validate_metric_name(metric)  # a name from the server becomes a path here
            path = layout.stream_path(directory, stream)
            counts[stream] = _write_lines(server.pages(f"/metrics/{urllib.parse.quote(metric)}", "rows",
                                                       layout.METRIC_KEY), path)
            write_document(layout.metric_metadata_path(directory, metric),
                           dumps(metric_metadata(metric, None, counts[stream], now)))
        stored = exp["streams"][stream]  # the server's count: rows set aside by their client leave gaps
        cursor.streams[stream] = StreamCursor(stored if isinstance(stored, int) else counts[stream],
                                              path.stat().st_size if path.exists() else 0)
    counts["files"] = _pull_files(server, directory, cursor)
    cursor.documents["params"] = params_version
    cursor.save()
    # written last: a directory holding experiment.json is a complete run
    write_document(directory / layout.EXPERIMENT, dumps(_experiment_document(exp)))
    return counts


def _experiment_document(exp: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "project", "owner", "prefix", "description", "tags", "metadata", "created_at", "status",
            "started_at", "ended_at", "status_reason", "hostname", "run_id")
    return {**{k: exp.get(k) for k in keys}, "writer_id": uuid.uuid4().hex}


def _write_lines(pages: Iterator[list[dict[str, Any]]], path: Path) -> int:
    """Write a stream's pages as JSON lines (the server's rows are already in the file shape)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as f:
        for page in pages:
            f.write(b"".join(dumps(row) + b"\n" for row in page))
            written += len(page)
    return written


def _pull_files(server: ServerReads, directory: Path, cursor: UploadCursor) -> int:
    files_root = directory / layout.FILES_DIR
    entries = server.files()
    for entry in entries:
        target = safe_join(files_root, clean_relative_path("file path from the server", entry.get("path")))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            server.download(entry["path"], target)
        except FileNotFoundError as exc:  # listed, then gone: say so rather than write half a run
            raise PullError(str(exc)) from None
        if isinstance(entry.get("checksum"), str):
            cursor.files[entry["path"]] = entry["checksum"]
    if entries:
        write_document(files_root / layout.FILES_METADATA, dumps({"files": entries}))
    return len(entries)
