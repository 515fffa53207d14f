"""``ml-dash pull``: write a server-side run into a directory in the local layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from .agent import utc_iso
from .agent.jsonlines import dumps
from .agent.rundir import write_document
from .agent.uploader import headers_for
from .metrics import metric_metadata
from .naming import safe_join, validate_prefix

PAGE_ROWS = 50_000


class PullError(RuntimeError):
    pass


async def pull(prefix: str, remote: str, api_key: str | None, user_name: str | None, target: Path) -> dict[str, int]:
    """Download ``prefix`` into ``target/<prefix>``; returns rows and files written per stream."""
    owner, project, name = validate_prefix(prefix)
    base = f"{remote.rstrip('/')}/api/v1/experiments/{owner}/{project}/{name}"
    directory = Path(target) / prefix
    counts: dict[str, int] = {}
    async with aiohttp.ClientSession(headers=headers_for(api_key, user_name),
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as session:
        exp = await _get(session, base)
        directory.mkdir(parents=True, exist_ok=True)
        write_document(directory / "experiment.json", dumps(_experiment_document(exp)))
        now = utc_iso()
        write_document(directory / "parameters.json",
                        dumps({"version": 2, "data": exp.get("params") or {}, "createdAt": now, "updatedAt": now}))
        for stream in sorted(exp.get("streams", {})):
            if stream == "logs":
                counts["logs"] = await _pull_lines(session, f"{base}/logs", "logs", directory / "logs.jsonl")
            elif stream.startswith("metrics/"):
                metric = stream[len("metrics/"):]
                path = directory / "metrics" / metric / "data.jsonl"
                counts[stream] = await _pull_lines(session, f"{base}/metrics/{metric}", "rows", path)
                meta = metric_metadata(metric, None, counts[stream], now)
                write_document(path.parent / "metadata.json", dumps(meta))
        counts["files"] = await _pull_files(session, base, directory)
    return counts


async def _get(session: aiohttp.ClientSession, url: str, **params: Any) -> dict[str, Any]:
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200:
            raise PullError(f"{url}: {resp.status} {body.get('error') if isinstance(body, dict) else body}")
        return body


def _experiment_document(exp: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "project", "owner", "prefix", "description", "tags", "metadata", "created_at", "status",
            "started_at", "ended_at", "status_reason")
    return {k: exp.get(k) for k in keys}


async def _pull_lines(session: aiohttp.ClientSession, url: str, field: str, path: Path) -> int:
    """Page through a stream and write it as JSON lines (the server's rows are already in the file shape)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written, start = 0, 0
    with open(path, "wb") as f:
        while True:
            page = (await _get(session, url, start=start, limit=PAGE_ROWS))[field]
            for row in page:
                f.write(dumps(row) + b"\n")
            written += len(page)
            if len(page) < PAGE_ROWS:
                return written
            start += len(page)


async def _pull_files(session: aiohttp.ClientSession, base: str, directory: Path) -> int:
    listing = (await _get(session, f"{base}/files"))["files"]
    files_root = directory / "files"
    entries = []
    for entry in listing:
        target = safe_join(files_root, entry["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        async with session.get(f"{base}/files/{entry['path']}") as resp:
            if resp.status != 200:
                raise PullError(f"file {entry['path']}: {resp.status}")
            with open(target, "wb") as f:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    f.write(chunk)
        entries.append(entry)
    if entries:
        write_document(files_root / ".files_metadata.json", dumps({"files": entries}))
    return len(entries)
