"""The :class:`Experiment`: one run directory and the SDK objects that write it."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from . import __version__
from .agent import Agent, RowStream, RunWriter, utc_iso
from .agent import lifecycle
from .agent.jsonlines import dumps, read_json
from .agent.rundir import write_document
from .config import resolve
from .errors import RunStateError
from .files import Files, read_files_metadata
from .logs import Logs, build_log_row
from .agent.jsonlines import encode_metric_chunk, row_chunk_encoder
from .agent.live_upload import LiveUpload
from .agent.uploader import RunUploader, headers_for
from .server_reads import ServerReads
from .metrics import Metrics, metric_metadata
from .naming import validate_prefix
from .params import Params
from .run import Run, RunStatus

logger = logging.getLogger("ml_dash")

#: Events a stream buffers before the caller wakes the agent (metrics, logs).
METRIC_WAKE_EVERY = 4096
LOG_WAKE_EVERY = 256
#: Estimated bytes one buffered event holds in memory, for the buffer bound.
METRIC_ROW_BYTES = 96
METRIC_FIELD_BYTES = 64
LOG_ROW_BYTES = 512

_EXIT_STATUS = {"exit": RunStatus.COMPLETED, "exception": RunStatus.FAILED, "sigterm": RunStatus.CANCELLED}


class Experiment:
    """An experiment run that logs to ``.dash/<owner>/<project>/<name>`` (local mode).

    Args:
        prefix: ``"owner/project/name"``.
        local_path: the experiment's own directory (default ``.dash/<prefix>``).
        remote, api_key, user_name: remote mode: the run directory is written as in
            local mode and uploaded to the ml-dash server at ``remote`` as it grows.
        description, tags, metadata: recorded in ``experiment.json``.
        dash_root, dash_url, readme: the public ml-dash package's spellings
            (``dash_root`` is a root directory the prefix is appended to).
        close_timeout_s: the longest ending the run waits for buffered events
            to be written; what is left keeps being written in the background.
        upload_timeout_s: remote mode: the longest ending the run waits for the
            upload; what is left stays on disk for ``ml-dash sync``.

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
        dash_root: str | os.PathLike | None = None,
        dash_url: str | None = None,
        readme: str | None = None,
        close_timeout_s: float = 10.0,
        upload_timeout_s: float = 30.0,
    ) -> None:
        self.owner, self.project, self.name = validate_prefix(prefix)
        self.prefix = prefix
        config = resolve(prefix, local_path=local_path, dash_root=dash_root, remote=remote,
                         dash_url=dash_url, api_key=api_key, user_name=user_name)
        self.directory: Path = config.directory
        self.remote = config.remote
        self._credentials = (config.api_key, config.user_name)
        self.upload_timeout_s = upload_timeout_s
        self._live_upload: LiveUpload | None = None
        if tags is not None and (not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags)):
            raise TypeError("tags must be a list of str")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
            dumps(metadata)
        self.description = description if description is not None else readme
        self.tags = list(tags or [])
        self.metadata = metadata
        self.close_timeout_s = close_timeout_s
        self._status = RunStatus.CREATED
        self._pid = os.getpid()
        self._agent: Agent | None = None
        self._writer: RunWriter | None = None
        self._document: dict[str, Any] = {}
        self.run = Run(self)
        self.metrics = Metrics(self)
        self.params = Params(self)
        self.logs = Logs(self)
        self.files = Files(self)

    # -- public API ------------------------------------------------------
    def log(self, message: str, level: str = "info", metadata: dict[str, Any] | None = None, **extra: Any) -> None:
        """Append a log line (levels: debug, info, warn, error, fatal)."""
        self.logs.log(message, level, metadata, **extra)

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Write (and fsync) everything logged so far; False if ``timeout_s`` passed first."""
        if self._writer is None or self._agent is None or not self._in_owning_process():
            return True
        if self._writer.closed:
            return True
        return self._agent.flush(self._writer, timeout_s)

    def stats(self) -> dict[str, Any]:
        """Per stream: ``accepted``, ``written``, ``dropped`` (by reason) and ``pending``;
        ``accepted == written + dropped + pending`` always holds."""
        writer = self._writer
        if writer is None:
            return {"streams": {}, "totals": _totals({})}
        if writer.closed or self._agent is None or not self._in_owning_process():
            return _collect_stats(writer)
        return self._agent.call(lambda: _async_stats(writer), 10.0)

    @property
    def status(self) -> RunStatus:
        return self._status

    # -- lifecycle (used by Run and lifecycle hooks) -----------------------
    def _start(self) -> None:
        if self._status is RunStatus.RUNNING:
            raise RunStateError(f"experiment {self.prefix!r} is already running")
        if self._status is not RunStatus.CREATED:
            raise RunStateError(f"experiment {self.prefix!r} has ended ({self._status}); create a new Experiment to continue it")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._agent = agent = Agent.instance()
        self._writer = writer = RunWriter(agent, self.directory)
        previous = read_json(self.directory / "experiment.json")
        self.params.load(read_json(self.directory / "parameters.json"))
        writer.load_file_entries(read_files_metadata(self.directory))
        now = utc_iso()
        self._document = {
            "name": self.name, "project": self.project, "owner": self.owner, "prefix": self.prefix,
            "description": self.description, "tags": self.tags, "metadata": self.metadata,
            "created_at": previous.get("created_at", now) if isinstance(previous, dict) else now,
            "status": RunStatus.RUNNING.value, "started_at": now, "ended_at": None, "status_reason": None,
            "pid": os.getpid(), "hostname": socket.gethostname(), "sdk": f"ml-dash {__version__}",
        }
        write_document(self.directory / "experiment.json", dumps(self._document))
        writer.document("experiment.json", dict(self._document)).written_version = 1
        log_stream = RowStream(agent, "logs", self.directory / "logs.jsonl", "sequenceNumber",
                               row_chunk_encoder(build_log_row), LOG_ROW_BYTES, LOG_WAKE_EVERY)
        self.logs.bind(writer.add_stream(log_stream))
        self._status = RunStatus.RUNNING
        self.metrics._rebind_all()
        agent.register(writer)
        lifecycle.on_shutdown(self)
        if self.remote is not None:
            self._start_upload(agent)

    def _finish(self, status: RunStatus, reason: str | None, timeout_s: float | None) -> bool:
        if self._status is not RunStatus.RUNNING:
            raise RunStateError(self._not_running_message())
        self._status = status
        writer, agent = self._writer, self._agent
        assert writer is not None and agent is not None
        for stream in writer.streams.values():
            stream.state = "closed"
            stream.wake_at = 0
        lifecycle.forget(self)
        if not self._in_owning_process():
            return True
        self._document.update(status=status.value, ended_at=utc_iso(), status_reason=reason)
        writer.document("experiment.json").set(dict(self._document))
        timeout = self.close_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        done = agent.close_run(writer, timeout)
        if not done:
            logger.warning("ml-dash: %s ended %s but its events are still being written after %.1f s; "
                           "they keep going in the background until the process exits", self.prefix, status, timeout)
        if self._live_upload is not None:
            upload_s = self.upload_timeout_s if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
            done = self._finish_upload(agent, upload_s) and done
        return done

    def _start_upload(self, agent: Agent) -> None:
        """Start the background upload on the agent's loop (no network I/O here)."""
        # batches are read and encoded on the agent's pool, which keeps working at interpreter exit
        uploader = RunUploader(self.directory, self.prefix, self.remote, headers_for(*self._credentials),
                               executor=agent.pool)
        live = self._live_upload = LiveUpload(uploader)
        assert self._writer is not None
        self._writer.on_written = uploader.offer  # the memory fast path: no reading back

        async def start() -> None:
            live.start()

        agent.call(start, 10.0)

    def _finish_upload(self, agent: Agent, deadline_s: float) -> bool:
        """Wait for the upload up to ``deadline_s``; say what is left and how to send it."""
        live = self._live_upload
        assert live is not None
        try:
            report = agent.call(lambda: live.finish(deadline_s), deadline_s + 5.0)
        except TimeoutError:
            report = None
        pending = (live.uploader.pending_rows() + len(live.uploader.pending_files()) if report is None
                   else report.pending_rows + report.pending_files)
        if pending or (report is not None and report.stopped):
            how = "--api-key <your key>" if self._credentials[0] else f"--user-name {self._credentials[1]}"
            logger.warning("ml-dash: %d event(s) of %s are not on %s yet (%s); they are safe in %s. Send them with:\n"
                           "    ml-dash sync %s --remote %s %s", pending, self.prefix, self.remote,
                           "the server refused the credentials" if report is not None and report.stopped else "not acknowledged",
                           self.directory, self.directory, self.remote, how)
            return False
        return True

    def shutdown(self, reason: str, deadline: float) -> None:
        """Called at interpreter exit or SIGTERM for a run that was never ended."""
        if self._status is not RunStatus.RUNNING:
            return
        status = RunStatus.CANCELLED if lifecycle.interrupted() else _EXIT_STATUS.get(reason, RunStatus.FAILED)
        label = {"exit": None, "exception": "uncaught exception", "sigterm": "SIGTERM"}.get(reason, reason)
        if lifecycle.interrupted():
            label = "KeyboardInterrupt"
        self._finish(status, label, max(0.0, deadline - time.monotonic()))

    # -- helpers for the SDK objects -------------------------------------
    def _server_reads(self) -> ServerReads | None:
        """Where reads go: the server in remote mode for a run this process has not started (its
        directory here may be empty); else None, and the local directory answers."""
        if self.remote is None or self._writer is not None:
            return None
        return ServerReads(self.remote, self.prefix, *self._credentials)

    def _in_owning_process(self) -> bool:
        return os.getpid() == self._pid

    def _require_running(self) -> None:
        if self._status is not RunStatus.RUNNING:
            raise RunStateError(self._not_running_message())

    def _not_running_message(self) -> str:
        if self._status is RunStatus.CREATED:
            return f"experiment {self.prefix!r} is not started: use `with exp.run:` or call exp.run.start() first"
        return f"experiment {self.prefix!r} has ended ({self._status}); nothing more can be logged to it"

    def _metric_stream(self, name: str) -> RowStream:
        writer = self._writer
        path = self.directory / "metrics" / name / "data.jsonl"
        if writer is None or self._status is not RunStatus.RUNNING:
            dormant = _new_metric_stream(self._agent or Agent.instance(), name, path)
            dormant.state, dormant.wake_at = "closed", 0  # every call takes the slow path, which refuses
            return dormant
        stream = writer.streams.get(f"metrics/{name}")
        if stream is None:
            stream = writer.add_stream(_new_metric_stream(self._agent, name, path))
            slot = writer.document(f"metrics/{name}/metadata.json", read_json(path.parent / "metadata.json"))
            writer.on_durable.append(_metadata_updater(name, slot, stream))
        return stream

    def __repr__(self) -> str:
        return f"<Experiment {self.prefix!r} {self._status} at {self.directory}>"


