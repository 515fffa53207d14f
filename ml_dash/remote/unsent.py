"""What an upload left on disk, why, and what a person can do about each reason: said alike at the end of
a live run (remote/live_run.py) and by ``ml-dash sync`` (remote/sync.py).

Each reason carries its own remedy, because sending again helps only where the cause was of the moment
(the server away, time running out). Rows of streams the server refused to start because the run would
pass its limit of metrics are refused again by every resend until that limit is raised: the end of such a
run used to say "Send them with: ml-dash sync ...", which could not help.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..agent.upload.retry import StopReason
from ..agent.upload.uploader import UploadReport

#: How the held-back streams are named in a message: the first few, then how many more.
NAMED_STREAMS = 3


class Remedy(str, Enum):
    """What sends the rows a reason left behind."""

    RESEND = "resend"  # ``ml-dash sync`` sends them: the cause was of the moment (server away, time ran out)
    AFTER_FIX = "after-fix"  # ``ml-dash sync`` once the named cause is fixed (a key, the URL, what the server refused)
    NEW_NAME = "new-name"  # ``ml-dash sync --prefix`` another name: the server lost what the run continues after
    NEW_NAME_OR_AFTER = "new-name-or-after"  # another run holds the prefix: a new name, or after its rows (--resume)
    RAISE_LIMIT = "raise-limit"  # nothing, until the server's limit of metrics a run is raised

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Cause:
    """One reason rows are not on the server, in words a user can act on, and what sends them."""

    why: str
    remedy: Remedy


def sync_command(directory: Path, remote: str, api_key: str | None, user_name: str | None) -> str:
    """The ``ml-dash sync`` command that sends a directory's pending rows (never the key itself)."""
    who = "--api-key <your key>" if api_key else f"--user-name {user_name}"
    return f"ml-dash sync {directory} --remote {remote} {who}"


def causes(report: UploadReport, unreachable_since: float | None = None) -> list[Cause]:
    """Every reason the upload left something behind, the one that stopped it first."""
    found = [] if report.stopped is None else [_stopped(report)]
    if report.unreachable:
        found.append(Cause(f"the server is unreachable{_since(unreachable_since)}: {report.reason}", Remedy.RESEND))
    if report.refused_documents:
        found.append(Cause("the server refused the run's fields or parameters (its rows went without them): "
                           f"{report.refused_documents}", Remedy.AFTER_FIX))
    if report.refused_files:
        path, reason = report.refused_files[0]
        found.append(Cause(f"the server refused {len(report.refused_files)} file(s), {path}: {reason}", Remedy.AFTER_FIX))
    if report.held_back:
        found.append(Cause(_held_back(report), Remedy.RAISE_LIMIT))
    if report.out_of_time:
        found.append(Cause("the deadline passed while sending", Remedy.RESEND))
    others_pending = report.pending_rows > report.held_back_rows or report.pending_files
    if others_pending and all(cause.remedy is Remedy.RAISE_LIMIT for cause in found):
        found.append(Cause("not acknowledged yet", Remedy.RESEND))  # more than the held-back rows, and no other cause
    return found or [Cause("not acknowledged yet", Remedy.RESEND)]


def explain(report: UploadReport, unreachable_since: float | None = None) -> str:
    """Why an upload left rows behind, every reason, in the words a user can act on."""
    return "; ".join(cause.why for cause in causes(report, unreachable_since))


def unsent_message(report: UploadReport | None, prefix: str, remote: str, directory: Path, command: str,
                   unreachable_since: float | None = None) -> str:
    """The end of a live run that left rows behind (``report``; None: its upload did not end in time): how
    many, every reason, and per reason what sends them."""
    pending = "some" if report is None else f"{report.pending_rows + report.pending_files}"
    found = ([Cause("the upload did not end in time", Remedy.RESEND)] if report is None
             else causes(report, unreachable_since))
    head = (f"{pending} event(s) of {prefix} are not on {remote} yet ({'; '.join(cause.why for cause in found)}); "
            f"they are safe in {directory}.")
    return "\n".join([head, *remedies(found, command, prefix, None if report is None else report.stream_limit)])


