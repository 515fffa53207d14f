"""The run session: one run's lifecycle and the agent's objects behind it.

The SDK objects (``exp.metrics``, ``exp.logs``, ``exp.params``, ``exp.files``,
``exp.run``) talk to a :class:`RunSession` and to nothing else of the
experiment: it hands them their streams and documents, refuses them once the
run has ended, and tells them where reads go.

Start: lock the directory (one writer, see runlock.py), check that it holds
this prefix, apply the resume policy (resume.py), write ``experiment.json``
(RUNNING), register with the agent, start the upload in remote mode. End:
refuse new events, write and seal everything (agent/streams.py), wait for the
upload, release the lock; one deadline bounds all of it.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..agent import Agent, FileJob, RowStream, RunWriter, Seal, StreamClosedError, lifecycle, write_document
from ..agent.backlog import rows_on_disk
from ..agent.deadline import Deadline
from ..agent.streams import metric_row_bytes
from ..errors import ConfigurationError, RunLockedError, RunStateError
from ..files import read_files_metadata
from ..format import layout
from ..format.atomic import remove_leftovers
from ..format.cursor import acknowledged_rows
from ..format.jsonlines import dumps, encode_checked, encode_metric_chunk, read_json, row_chunk_encoder
from ..format.latest import caught_up
from ..format.segments import segments_of
from ..format.values import MAX_DOCUMENT_BYTES, reason_text
from ..format.vocabulary import utc_iso
from ..logs import LOG_ROW_BYTES, build_log_row
from ..metrics import metric_metadata
from ..run import RunStatus
from ..stats import collect_stats
from .announce import announce
from .nesting import check_not_inside_a_run
from .resume import Resume, check_local
from .runlock import RunLock

if TYPE_CHECKING:
    from ..remote.live_run import RemoteRun
    from ..remote.reads import ServerReads

logger = logging.getLogger("ml_dash")

#: Events a stream buffers before the caller wakes the agent (metrics, logs).
METRIC_WAKE_EVERY = 4096
LOG_WAKE_EVERY = 256

_EXIT_STATUS = {"exit": RunStatus.COMPLETED, "exception": RunStatus.FAILED, "sigterm": RunStatus.CANCELLED}


@dataclass(slots=True)
class RunOptions:
    """What an Experiment was created with, beyond its prefix and directory."""

    description: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    close_timeout_s: float = 10.0
    upload_timeout_s: float = 30.0
    resume: Resume = Resume.AUTO
    #: Print nothing at the start (the line saying where the run goes: announce.py).
    quiet: bool = False


class RunSession:
    """One experiment's run: its state, its writer on the agent, and its lock."""

    def __init__(self, prefix: str, directory: Path, options: RunOptions, remote: str | None = None,
                 credentials: tuple[str | None, str | None] = (None, None)) -> None:
        self.owner, self.project, self.name = prefix.split("/")
        self.prefix = prefix
        self.directory = directory
        self.options = options
        self.remote = remote
        self.credentials = credentials
        self.status = RunStatus.CREATED
        self.agent: Agent | None = None
        self.writer: RunWriter | None = None
        self.log_stream: RowStream = self._dormant_stream(layout.LOG_STREAM, self._log_stream_args())
        self.upload: RemoteRun | None = None
        self._lock: RunLock | None = None
        self._pid = os.getpid()
        self._document: dict[str, Any] = {}
        self._on_start: list[Callable[[], None]] = []
        self._on_end: list[Callable[[BaseException | None], None]] = []
        self._release = _ReleaseWhenDone()
        self._forked_warned: set[str] = set()
        #: The Experiment this session belongs to, weakly: when it is gone, nobody can end the run but
        #: the process's exit, or a new Experiment on the same directory (see _end_orphan).
        self.holder: Callable[[], Any] = lambda: None

    # -- what the SDK objects use ------------------------------------------
    def on_start(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the run has started (to bind streams obtained before)."""
        self._on_start.append(callback)

    def on_end(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(error)`` when the run ends, before its streams close (what it logs is kept):
        ``error`` is the exception that failed the run, when there is one (capture's console keeps its
        traceback). Never called in a forked child, whose parent ends the run."""
        self._on_end.append(callback)

    def add_metadata(self, key: str, value: Any) -> None:
        """Set ``key`` of the run's metadata while it runs (capture's provenance); experiment.json is
        rewritten by the agent and uploaded with the next batch. A key the script gave is kept, not replaced."""
        self.require_running()
        assert self.writer is not None
        metadata = dict(self._document.get("metadata") or {})
        if key in metadata:
            logger.debug("ml-dash: the metadata of %s has its own %r; ml-dash's is not recorded", self.prefix, key)
            return
        encode_checked(f"metadata {key!r}", value, MAX_DOCUMENT_BYTES)
        metadata[key] = value
        self._document["metadata"] = metadata
        try:
            self.writer.set_document(layout.EXPERIMENT, dict(self._document))
        except StreamClosedError:
            raise RunStateError(self.not_running_message()) from None

    @property
    def running(self) -> bool:
        return self.status is RunStatus.RUNNING

    def require_running(self) -> None:
        if self.status is not RunStatus.RUNNING:
            raise RunStateError(self.not_running_message())

    def not_running_message(self) -> str:
        if self.status is RunStatus.CREATED:
            return f"experiment {self.prefix!r} is not started: use `with exp.run:` or call exp.run.start() first"
        return f"experiment {self.prefix!r} has ended ({self.status}); nothing more can be logged to it"

    def metric_stream(self, name: str) -> RowStream:
        """The stream of metric ``name`` (a closed one, which refuses rows, unless the run is running)."""
        stream_name = layout.metric_stream(name)
        writer = self.writer
        if writer is None or self.status is not RunStatus.RUNNING:
            return self._dormant_stream(stream_name, self._metric_stream_args(name))
        if not self.in_owning_process():  # a forked child: the parent writes this run
            stream = RowStream(self._agent().budget, stream_name, *self._metric_stream_args(name))
            stream.forget()
            return stream
        existing = writer.streams.get(stream_name)
        if existing is not None:
            stream = existing
        else:
            stream = writer.add_stream(RowStream(self._agent().budget, stream_name, *self._metric_stream_args(name)))
            if stream.state == "open":
                existing = read_json(layout.metric_metadata_path(self.directory, name))
                slot = writer.document(f"{layout.METRICS_DIR}/{name}/{layout.METRIC_METADATA}",
                                       caught_up(existing, stream.path), derived=True)
                writer.on_durable.append(_metadata_updater(name, slot, stream))
        return stream

    def set_document(self, relpath: str, value: Any) -> None:
        """Replace a document of the run (parameters.json); RunStateError once the run has ended."""
        self.require_running()
        assert self.writer is not None
        if not self.in_owning_process():
            self._forked_no_op(relpath)
            return
        try:
            self.writer.set_document(relpath, value)
        except StreamClosedError:
            raise RunStateError(self.not_running_message()) from None

    def add_file(self, job: FileJob) -> None:
        self.require_running()
        assert self.writer is not None
        if not self.in_owning_process():
            self._forked_no_op("files")
            job.discarded()
            return
        try:
            self.writer.add_file(job)
        except StreamClosedError:
            raise RunStateError(self.not_running_message()) from None
        self._agent().wake()

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Write (and fsync) everything logged so far; False if ``timeout_s`` passed first."""
        if self.writer is None or self.agent is None or not self.in_owning_process() or self.writer.closed:
            return True
        return self.agent.flush(self.writer, timeout_s)

    def server_reads(self) -> ServerReads | None:
        """Where reads go: the server in remote mode for a run this process has not started (its
        directory here may be empty); else None, and the local directory answers."""
        if self.remote is None or self.writer is not None:
            return None
        from ..remote.reads import ServerReads  # urllib and ssl: only remote runs pay for their import

        return ServerReads(self.remote, self.prefix, *self.credentials)

    def in_owning_process(self) -> bool:
        return os.getpid() == self._pid

    def _forked_no_op(self, what: str) -> None:
        if what not in self._forked_warned:
            self._forked_warned.add(what)
            logger.warning("ml-dash: process %d changed %s of %s, a run its parent process writes; that is a "
                           "no-op in a forked child (create an Experiment in the child to log from it)",
                           os.getpid(), what, self.prefix)

    def stats(self) -> dict[str, Any]:
        stats = self._stream_stats()
        if self._lock is not None:
            stats["lock"] = self._lock.stats()
        return stats

    def _stream_stats(self) -> dict[str, Any]:
        writer = self.writer
        if writer is None:
            return collect_stats(None, None)
        upload = self.upload
        if writer.closed or self.agent is None or not self.in_owning_process():
            return collect_stats(writer, upload.last_status() if upload is not None else None)

        async def on_the_loop() -> dict[str, Any]:
            return collect_stats(writer, upload.status() if upload is not None else None)

        return self.agent.call(on_the_loop, 10.0)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Lock the directory, apply the resume policy, write experiment.json (RUNNING) and start writing
        (and, in remote mode, uploading). Nothing is held when it raises."""
        if self.status is RunStatus.RUNNING:
            raise RunStateError(f"experiment {self.prefix!r} is already running")
        if self.status is not RunStatus.CREATED:
            raise RunStateError(f"experiment {self.prefix!r} has ended ({self.status}); "
                                "create a new Experiment to continue it")
        check_not_inside_a_run(self.directory, self.prefix)
        lifecycle.install_sigterm()
        try:
            try:
                lock = RunLock.acquire(self.directory, self.prefix)
            except RunLockedError:
                if not _end_orphan(self.directory):
                    raise
                lock = RunLock.acquire(self.directory, self.prefix)
            try:
                self._open()
            except BaseException:
                lock.release()
                raise
        except OSError as exc:  # a full disk, no permission: say which run and what failed, keep the errno
            raise _start_failure(self.prefix, self.directory, exc) from exc
        self._lock = lock
        assert self.writer is not None
        self.writer.on_durable.append(_lock_verifier(lock))  # a deleted or replaced lock file is locked again
        _running[_key(self.directory)] = self
        if not self.options.quiet:
            announce(self.prefix, self.directory, self.remote)

    def _open(self) -> None:
        previous = read_json(self.directory / layout.EXPERIMENT)
        previous = previous if isinstance(previous, dict) else {}
        if previous.get("prefix") not in (None, self.prefix):
            raise ConfigurationError(
                f"{self.directory} holds the run {previous['prefix']!r}, not {self.prefix!r}; give this run its "
                "own directory (local_path names a root unless it ends with the prefix)")
        check_local(self.options.resume, self.prefix, self.directory, previous, remote=self.remote is not None)
        remove_leftovers(self.directory)  # a crashed writer's temporary files (we hold the run's lock)
        # a run id with the directory's first run; a writer id (and segment, ml_dash/format/segments.py) per start
        identity = {"run_id": previous.get("run_id") or uuid.uuid4().hex, "writer_id": uuid.uuid4().hex}
        if self.remote is not None:
            # imported here: aiohttp takes ~170 ms to import, which local-mode runs never pay
            from ..remote.live_run import RemoteRun

            self.upload = RemoteRun(self.directory, self.prefix, self.remote, self.credentials)
            identity["run_id"] = self.upload.reconcile_at_start(self.options.resume, previous, identity["run_id"])
        self.agent = agent = Agent.instance()
        self.writer = writer = agent.new_writer(self.directory)
        # rows a server acknowledged that the files lack (an OS crash, a pulled run ending in set-aside
        # rows) are never numbered again, in local mode too
        floor = acknowledged_rows(self.directory, self.prefix)
        for name, index in (self.upload.index_floor if self.upload is not None else {}).items():
            floor[name] = max(floor.get(name, 0), index)
        writer.index_floor = floor
        first = {name: max(rows_on_disk(path, layout.identity_key(name)), writer.index_floor.get(name, 0))
                 for name, path in layout.discover_streams(self.directory)}
        segments = [*segments_of(previous), {"writer_id": identity["writer_id"], "first": first}]
        writer.load_file_entries(read_files_metadata(self.directory))
        now = utc_iso()
        options = self.options
        self._document = {
            "name": self.name, "project": self.project, "owner": self.owner, "prefix": self.prefix,
            "description": options.description, "tags": options.tags, "metadata": options.metadata,
            "created_at": previous.get("created_at", now), "status": RunStatus.RUNNING.value, "started_at": now,
            "ended_at": None, "status_reason": None, "pid": os.getpid(), "hostname": socket.gethostname(),
            "sdk": f"ml-dash {__version__}", **identity, "segments": segments,
        }
        adopted = dict(previous.get("adopted") or {}) if isinstance(previous.get("adopted"), dict) else {}
        if self.upload is not None and self.upload.adopted is not None:  # kept beside the cursor: it must not be lost
            adopted[self.remote or ""] = self.upload.adopted
        if adopted:
            self._document["adopted"] = adopted
        write_document(self.directory / layout.EXPERIMENT, dumps(self._document))
        writer.document(layout.EXPERIMENT, dict(self._document)).written_version = 1
        self.log_stream = writer.add_stream(RowStream(agent.budget, layout.LOG_STREAM, *self._log_stream_args()))
        if self.upload is not None:  # first: if it cannot start, nothing is registered yet
            self.upload.start(agent, writer)
        self.status = RunStatus.RUNNING
        # dropped once called: they hold the Experiment's handles, which hold the Experiment, and this
        # session stays reachable from _running: kept, they would keep every Experiment referenced
        callbacks, self._on_start = self._on_start, []
        for callback in callbacks:
            callback()
        agent.register(writer)
        lifecycle.on_shutdown(self)

    def finish(self, status: RunStatus, reason: str | None, timeout_s: float | None,
               error: BaseException | None = None) -> bool:
        """End the run ``status``: every call that returned is written; False if the deadline passed first."""
        if self.status is not RunStatus.RUNNING:
            raise RunStateError(self.not_running_message())
        if self.in_owning_process():
            self._run_end_callbacks(error)
        writer, agent = self.writer, self.agent
        assert writer is not None and agent is not None
        self.status = status
        for stream in list(writer.streams.values()):  # every later call takes the slow path, which refuses
            stream.close()
        lifecycle.forget(self)
        if _running.get(_key(self.directory)) is self:
            del _running[_key(self.directory)]
        if not self.in_owning_process():
            return True  # a forked child: the parent writes (and ends) this run
        self._document.update(status=status.value, ended_at=utc_iso(), status_reason=reason)
        writer.set_document(layout.EXPERIMENT, dict(self._document))
        close = Deadline(self.options.close_timeout_s if timeout_s is None else timeout_s)
        remaining = close.remaining()
        writer.close_deadline = None if remaining is None else time.monotonic() + remaining
        self._release.expect(2, self._release_lock)
        writer.on_closed.append(self._release.done)
        try:
            done = agent.close_run(writer, close.remaining())
            if done and writer.unwritten_documents:
                done = False
                _warn_unwritten(self.prefix, status, writer.unwritten_documents)
            if not done:
                logger.warning("ml-dash: %s ended %s but its events are still being written after %.1f s; "
                               "they keep going in the background until the process exits", self.prefix, status,
                               self.options.close_timeout_s if timeout_s is None else timeout_s)
            if self.upload is not None:
                upload = Deadline(self.options.upload_timeout_s) if timeout_s is None else close
                done = self.upload.finish(agent, upload) and done
        finally:
            self._release.done()  # the lock goes when the writer has closed too (now, or when it does)
        return done

    def _run_end_callbacks(self, error: BaseException | None) -> None:
        callbacks, self._on_end = self._on_end, []  # once: a callback that ends the run must not loop
        for callback in callbacks:
            try:
                callback(error)
            except Exception:  # capture must never stop a run from ending
                logger.warning("ml-dash: an end-of-run callback of %s failed", self.prefix, exc_info=True)

    def shutdown(self, reason: str, deadline: float) -> None:
        """Called at interpreter exit or SIGTERM for a run that was never ended."""
        if self.status is not RunStatus.RUNNING:
            return
        interrupted = lifecycle.interrupted()
        status = RunStatus.CANCELLED if interrupted else _EXIT_STATUS.get(reason, RunStatus.FAILED)
        error = lifecycle.uncaught_exception() if reason == "exception" and not interrupted else None
        label = "KeyboardInterrupt" if interrupted else {"exit": None, "exception": "uncaught exception",
                                                          "sigterm": "SIGTERM"}.get(reason, reason)
        if error is not None:
            label = reason_text(error)
        # the error is not handed to the end callbacks: Python printed its traceback before the exit hooks
        # ran, and the console kept it from stderr already
        self.finish(status, label, max(0.0, deadline - time.monotonic()))

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # -- helpers -------------------------------------------------------------
    def _agent(self) -> Agent:
        return self.agent or Agent.instance()

    def _metric_stream_args(self, name: str) -> tuple:
        path = layout.stream_path(self.directory, layout.metric_stream(name))
        return (path, layout.METRIC_KEY, encode_metric_chunk, metric_row_bytes(6), METRIC_WAKE_EVERY, True, True)

    def _log_stream_args(self) -> tuple:
        path = self.directory / layout.LOGS_FILE
        return (path, layout.LOG_KEY, row_chunk_encoder(build_log_row), LOG_ROW_BYTES, LOG_WAKE_EVERY)

    def _dormant_stream(self, name: str, args: tuple) -> RowStream:
        """A stream that refuses every row (before the start, after the end): each call takes the slow
        path, which finds it closed and sealed. It never reaches an agent, so none is started for it:
        creating an Experiment starts no thread."""
        stream = RowStream(None, name, *args)  # type: ignore[arg-type]  # never used: sealed
        stream.seal = Seal(sealed=True)
        stream.close()
        return stream

    def __repr__(self) -> str:
        return f"<RunSession {self.prefix!r} {self.status} at {self.directory}>"


class _ReleaseWhenDone:
    """Runs an action once ``n`` parts are done (the writer's close and the upload's end finish on
    different threads, and the close may outlive ``finish``'s deadline)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left = 0
        self._action: Callable[[], None] | None = None

    def expect(self, n: int, action: Callable[[], None]) -> None:
        with self._lock:
            self._left, self._action = n, action

    def done(self) -> None:
        with self._lock:
            self._left -= 1
            action = self._action if self._left == 0 else None
        if action is not None:
            action()


#: This process's running sessions by run directory (their real path).
_running: dict[str, RunSession] = {}


def _key(directory: Path) -> str:
    return os.path.realpath(directory)


def _end_orphan(directory: Path) -> bool:
    """End the running session of ``directory`` held by this process when its Experiment is no longer
    referenced (a notebook cell run again): nothing else could ever end it. True when it ended."""
    previous = _running.get(_key(directory))
    if previous is None or not previous.in_owning_process():
        return False
    if previous.holder() is not None:
        gc.collect()  # an Experiment is a reference cycle (exp.run refers back to it): only this frees it
    if previous.holder() is not None:
        return False
    logger.warning("ml-dash: ending run %s: a new Experiment of this process starts on %s, and the "
                   "Experiment that was running it is no longer referenced", previous.prefix, directory)
    previous.finish(RunStatus.COMPLETED, "ended when a new Experiment of this process started on its run "
                    "directory (the previous one was no longer referenced)", None)
    return True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_running.clear)  # the parent's runs are not the child's to end


def _warn_unwritten(prefix: str, status: RunStatus, paths: list[Path]) -> None:
    """Say once, at the run's end, which documents are not on disk as the run left them."""
    names = ", ".join(str(p) for p in paths)
    end = (f" (so on disk the run still says RUNNING, not {status}; with no writer left, `ml-dash ls` shows "
           "it CRASHED)") if any(p.name == layout.EXPERIMENT for p in paths) else ""
    logger.warning("ml-dash: run %s ended %s, but these could not be written to disk before the close deadline "
                   "(disk full?): %s%s. They are not recorded; the rows and files written before are.", prefix,
                   status, names, end)


def _start_failure(prefix: str, directory: Path, exc: OSError) -> OSError:
    """The start's OSError with the run and the failing path named (the errno is kept for callers)."""
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in str(exc.strerror) else ""
    full = " (the disk or the quota is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    return OSError(exc.errno, f"cannot start run {prefix!r} in {directory}: {exc.strerror or exc}{where}{full}; "
                              "nothing was started and the directory is not locked")


def _lock_verifier(lock: RunLock) -> Callable[[], None]:
    """A durable-pass hook that checks the lock file is still the one held (see RunLock.verify)."""
    def verify() -> None:
        try:
            lock.verify()
        except Exception:  # a check must never stop the writes of the run
            logger.debug("ml-dash: could not check the lock file of a run", exc_info=True)

    return verify


def _metadata_updater(name: str, slot: Any, stream: RowStream) -> Callable[[], None]:
    """Called at each durable point: a metric whose count moved gets its metadata.json rendered when the
    writer gets to it (a run of 20,000 metrics must not build 20,000 documents a second), with each
    field's latest value written so far (ml_dash/format/latest.py)."""
    last: dict[str, int | None] = {"count": None}

    def update() -> None:
        count = stream.next_index
        if last["count"] != count:
            last["count"] = count
            slot.set_lazy(lambda previous: metric_metadata(name, previous, count, utc_iso(), stream.latest,
                                                           stream.latest_bytes))

    return update