def _new_metric_stream(agent: Agent, name: str, path: Path) -> RowStream:
    return RowStream(agent, f"metrics/{name}", path, "index", encode_metric_chunk,
                     METRIC_ROW_BYTES + 5 * METRIC_FIELD_BYTES, METRIC_WAKE_EVERY)


def _metadata_updater(name: str, slot: Any, stream: RowStream) -> Any:
    last = {"count": None}

    def update() -> None:
        if last["count"] != stream.next_index:
            last["count"] = stream.next_index
            slot.set(metric_metadata(name, slot.value, stream.next_index, utc_iso()))

    return update


def _stream_stats(stream: RowStream) -> dict[str, Any]:
    accepted = stream.accepted()
    dropped = dict(stream.counters.dropped)
    pending = accepted - stream.counters.written - sum(dropped.values())
    return {"accepted": accepted, "written": stream.counters.written, "dropped": dropped, "pending": pending}


def _collect_stats(writer: RunWriter) -> dict[str, Any]:
    streams = {name: _stream_stats(s) for name, s in writer.streams.items()}
    files = writer.file_counters
    pending_files = len(writer.file_jobs)
    streams["files"] = {"accepted": files.written + files.dropped_total + pending_files, "written": files.written,
                        "dropped": dict(files.dropped), "pending": pending_files}
    return {"streams": streams, "totals": _totals(streams)}


async def _async_stats(writer: RunWriter) -> dict[str, Any]:
    return _collect_stats(writer)


def _totals(streams: dict[str, Any]) -> dict[str, Any]:
    dropped: dict[str, int] = {}
    for s in streams.values():
        for reason, n in s["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    return {
        "accepted": sum(s["accepted"] for s in streams.values()),
        "written": sum(s["written"] for s in streams.values()),
        "dropped": dropped,
        "pending": sum(s["pending"] for s in streams.values()),
    }
