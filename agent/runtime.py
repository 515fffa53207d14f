"""The agent: one asyncio event loop in one daemon thread, shared by every run.

Lifecycle: ``Agent.instance()`` starts the thread on first use. The loop's one
long-lived task, the flusher, wakes every ``flush_interval_s`` or as soon as a
stream passes its wake threshold (one ``call_soon_threadsafe`` per threshold
crossing, never one per event) and writes every registered run. Calls from
other threads (``flush``, ``close_run``, ``stats``) carry a deadline: they
return or raise ``TimeoutError`` in bounded time, whatever the disk does.

Configuration comes from the environment when the agent starts (agent/settings.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from . import lifecycle
from .budget import BufferBudget
from .pool import FAN_OUT_MIN_ITEMS, IO_WORKERS, SYNC_THREADS, WorkerPool, map_chunks
from .rundir import RunWriter
from .settings import AgentSettings

logger = logging.getLogger("ml_dash.agent")
T = TypeVar("T")

#: Stream files each running run may keep open, however many runs share ML_DASH_MAX_OPEN_FILES (unless
#: it is set lower).
MIN_OPEN_FILES_PER_RUN = 4


class Agent:
    """Moves buffered events of every run of this process to disk."""

    _instance: Agent | None = None
    _instance_lock = threading.Lock()

    def __init__(
        self,
        flush_interval_s: float | None = None,
        fsync_interval_s: float | None = None,
        max_buffer_bytes: int | None = None,
        max_block_s: float | None = None,
    ) -> None:
        settings = self.settings = AgentSettings.from_env()
        self.flush_interval_s = flush_interval_s or settings.flush_interval_s
        self.fsync_interval_s = fsync_interval_s or settings.fsync_interval_s
        self.max_buffer_bytes = max_buffer_bytes or settings.max_buffer_bytes
        self.max_block_s = settings.max_block_s if max_block_s is None else max_block_s
        self.max_open_files = settings.max_open_files  # shared by the running runs (agent/handles.py)
        self.pid = os.getpid()
        self.runs: dict[int, RunWriter] = {}
        self.pool = WorkerPool(IO_WORKERS, "ml-dash-io")
        self._upload_pool: WorkerPool | None = None
        self._sync_pool: WorkerPool | None = None
        #: the memory every stream shares; streams get this, never the agent (agent/budget.py)
        self.budget = BufferBudget(self.max_buffer_bytes, self.max_block_s, self.buffered_bytes, self._request_drain)
        self._stopping = False
        self._reported_failures: set = set()
        self._loop = asyncio.new_event_loop()
        self._wake_event: asyncio.Event | None = None
        self._flusher: asyncio.Task | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(started,), name="ml-dash-agent", daemon=True)
        lifecycle.start_thread_without_signals(self._thread)
        started.wait()

    @classmethod
    def instance(cls) -> Agent:
        """The process's agent, started on first use (and anew in a forked child)."""
        agent = cls._instance
        if agent is not None and agent.pid == os.getpid():
            return agent
        with cls._instance_lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                agent = cls._instance = Agent()
                lifecycle.install(lifecycle.EngineHooks(agent.pid, agent.settings.exit_timeout_s,
                                                        lambda timeout_s: agent.flush(None, timeout_s),
                                                        cls._reset_in_child))
            return cls._instance

    @classmethod
    def _reset_in_child(cls) -> None:
        """After fork, in the child: the parent's agent thread does not exist here. Its runs are switched
        off (the parent writes them) and the next :meth:`instance` starts a fresh agent."""
        agent, cls._instance = cls._instance, None
        if agent is not None:
            agent.forget_after_fork()

    # -- loop thread -------------------------------------------------------
    def _run_loop(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._wake_event = asyncio.Event()
        self._flusher = self._loop.create_task(self._flush_forever(), name="ml-dash-flusher")
        started.set()
        self._loop.run_forever()

    async def _flush_forever(self) -> None:
        assert self._wake_event is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake_event.wait(), self.flush_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake_event.clear()
            self.budget.drain_started()
            await self.flush_runs()

    async def flush_runs(self, durable: bool = False) -> None:
        for run in list(self.runs.values()):
            try:
                await run.flush(durable)
            except Exception:  # never let one run's failure stop the agent; say so once per run
                if run.directory not in self._reported_failures:
                    self._reported_failures.add(run.directory)
                    logger.exception("ml-dash agent failed to flush %s (further failures are not logged)", run.directory)
            self.budget.space_freed()

    # -- any thread --------------------------------------------------------
    def wake(self) -> None:
        """Ask the flusher to run now (at most one pending request: the budget keeps the flag)."""
        self.budget.wake()

    def _request_drain(self) -> None:
        """The budget's way to start the flusher, from any thread."""
        if self._wake_event is not None:
            self._loop.call_soon_threadsafe(self._wake_event.set)

    def buffered_bytes(self) -> int:
        """Estimated bytes of events waiting in memory across all runs."""
        total = 0
        for run in list(self.runs.values()):
            for stream in list(run.streams.values()):
                total += stream.buffered_bytes()
        return total

    def call(self, coro_factory: Callable[[], Coroutine[Any, Any, T]], timeout_s: float | None) -> T:
        """Run a coroutine on the agent's loop and wait for it, at most ``timeout_s``."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("ml-dash: cannot wait on the agent from its own thread")
        future: Future = asyncio.run_coroutine_threadsafe(coro_factory(), self._loop)
        return future.result(timeout_s)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the agent's worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def fan_out(self, fn: Callable[[Sequence[Any]], list[T]], items: Sequence[Any]) -> list[T]:
        """``fn(chunk)`` over chunks of ``items`` (fsyncs, document writes), results in order: a few items in
        one call on the disk workers, many at once on the sync threads (started when first needed)."""
        if len(items) <= FAN_OUT_MIN_ITEMS:
            return await self.run_blocking(fn, items)
        with self._instance_lock:
            if self._sync_pool is None:
                self._sync_pool = WorkerPool(SYNC_THREADS, "ml-dash-sync")
        return await map_chunks(self._sync_pool, fn, items, SYNC_THREADS)

    @property
    def upload_pool(self) -> WorkerPool:
        """The uploads' worker thread (reads, encoding, cursor saves): a backlog being drained at full
        speed must not take the disk writer's threads."""
        with self._instance_lock:
            if self._upload_pool is None:
                self._upload_pool = WorkerPool(1, "ml-dash-upload")
            return self._upload_pool

    def new_writer(self, directory: Path) -> RunWriter:
        """A writer for the run in ``directory``, given what it needs of this agent (its pools, the
        budget, the settings) rather than the agent itself; :meth:`register` it to have it flushed."""
        return RunWriter(directory, self.budget, run_blocking=self.run_blocking, fan_out=self.fan_out,
                         fsync_interval_s=self.fsync_interval_s, max_open_files=self.max_open_files)

    def register(self, run: RunWriter) -> None:
        self.runs[id(run)] = run
        self._share_open_files()

    def unregister(self, run: RunWriter) -> None:
        self.runs.pop(id(run), None)
        self._share_open_files()

    def _share_open_files(self) -> None:
        """``max_open_files`` is the process's: each running run keeps its share of stream files open (at
        least :data:`MIN_OPEN_FILES_PER_RUN`); a run over its new share closes files as it opens others."""
        runs = list(self.runs.values())
        least = min(MIN_OPEN_FILES_PER_RUN, self.max_open_files)  # a setting below it is still honoured
        share = max(least, self.max_open_files // max(1, len(runs)))
        for run in runs:
            run.stream_files.capacity = share

    def close_run(self, run: RunWriter, timeout_s: float | None) -> bool:
        """Write all of ``run`` durably and release it; False if the deadline passed first."""

        async def _close() -> None:
            try:
                await run.close()
            finally:
                self.unregister(run)

        try:
            self.call(_close, timeout_s)
            return True
        except TimeoutError:
            return False
        except Exception:  # a bug: what was written is on disk; the caller's run still ends
            logger.exception("ml-dash: closing %s failed", run.directory)
            return False

    def flush(self, run: RunWriter | None, timeout_s: float | None) -> bool:
        """Write (and fsync) what is buffered for ``run`` (or all runs); False on timeout."""

        async def _flush() -> None:
            if run is None:
                await self.flush_runs(durable=True)
            else:
                await run.flush(durable=True)

        try:
            self.call(_flush, timeout_s)
            return True
        except TimeoutError:
            return False

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def forget_after_fork(self) -> None:
        """In a forked child: this agent's thread does not exist here; stop using it."""
        for run in list(self.runs.values()):
            for stream in run.streams.values():
                stream.forget()
        self.runs.clear()
