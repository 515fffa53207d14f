"""``ml-dash pull``: write a server-side run into a directory in the local layout."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any, Iterator

from .agent import utc_iso
from .agent.jsonlines import dumps
from .agent.rundir import write_document
from .errors import MLDashError
from .metrics import metric_metadata
from .naming import safe_join, validate_prefix
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
    directory.mkdir(parents=True, exist_ok=True)
    write_document(directory / "experiment.json", dumps(_experiment_document(exp)))
    now = utc_iso()
    write_document(directory / "parameters.json",
                   dumps({"version": 2, "data": exp.get("params") or {}, "createdAt": now, "updatedAt": now}))
    counts: dict[str, int] = {}
    for stream in sorted(exp.get("streams", {})):
        if stream == "logs":
            counts["logs"] = _write_lines(server.pages("/logs", "logs"), directory / "logs.jsonl")
        elif stream.startswith("metrics/"):
            metric = stream[len("metrics/"):]
            path = directory / "metrics" / metric / "data.jsonl"
            counts[stream] = _write_lines(server.pages(f"/metrics/{urllib.parse.quote(metric)}", "rows"), path)
            write_document(path.parent / "metadata.json", dumps(metric_metadata(metric, None, counts[stream], now)))
    counts["files"] = _pull_files(server, directory)
    return counts


def _experiment_document(exp: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "project", "owner", "prefix", "description", "tags", "metadata", "created_at", "status",
            "started_at", "ended_at", "status_reason")
    return {k: exp.get(k) for k in keys}


def _write_lines(pages: Iterator[list[dict[str, Any]]], path: Path) -> int:
    """Write a stream's pages as JSON lines (the server's rows are already in the file shape)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as f:
        for page in pages:
            f.write(b"".join(dumps(row) + b"\n" for row in page))
            written += len(page)
    return written


def _pull_files(server: ServerReads, directory: Path) -> int:
    files_root = directory / "files"
    entries = server.files()
    for entry in entries:
        target = safe_join(files_root, entry["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            server.download(entry["path"], target)
        except FileNotFoundError as exc:  # listed, then gone: say so rather than write half a run
            raise PullError(str(exc)) from None
    if entries:
        write_document(files_root / ".files_metadata.json", dumps({"files": entries}))
    return len(entries)
