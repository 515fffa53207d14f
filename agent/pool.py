"""A tiny thread pool that keeps working during interpreter shutdown.

``concurrent.futures.ThreadPoolExecutor`` refuses new work as soon as
interpreter shutdown begins, which is before ``atexit`` handlers run; the
agent's final flush at exit must still write files, so it uses this pool for
every blocking call (file writes, fsync, torch.save).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from .lifecycle import start_thread_without_signals

T = TypeVar("T")
R = TypeVar("R")

#: The agent's disk workers: writes and fsyncs of the runs' files.
IO_WORKERS = 2
#: Threads that fsync many files at once (a run of thousands of metrics): on ext4, fsyncs issued together
#: share journal commits; 5,000 files took 9.4 s one after another and 0.7 s on 8 threads here.
SYNC_THREADS = 8
#: Items that make one call, at least: a few files are not worth a second thread.
FAN_OUT_MIN_ITEMS = 16


class WorkerPool(Executor):
    """Daemon worker threads fed from one queue; ``submit`` never refuses until ``shutdown``."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            start_thread_without_signals(thread)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("worker pool is shut down")
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001  # handed to the awaiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def chunks_for(items: Sequence[T], threads: int, min_items: int = FAN_OUT_MIN_ITEMS) -> list[Sequence[T]]:
    """``items`` cut into at most ``threads`` chunks of at least ``min_items`` (one chunk when few)."""
    size = max(min_items, -(-len(items) // threads))
    return [items[i:i + size] for i in range(0, len(items), size)]


async def map_chunks(executor: Executor, fn: Callable[[Sequence[T]], list[R]], items: Sequence[T],
                     threads: int) -> list[R]:
    """``fn(chunk)`` for the chunks of ``items`` (:func:`chunks_for`) at once on ``executor``, which has
    ``threads`` threads; the results of every chunk concatenated in the order of ``items``."""
    loop = asyncio.get_running_loop()
    parts = await asyncio.gather(*(loop.run_in_executor(executor, fn, chunk) for chunk in chunks_for(items, threads)))
    return [result for part in parts for result in part]
