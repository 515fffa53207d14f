"""A tiny thread pool that keeps working during interpreter shutdown.

``concurrent.futures.ThreadPoolExecutor`` refuses new work as soon as
interpreter shutdown begins, which is before ``atexit`` handlers run; the
agent's final flush at exit must still write files, so it uses this pool for
every blocking call (file writes, fsync, torch.save).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from .lifecycle import start_thread_without_signals

#: The agent's disk workers: writes and fsyncs of the runs' files.
IO_WORKERS = 2


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
