"""The :class:`Experiment`: one run directory and the SDK objects that write it."""

from __future__ import annotations

import copy
import os
import weakref
from pathlib import Path
from typing import Any

from ._run import announce
from ._run.config import resolve
from ._run.resume import Resume
from ._run.session import RunOptions, RunSession
from .capture import CaptureSettings, attach
from .files import Files
from .format.jsonlines import encode_checked
from .format.naming import validate_prefix
from .format.values import MAX_DOCUMENT_BYTES, MAX_TEXT_BYTES, check_text
from .format.vocabulary import check_tags
from .logs import Logs
from .metrics import Metrics
from .params import Params
from .run import Run, RunStatus


class Experiment:
    """An experiment run that logs to ``.dash/<owner>/<project>/<name>`` (local mode).

    Args:
        prefix: ``"owner/project/name"``.
        local_path: the experiment's own directory when it ends with the prefix
            (``.dash/owner/project/name``), else a root the prefix is appended to;
            default ``.dash/<prefix>`` (see ml_dash/_run/config.py).
        remote, api_key, user_name: remote mode: the run directory is written as in
            local mode and uploaded to the ml-dash server at ``remote`` as it grows.
        description, tags, metadata: recorded in ``experiment.json`` (and on the server).
        resume: ``None`` (continue this directory's run; refuse a server-side run of the
            prefix from another directory), ``True``/``"allow"`` (continue the prefix's
            run here or on the server), ``"must"`` (the same, raising when there is none),
            ``False``/``"never"`` (raise when the prefix holds a run); see ml_dash/_run/resume.py.
        dash_root, dash_url, readme: the public ml-dash package's spellings
            (``dash_root`` is a root directory the prefix is appended to).
        close_timeout_s: the longest ending the run waits for buffered events
            to be written; what is left keeps being written in the background.
        upload_timeout_s: remote mode: the longest ending the run waits for the
            upload; what is left stays on disk for ``ml-dash sync``.
        quiet: print nothing when the run starts; by default a run says once, on
            stderr, where it goes and how to view it (``ML_DASH_QUIET=1`` silences it too).
        system_metrics, console, provenance: what the run records without being asked (all on by
            default; None reads ``ML_DASH_SYSTEM_METRICS_INTERVAL_S``, ``ML_DASH_CONSOLE``,
            ``ML_DASH_PROVENANCE``): the metric ``system`` (``system_metrics`` may be the seconds
            between samples), stdout and stderr as log lines, and where the run came from (git,
            command, platform, packages) in its metadata; see docs/capture.md.

    Use ``with exp.run:`` (or ``exp.run.start()`` ... ``exp.run.complete()``).
    """

    def __init__(
        self,
        prefix: str,
        *,
        local_path: str | os.PathLike | None = None,
        remote: str | None = None,
        api_key: str | None = None,
        user_name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        resume: bool | str | None = None,
        dash_root: str | os.PathLike | None = None,
        dash_url: str | None = None,
        readme: str | None = None,
        close_timeout_s: float = 10.0,
        upload_timeout_s: float = 30.0,
        quiet: bool | None = None,
        system_metrics: bool | float | None = None,
        console: bool | None = None,
        provenance: bool | None = None,
    ) -> None:
        self.owner, self.project, self.name = validate_prefix(prefix)
        self.prefix = prefix
        config = resolve(prefix, local_path=local_path, dash_root=dash_root, remote=remote,
                         dash_url=dash_url, api_key=api_key, user_name=user_name)
        self.directory: Path = config.directory
        self.remote = config.remote
        description = description if description is not None else readme
        options = RunOptions(
            description=None if description is None else check_text("description", description, MAX_TEXT_BYTES),
            tags=check_tags(tags) if tags is not None else [],
            metadata=_check_metadata(metadata),
            close_timeout_s=_seconds("close_timeout_s", close_timeout_s),
            upload_timeout_s=_seconds("upload_timeout_s", upload_timeout_s),
            resume=Resume.parse(resume),
            quiet=announce.quiet(quiet),
        )
        self._session = session = RunSession(prefix, self.directory, options, config.remote,
                                             (config.api_key, config.user_name))
        session.holder = weakref.ref(self)
        self.run = Run(session, self)
        self.metrics = Metrics(session)
        self.params = Params(session)
        self.logs = Logs(session)
        self.files = Files(session)
        self._capture = attach(session, CaptureSettings.resolve(system_metrics, console, provenance), self)

    @property
    def description(self) -> str | None:
        return self._session.options.description

    @property
    def tags(self) -> list[str]:
        return list(self._session.options.tags)

    @property
    def metadata(self) -> dict[str, Any] | None:
        return copy.deepcopy(self._session.options.metadata)

    @property
    def status(self) -> RunStatus:
        return self._session.status

    def log(self, message: str, level: str = "info", metadata: dict[str, Any] | None = None, **extra: Any) -> None:
        """Append a log line (levels: debug, info, warn, error, fatal)."""
        self.logs.log(message, level, metadata, **extra)

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Write (and fsync) everything logged so far; False if ``timeout_s`` passed first."""
        return self._session.flush(timeout_s)

    def stats(self) -> dict[str, Any]:
        """Per stream: ``accepted``, ``written``, ``dropped`` (by reason) and ``pending``, with
        ``accepted == written + dropped + pending`` always; ``waits`` (calls that waited on a full
        buffer); in remote mode also ``acknowledged``, ``set_aside`` and ``pending_upload``; with
        ``capture``, what the console capture kept and dropped and how many system rows were taken."""
        stats = self._session.stats()
        if self._capture is not None:
            stats["capture"] = self._capture.stats()
        return stats

    def __repr__(self) -> str:
        return f"<Experiment {self.prefix!r} {self.status} at {self.directory}>"


def _check_metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    encode_checked("metadata", metadata, MAX_DOCUMENT_BYTES)
    return copy.deepcopy(metadata)  # as it was at the call: later changes to the caller's dict do not leak in


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 86_400:
        raise ValueError(f"{name}={value!r} must be a number of seconds from 0 to 86400")
    return float(value)
