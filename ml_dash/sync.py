"""``ml-dash sync``: upload run directories to a server, resuming from each run's cursor."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import aiohttp

from .agent import utc_iso
from .agent.jsonlines import dumps, read_json
from .agent.rundir import write_document
from .agent.uploader import RunUploader, headers_for, process_alive
from .progress import ProgressBar
from .reading import find_runs


def mark_crashed_if_dead(directory: Path) -> bool:
    """A run still RUNNING whose process on this host is gone becomes CRASHED (before it is uploaded)."""
    path = directory / "experiment.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("status") != "RUNNING":
        return False
    if doc.get("hostname") != socket.gethostname() or process_alive(doc.get("pid")):
        return False
    doc.update(status="CRASHED", status_reason=f"process {doc.get('pid')} ended without closing the run",
               ended_at=doc.get("ended_at") or utc_iso())
    write_document(path, dumps(doc))
    return True


async def sync_paths(paths: list[Path], remote: str, api_key: str | None, user_name: str | None,
                     timeout_s: float) -> int:
    """Upload every run under ``paths``; 0 when all is acknowledged, 1 otherwise."""
    runs = [run for path in paths for run in find_runs(path)]
    if not runs:
        print(f"no runs under {', '.join(map(str, paths))}")
        return 0
    failures = 0
    async with aiohttp.ClientSession() as session:
        for number, directory in enumerate(runs, start=1):
            doc = read_json(directory / "experiment.json") or {}
            prefix = doc.get("prefix")
            if not isinstance(prefix, str):
                print(f"[{number}/{len(runs)}] {directory}: no prefix in experiment.json, skipped", file=sys.stderr)
                failures += 1
                continue
            if mark_crashed_if_dead(directory):
                print(f"[{number}/{len(runs)}] {prefix}: its process is gone; marked CRASHED")
            uploader = RunUploader(directory, prefix, remote, headers_for(api_key, user_name))
            before = uploader.pending_rows()
            bar = ProgressBar(f"[{number}/{len(runs)}] {prefix}", before)
            try:
                report = await uploader.upload(session, timeout_s, progress=bar.update)
            finally:
                bar.close()
            left = report.pending_rows or report.pending_files
            state = "done" if not left and not report.stopped else (
                "refused credentials" if report.stopped
                else f"{report.pending_rows} rows and {report.pending_files} files still pending")
            print(f"[{number}/{len(runs)}] {prefix}: {report.sent_rows}/{before} rows and {report.sent_files} files "
                  f"sent in {report.requests} request(s), {report.rejected_rows} set aside: {state}")
            failures += bool(left or report.stopped)
    return 1 if failures else 0
