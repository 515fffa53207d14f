"""``ml-dash sync``: upload run directories to a server, resuming from each run's cursor.

Each run is synced on its own: it is locked first (a run still being written
is skipped, naming its writer), a RUNNING run whose writer is gone becomes
CRASHED, and whatever happens to one run (refused, unreachable, a bug) is
reported on its line and the next run is synced anyway. The exit status is 0
only when every run is completely on the server.
"""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .._run.reading import find_runs, written_here
from .._run.runlock import RunLock
from ..agent.deadline import Deadline
from ..agent.settings import UploadSettings
from ..agent.upload.transport import HttpTransport
from ..agent.upload.uploader import RunUploader, UploadReport
from ..cli.progress import ProgressBar
from ..errors import RunLockedError
from ..format.atomic import write_document
from ..format.credentials import credential_headers
from ..format.cursor import PENDING, acknowledged_rows
from ..format.jsonlines import dumps, read_json
from ..format.layout import EXPERIMENT, REJECTED_DIR
from ..format.naming import validate_prefix
from ..format.vocabulary import utc_iso
from .unsent import Remedy, causes, remedies, sync_command

logger = logging.getLogger("ml_dash")


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """What ``ml-dash sync`` was asked: where, as whom, within how long, under which prefix."""

    remote: str
    api_key: str | None
    user_name: str | None
    timeout_s: float
    prefix: str | None = None  # send the run(s) under this prefix instead of their own
    resume: bool = False  # append after the rows the server's run holds


def mark_crashed(directory: Path, doc: dict) -> bool:
    """A run still RUNNING whose lock we hold has no writer left: it becomes CRASHED (before it is sent)."""
    if doc.get("status") != "RUNNING" or not written_here(doc):  # a pulled RUNNING run is the server's
        return False
    doc.update(status="CRASHED", status_reason=f"process {doc.get('pid')} on {doc.get('hostname')} ended "
                                                "without closing the run", ended_at=doc.get("ended_at") or utc_iso())
    write_document(directory / EXPERIMENT, dumps(doc))
    return True


def ensure_identity(directory: Path, doc: dict) -> None:
    """Runs written before run identities existed get theirs now (the lock is held)."""
    if isinstance(doc.get("run_id"), str) and isinstance(doc.get("writer_id"), str):
        return
    doc.setdefault("run_id", uuid.uuid4().hex)
    doc.setdefault("writer_id", uuid.uuid4().hex)
    write_document(directory / EXPERIMENT, dumps(doc))


async def sync_paths(paths: list[Path], options: SyncOptions, out: TextIO = sys.stdout,
                     settings: UploadSettings | None = None) -> int:
    """Upload every run under ``paths``; 0 when all of it is acknowledged, 1 otherwise."""
    settings = settings or UploadSettings.from_env()  # a bad variable fails here, before anything is sent
    runs = [run for path in paths for run in find_runs(path)]
    if not runs:
        print(f"no runs under {', '.join(map(str, paths))}", file=out)
        return 0
    if options.prefix is not None and len(runs) > 1:
        print(f"--prefix sends one run under a new name, but {len(runs)} runs were found; name one run directory",
              file=sys.stderr)
        return 2
    failures = 0
    for number, directory in enumerate(runs, start=1):
        label = f"[{number}/{len(runs)}]"
        try:
            failures += not await _sync_run(directory, label, options, settings, out)
        except Exception as exc:  # one run's bug must not stop the others: said on its line, traceback at debug
            logger.debug("ml-dash sync of %s failed", directory, exc_info=True)
            print(f"{label} {directory}: failed: {type(exc).__name__}: {exc}", file=out)
            failures += 1
    return 1 if failures else 0


async def _sync_run(directory: Path, label: str, options: SyncOptions, settings: UploadSettings, out: TextIO) -> bool:
    doc = read_json(directory / EXPERIMENT)
    doc = doc if isinstance(doc, dict) else {}
    own = doc.get("prefix")
    try:
        validate_prefix(own)
    except (TypeError, ValueError):
        print(f"{label} {directory}: no valid prefix in {EXPERIMENT} ({own!r}), skipped", file=out)
        return False
    assert isinstance(own, str)
    prefix = options.prefix or own
    try:
        lock = RunLock.acquire(directory, own, purpose="syncs")
    except RunLockedError as exc:
        if not exc.holder:  # not held: the file system has no working locks, and the error says so
            print(f"{label} {own}: skipped: {exc}", file=out)
            return False
        print(f"{label} {own}: skipped: still being written by pid {exc.holder.get('pid', '?')} on "
              f"{exc.holder.get('hostname', '?')} since {exc.holder.get('since', '?')} (its own upload sends it; "
              "sync it after it ends)", file=out)
        return False
    transport = HttpTransport(options.remote, credential_headers(options.api_key, options.user_name))
    try:
        if mark_crashed(directory, doc):
            print(f"{label} {own}: its process is gone; marked CRASHED", file=out)
        ensure_identity(directory, doc)
        uploader = RunUploader(directory, prefix, transport, batch_rows=settings.batch_rows,
                               request_timeout_s=settings.request_timeout_s)
        cursor = await uploader.load()
        if options.resume and (cursor.adopt is None or not any(acknowledged_rows(directory, prefix).values())):
            cursor.adopt = PENDING  # (re)decided against what the server holds now: none of these rows is there
        before = await uploader.pending_rows()
        bar = ProgressBar(f"{label} {prefix}", before)
        try:
            report = await uploader.upload(Deadline(options.timeout_s), progress=bar.update)
        finally:
            bar.close()
        print(f"{label} {prefix}: {summary(report, before, directory)}", file=out)
        for line in _remedies(report, directory, prefix, options):
            print(f"    {line}", file=out)
        return report.complete
    finally:
        lock.release()
        await transport.close()


def summary(report: UploadReport, before: int, directory: Path) -> str:
    """One run's line: what was sent, what was set aside, and why anything is still pending."""
    line = f"{report.sent_rows}/{before} rows and {report.sent_files} files sent in {report.requests} request(s)"
    if report.sent_rows > before:  # the server's counts said it lacked rows the cursor had as acknowledged
        line = (f"{report.sent_rows} rows ({report.sent_rows - before} again: the server held fewer than recorded) "
                f"and {report.sent_files} files sent in {report.requests} request(s)")
    if report.set_aside_rows:
        line += f", {report.set_aside_rows} rows set aside (see {directory / REJECTED_DIR})"
    if report.complete:
        return line + ": done"
    state = f"{report.pending_rows} rows and {report.pending_files} files still pending"
    for stream, (server, local) in report.server_has_more.items():
        line += f"; the server holds more rows of {stream} than this directory ({server} against {local})"
    why = "; ".join(cause.why for cause in causes(report, report.unreachable_since))
    return f"{line}: {state}: {why}"


def _remedies(report: UploadReport, directory: Path, prefix: str, options: SyncOptions) -> list[str]:
    """What sends the rows this sync left, where that is more than running it again later (a new name, a
    fixed cause, a raised limit: remote/unsent.py); nothing when it is done."""
    if report.complete:
        return []
    found = causes(report, report.unreachable_since)
    if all(cause.remedy is Remedy.RESEND for cause in found):
        return []
    command = sync_command(directory, options.remote, options.api_key, options.user_name)
    return remedies(found, command, prefix, report.stream_limit)
