"""``ml-dash pull``: write a server-side run into a directory in the local layout.

The directory gets the server's run id and a writer id of its own, and an
upload cursor saying the server holds everything pulled: a run continued
there later sends only its new rows. A directory that already holds a run is
never overwritten (its rows may be ones the server lacks). Everything the
server sends is checked as strictly as what a client sends (names that become
paths above all), and the run is written into a staging directory beside the
target and renamed into place only when complete: a failed pull leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._run.nesting import check_not_inside_a_run
from ..errors import MLDashError
from ..format import layout
from ..format.atomic import write_document
from ..format.cursor import StreamCursor, UploadCursor
from ..format.jsonlines import dumps
from ..format.latest import merge_latest, row_values
from ..format.naming import clean_relative_path, is_identity, safe_join, validate_metric_name, validate_prefix
from ..format.vocabulary import utc_iso
from ..metrics import metric_metadata
from .reads import ServerReads


class PullError(MLDashError):
    pass


def pull(prefix: str, remote: str, api_key: str | None, user_name: str | None, target: Path) -> dict[str, int]:
    """Download ``prefix`` into ``target/<prefix>``; returns rows and files written per stream."""
    validate_prefix(prefix)
    directory = Path(target) / prefix
    check_not_inside_a_run(directory, prefix, "--to")  # a --to inside a run would hide the pulled run from every reader
    server = ServerReads(remote, prefix, api_key, user_name, timeout_s=60.0)
    exp = server.experiment()
    if exp is None:
        raise PullError(f"{server.remote} has no run {prefix}")
    streams = _checked_streams(server, exp)
    if directory.exists() and any(directory.iterdir()):
        what = "a run" if (directory / layout.EXPERIMENT).exists() else "files"
        raise PullError(f"{directory} already holds {what}; pull into another directory (--to) so that nothing "
                        "local is replaced")
    staging = directory.with_name(f".{directory.name}.pulling-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        counts = _pull_into(server, exp, streams, staging, prefix)
        if directory.exists():
            directory.rmdir()  # empty (checked above)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


def _checked_streams(server: ServerReads, exp: dict[str, Any]) -> dict[str, int]:
    """The run's streams and their stored counts, refusing names that are not the layout's."""
    streams = exp.get("streams")
    if not isinstance(streams, dict):
        raise PullError(f"{server.remote} sent no stream counts for {server.prefix}")
    checked: dict[str, int] = {}
    for name, count in streams.items():
        metric = layout.metric_name(name) if isinstance(name, str) else None
        try:
            if name != layout.LOG_STREAM:
                validate_metric_name(metric)  # a name from the server becomes a path here
        except (TypeError, ValueError) as exc:
            raise PullError(f"{server.remote} named a stream {name!r} of {server.prefix}: {exc}") from None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise PullError(f"{server.remote} sent the count {count!r} for {name!r} of {server.prefix}")
        checked[name] = count
    return checked


def _pull_into(server: ServerReads, exp: dict[str, Any], streams: dict[str, int], directory: Path,
               prefix: str) -> dict[str, int]:
    directory.mkdir(parents=True)
    now = utc_iso()
    params = exp.get("params") if isinstance(exp.get("params"), dict) else {}
    write_document(directory / layout.PARAMS, dumps({"version": 2, "data": params, "createdAt": now, "updatedAt": now}))
    cursor = UploadCursor(directory, server.remote, prefix)
    counts: dict[str, int] = {}
    for stream, stored in sorted(streams.items()):
        path = layout.stream_path(directory, stream)
        metric = layout.metric_name(stream)
        if metric is None:
            pages = server.pages("/logs", "logs", layout.LOG_KEY, limit=stored)
        else:
            pages = server.pages(f"/metrics/{urllib.parse.quote(metric)}", "rows", layout.METRIC_KEY, limit=stored)
        latest: dict[str, Any] | None = {} if metric is not None else None
        counts[stream] = _write_lines(pages, path, latest)
        if metric is not None:
            size = path.stat().st_size if path.exists() else 0
            write_document(layout.metric_metadata_path(directory, metric),
                           dumps(metric_metadata(metric, None, counts[stream], now, latest, size)))
        # the server's count: rows set aside by their client leave gaps the cursor must be past
        cursor.streams[stream] = StreamCursor(stored, path.stat().st_size if path.exists() else 0)
    counts["files"] = _pull_files(server, directory, cursor)
    cursor.documents["params"] = now
    cursor.save()
    # written last: a directory holding experiment.json is a complete run
    write_document(directory / layout.EXPERIMENT, dumps(_experiment_document(exp, prefix)))
    return counts


def _experiment_document(exp: dict[str, Any], prefix: str) -> dict[str, Any]:
    owner, project, name = prefix.split("/")
    keys = ("description", "tags", "metadata", "created_at", "status", "started_at", "ended_at", "status_reason",
            "hostname")
    run_id = exp.get("run_id")
    return {"name": name, "project": project, "owner": owner, "prefix": prefix, **{k: exp.get(k) for k in keys},
            "run_id": run_id if is_identity(run_id) else uuid.uuid4().hex,
            "writer_id": uuid.uuid4().hex}


def _write_lines(pages: Iterator[list[dict[str, Any]]], path: Path, latest: dict[str, Any] | None) -> int:
    """Write a stream's pages as JSON lines (the server's rows are already in the file shape); for a
    metric, keep each field's latest value in ``latest`` (as the agent does for the metadata.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as f:
        for page in pages:
            f.write(b"".join(dumps(row) + b"\n" for row in page))
            written += len(page)
            if latest is not None:
                merge_latest(latest, [values for row in page if (values := row_values(row)) is not None])
    return written


def _pull_files(server: ServerReads, directory: Path, cursor: UploadCursor) -> int:
    files_root = directory / layout.FILES_DIR
    entries = server.files()
    seen: set[str] = set()
    for entry in entries:
        try:
            relpath = clean_relative_path("file path from the server", entry.get("path") if isinstance(entry, dict)
                                          else None)
        except (TypeError, ValueError) as exc:
            raise PullError(f"{server.remote} listed a file of {server.prefix} that cannot be saved: {exc}") from None
        parents = {"/".join(relpath.split("/")[:i]) for i in range(1, relpath.count("/") + 1)}
        if not relpath or relpath in seen or parents & seen or any(s.startswith(relpath + "/") for s in seen):
            raise PullError(f"{server.remote} listed {relpath!r} twice, or as a file and a directory")
        seen.add(relpath)
        target = safe_join(files_root, relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            server.download(relpath, target)
        except FileNotFoundError as exc:  # listed, then gone: say so rather than write half a run
            raise PullError(str(exc)) from None
        if isinstance(entry.get("checksum"), str):
            cursor.files[relpath] = entry["checksum"]
    if entries:
        write_document(files_root / layout.FILES_METADATA, dumps({"files": entries}))
    return len(entries)
