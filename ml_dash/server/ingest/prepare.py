"""Decoding and checking ingest bodies in worker processes, so the event loop never does it.

msgpack decodes while holding the GIL, so a thread would not help: one large body (up to 64 MiB
once decompressed) would hold every other request, ``/health`` included, for as long as it takes.
A worker process decompresses, decodes and validates the body and prepares what storage writes
(chunks and summaries, as bytes: storage/chunks.py's prepare_rows), and the loop receives the result.
A bad body's :class:`~.errors.RequestError` comes back the same way and is answered as usual.

Each worker may take ``worker_memory_bytes`` beyond what it holds at start (on Linux, a cap on its
data segment, which counts every private writable mapping): decoding costs up to ~26 times a body's
decompressed size (a 3-byte string becomes a 59-byte object and its slot), and a list declared with a
million items is allocated before its items arrive, so the cap, not an estimate, is what bounds a
worker. A body past it fails with MemoryError inside msgpack and is refused with 413, naming the cap.

``workers=0`` does the same work in the server's own process (for embedding and for debugging), with
no cap but the decompressed size.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..config import ServerConfig
from ..errors import PayloadTooLarge, Unavailable
from ..storage.records import IngestBatch
from .decode import build_batch, parse_body

logger = logging.getLogger("ml_dash.server")

#: How often a worker checks that its server is still there.
ORPHAN_CHECK_S = 0.5


def prepare(raw: bytes, encoding: str | None, config: ServerConfig, owner: str, project: str,
            name: str) -> IngestBatch:
    """The validated, storage-ready batch of one request body; a RequestError naming the problem."""
    try:
        body = parse_body(raw, encoding, config.body_limits)
        return build_batch(owner, project, name, body, config.max_events_per_request, config.body_limits.max_streams)
    except MemoryError:
        raise _too_big_to_decode(config) from None


def _too_big_to_decode(config: ServerConfig) -> PayloadTooLarge:
    return PayloadTooLarge(f"decoding this body takes more than the {config.worker_memory_bytes >> 20} MiB an ingest "
                           "worker may use; send fewer rows per request")


def _worker_start(server_pid: int, memory_bytes: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the server shuts its workers down itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # and a server killed outright (SIGKILL, OOM) cannot: a worker whose server is gone exits by itself
    threading.Thread(target=_exit_with, args=(server_pid,), name="ml-dash-orphan-watch", daemon=True).start()
    _limit_memory(memory_bytes)  # last: what the worker holds from here on is its decoding


def _exit_with(server_pid: int) -> None:
    """Exit once the server process has ended: a pidfd turns readable then, reaped or not (a worker of
    the fork server); without pidfds the workers are the server's own children (see _pool_context)."""
    if _PIDFDS:
        try:
            select.select([os.pidfd_open(server_pid)], [], [])
        except OSError:  # ProcessLookupError: it ended before this worker looked
            pass
    else:
        while os.getppid() == server_pid:
            time.sleep(ORPHAN_CHECK_S)
    os._exit(0)


def _has_pidfds() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return False
    return True


#: Whether this system gives a process a descriptor that says when another one ends (Linux 5.3+).
_PIDFDS = _has_pidfds()


def _pool_context() -> multiprocessing.context.BaseContext:
    """Where the workers come from. Not "fork": the server has threads (SQLite's), which a forked child
    would inherit stuck. The fork server is one clean process that imported this module once, and each
    worker is a fork of it, not an interpreter importing everything again ("spawn": ~0.1 CPU-s a worker).
    But a fork server stays while any worker lives, so a worker must see its server end by itself, which
    needs a pidfd; without them, "spawn", whose workers watch their parent, the server."""
    if not _PIDFDS:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _limit_memory(extra_bytes: int) -> None:
    """Cap this process's data segment at what it holds now plus ``extra_bytes`` (Linux; elsewhere the
    decompressed size is the only bound)."""
    try:
        import resource

        with open("/proc/self/status") as status:
            held = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        soft = held + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, held + extra_bytes)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    except (ImportError, OSError, ValueError, StopIteration):
        logger.info("ingest workers run without a memory cap on this system")


def _ready() -> bool:
    return True


class Preparer:
    """Where ingest bodies are decoded: ``workers`` processes (started with the server), or inline."""

    def __init__(self, config: ServerConfig, workers: int) -> None:
        self._config = config
        self._workers = workers
        self._pool = self._new_pool() if workers > 0 else None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._workers, mp_context=_pool_context(),
                                   initializer=_worker_start, initargs=(os.getpid(), self._config.worker_memory_bytes))

    async def start(self) -> None:
        """Start every worker now, so the first requests do not wait for an interpreter to start."""
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self._pool, _ready) for _ in range(self._workers)))

    async def batch(self, raw: bytes, encoding: str | None, owner: str, project: str, name: str) -> IngestBatch:
        """The request's batch; Unavailable (503) when its worker died under it (killed, out of memory).

        A dead worker breaks the whole pool: it is replaced at once, so one lost process costs the
        requests in flight a retry, never every request from then on.
        """
        pool = self._pool
        if pool is None:
            return prepare(raw, encoding, self._config, owner, project, name)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, prepare, raw, encoding, self._config, owner, project, name)
        except MemoryError:  # the batch was too big to send back within the cap
            raise _too_big_to_decode(self._config) from None
        except BrokenProcessPool:
            if self._pool is pool:  # the first request to see it replaces it; the others find it new
                logger.warning("an ingest worker died; starting new ones")
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("the server's ingest worker stopped while decoding this request") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