def remedies(found: list[Cause], command: str, prefix: str, limit: int | None) -> list[str]:
    """The lines that say how to send what each remedy covers: ``command`` (``sync_command``) where a
    resend helps (now, once a cause is fixed, or under another name), the limit to raise where none does."""
    kinds = {cause.remedy for cause in found}
    owner, project, _ = prefix.split("/")
    renamed = f"    {command} --prefix {owner}/{project}/<new-name>"
    what = "the other rows" if Remedy.RAISE_LIMIT in kinds else "them"
    lines: list[str] = []
    if Remedy.AFTER_FIX in kinds:
        lines += [f"Once that is fixed, send {what} with:", f"    {command}"]
    elif Remedy.RESEND in kinds:
        lines += [f"Send {what} with:", f"    {command}"]
    if Remedy.NEW_NAME_OR_AFTER in kinds:
        lines += [f"Send {what} under a new name, or after the server's rows:", renamed, f"    {command} --resume"]
    elif Remedy.NEW_NAME in kinds:
        lines += [f"Send {what} under a new name:", renamed]
    if Remedy.RAISE_LIMIT in kinds:
        now = f", now {limit}" if limit is not None else ""
        lines += [("`ml-dash sync` will not send the rows of the streams the server refused to start unless its "
                   f"limit of metrics a run is raised (`ml-dash server --max-metrics-per-run`{now}); once it is:"),
                  f"    {command}"]
    return lines


def _stopped(report: UploadReport) -> Cause:
    """Why no retry helps, and what would."""
    stopped, reason = report.stopped, report.reason
    if stopped is StopReason.AUTH:
        return Cause(f"the server refused the credentials: {reason}", Remedy.AFTER_FIX)
    if stopped is StopReason.FORBIDDEN:
        return Cause(f"the key may not write there (owner mismatch): {reason}", Remedy.AFTER_FIX)
    if stopped is StopReason.CONFLICT and (report.conflict or {}).get("kind") == "writer":
        return Cause(f"the server holds other rows of this run under the same indices (another copy of the run "
                     f"directory wrote them): {reason}", Remedy.NEW_NAME_OR_AFTER)
    if stopped is StopReason.CONFLICT:
        return Cause(f"the server holds another run under this prefix: {reason}", Remedy.NEW_NAME_OR_AFTER)
    if stopped is StopReason.REJECTED:
        return Cause(f"the server rejected the upload: {reason}", Remedy.AFTER_FIX)
    if stopped is StopReason.INVALID:
        return Cause(f"the request cannot be sent as it is: {reason}", Remedy.AFTER_FIX)
    if stopped is StopReason.LOST:
        return Cause(f"the server lost rows this run continues after ({reason})", Remedy.NEW_NAME)
    return Cause(f"the upload made no progress: {reason}", Remedy.AFTER_FIX)  # STUCK


def _held_back(report: UploadReport) -> str:
    """The streams the server refused to start: how many, which, the rows they leave, and the limit."""
    names = list(report.held_back)
    shown = ", ".join(names[:NAMED_STREAMS]) + (f" and {len(names) - NAMED_STREAMS} more" if len(names) > NAMED_STREAMS
                                                 else "")
    rows = f"; their {report.held_back_rows} row(s) stay on disk" if report.held_back_rows else ""
    if report.stream_limit is None:  # a refusal that named no limit: the server's own words
        return (f"the server refused to start {len(names)} metric stream(s) ({shown}): "
                f"{report.held_back[names[0]]}{rows}")
    return (f"the server refused to start {len(names)} metric stream(s) ({shown}): the run would pass its limit of "
            f"{report.stream_limit} metrics a run{rows}")


def _since(unreachable_since: float | None) -> str:
    if unreachable_since is None:
        return ""
    return " since " + datetime.datetime.fromtimestamp(unreachable_since, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
