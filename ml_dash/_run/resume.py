"""The resume policy: whether a run continues what its prefix already holds, here or on the server.

``Experiment(prefix, resume=...)``:

=================  ==========================================================================
``None`` (auto)    continue this directory's run if it has one; a run the *server* holds under
                   the prefix from another directory is refused (an accident: two jobs, one name)
``True``/"allow"   continue this directory's run, or else the server's run of the prefix (this
                   directory's rows are appended after the server's); else start a new run
``"must"``         like "allow", but raise when there is nothing to continue
``False``/"never"  raise when this directory or the server already holds the prefix
=================  ==========================================================================

In remote mode the start-up asks the server about the prefix, waiting at most
``ML_DASH_START_TIMEOUT_S`` (2 s). When it cannot answer, the run starts
anyway (a warning): a resumed run continues the server's rows once the server
answers, and an accidental second run is refused by the upload then, its rows
kept on disk for ``ml-dash sync --prefix`` (a new name) or ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import RunConflictError
from ..format.wire import stream_counts


class Resume(str, Enum):
    """The resume policy of an Experiment (the table above)."""

    AUTO = "auto"
    ALLOW = "allow"
    MUST = "must"
    NEVER = "never"

    @classmethod
    def parse(cls, value: Any) -> Resume:
        """The policy an ``Experiment(resume=...)`` argument names; ValueError/TypeError for anything else."""
        if value is None:
            return cls.AUTO
        if value is True:
            return cls.ALLOW
        if value is False:
            return cls.NEVER
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
            raise ValueError(f"resume={value!r}: use None, True/'allow', 'must' or False/'never'")
        raise TypeError(f"resume must be None, a bool or a str, not {type(value).__name__}")

    @property
    def continues_others(self) -> bool:
        """Whether this policy continues a run another directory started."""
        return self in (Resume.ALLOW, Resume.MUST)


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The server could not be asked at start-up, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class StartDecision:
    """What a run's start does in remote mode: which run it writes, and whether it continues the server's."""

    run_id: str  # the run this directory writes
    adopt_base: dict[str, int] | None = None  # continue the server's run: its rows per stream come first
    adopt_later: bool = False  # continue the server's run once it answers (it could not be asked now)


def check_local(resume: Resume, prefix: str, directory: Path, previous: dict[str, Any], remote: bool) -> None:
    """What the directory alone decides: ``never`` refuses a directory holding the run; ``must`` (in local
    mode) refuses one holding none."""
    if resume is Resume.NEVER and previous:
        raise RunConflictError(f"{directory} already holds the run {prefix} (created {previous.get('created_at')}); "
                               "resume='never' does not continue a run: use another prefix or resume=True")
    if resume is Resume.MUST and not previous and not remote:
        raise RunConflictError(f"resume='must', but {directory} holds no run {prefix} to continue")


def decide(resume: Resume, prefix: str, remote: str, directory: Path, existing: bool, run_id: str,
           server: dict[str, Any] | None | Unreachable) -> StartDecision:
    """What the server's answer decides (``existing``: this directory already holds a run)."""
    if isinstance(server, Unreachable):
        if resume is Resume.MUST and not existing:
            raise RunConflictError(f"resume='must': cannot check that {remote} holds {prefix} ({server.reason})")
        return StartDecision(run_id, adopt_later=resume.continues_others and not existing)
    if server is None:
        if resume is Resume.MUST and not existing:
            raise RunConflictError(f"resume='must', but neither {directory} nor {remote} holds a run {prefix}")
        return StartDecision(run_id)
    if resume is Resume.NEVER:
        raise RunConflictError(f"{remote} already holds {prefix} ({describe(server)}); resume='never' does not "
                               "continue a run: use another prefix or resume=True")
    theirs = server.get("run_id")
    if not isinstance(theirs, str) or theirs == run_id:
        return StartDecision(run_id)
    if existing:
        raise RunConflictError(
            f"{directory} holds another run of {prefix} than {remote} does ({describe(server)}); the two cannot be "
            "merged. Log this one under another prefix, or move this directory away and start with resume=True "
            "to continue the server's run.")
    if resume.continues_others:
        return StartDecision(theirs, adopt_base=stream_counts(server))
    raise RunConflictError(
        f"{remote} already holds {prefix} ({describe(server)}), logged from another directory. Pass resume=True "
        "to continue it (this run's rows are appended after the server's), or choose another prefix.")


def describe(server: dict[str, Any]) -> str:
    """A server-side run in a few words: its rows, when and where it began, its status."""
    streams = stream_counts(server)
    rows = sum(v for k, v in streams.items() if k != "logs")
    parts = [f"{rows:,} metric rows", f"{streams.get('logs', 0):,} log lines"]
    if server.get("created_at"):
        parts.append(f"created {server['created_at']}")
    if server.get("hostname"):
        parts.append(f"on {server['hostname']}")
    if server.get("status"):
        parts.append(str(server["status"]))
    return ", ".join(parts)
