"""The open stream files of one run: a few at a time, the least recently used closed first.

Descriptors are the user's resource. A process may hold 1,024 of them by
default (``RLIMIT_NOFILE``), and a training script needs its own for data
loaders, checkpoints and sockets; a run may have any number of metric streams
(per-layer statistics of a large model make thousands). Keeping one file open
per stream for the run's life ran a 1,100-metric run out of descriptors: rows
were dropped, documents went unwritten, and the script's own ``open()`` failed.
So a writer keeps at most ``capacity`` stream files open (its share of
``ML_DASH_MAX_OPEN_FILES`` among the process's running runs, agent/runtime.py):
a run of a handful of streams keeps all of them open and writes exactly as
before; a run of thousands reopens a file when its turn comes.

Durability across eviction (RELIABILITY.md, contract 2): a file closed with
data written since its last fsync is remembered by path and fsynced at the next
durable point, by reopening it (an fsync flushes the file's pages whichever
descriptor asks). Eviction therefore never moves the durable point, and costs
no fsync on the write path. Only files written since their last fsync are
fsynced: a run of 20,000 streams logging a few of them pays for those few.

Descriptors held at most: ``capacity`` open files, plus, during a periodic
fsync that runs beside the writes, a duplicate of each open file being synced
(so an eviction meanwhile cannot close a descriptor under the fsync), plus one
per thread reopening a file to fsync it: ``2 * capacity + threads``.

Torn tails (ml_dash/format/jsonlines.py): the first open of a file by this writer ends
a crash's half line with a newline; a reopen after eviction does not look, as
this writer left the file ending in a complete line (or cut it back to one).

Everything here is called on the agent's loop; blocking calls go to its
worker pool through ``run_blocking``.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ..format.jsonlines import ends_torn

logger = logging.getLogger("ml_dash.agent")

#: Stream files the process's runs keep open at most, by default: more than a run of a few streams
#: uses, a small part of the 1,024 descriptors a process commonly may hold.
DEFAULT_MAX_OPEN_FILES = 64
#: The errors of a process (or the system) out of descriptors.
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})

RunBlocking = Callable[..., Awaitable[Any]]
#: ``fan_out(fn, items)``: ``fn(chunk)`` over chunks of ``items``, on several threads when there are many
#: (Agent.fan_out); the results of every chunk concatenated.
FanOut = Callable[[Callable[[Sequence[Any]], list[Any]], Sequence[Any]], Awaitable[list[Any]]]


class _OpenFile:
    __slots__ = ("dirty", "fd", "path")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.dirty = False  # written since its last fsync


class StreamFiles:
    """A run's stream files open for appending, at most ``capacity`` at a time (least recently used
    closed first; a capacity lowered meanwhile is reached as files are opened); :meth:`sync` fsyncs every
    file written since its last fsync, open or closed."""

    def __init__(self, capacity: int, run_blocking: RunBlocking, fan_out: FanOut,
                 fsync: Callable[[int], None] = os.fsync) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.fsync = fsync
        self._run_blocking = run_blocking
        self._fan_out = fan_out
        self._open: OrderedDict[str, _OpenFile] = OrderedDict()  # least recently used first
        self._unsynced: dict[str, Path] = {}  # closed with data not yet fsynced
        self._seen: set[str] = set()  # opened by this writer before: the torn-tail check is done
        self.reopens = 0  # opens after an eviction (the cost of many streams)

    def __len__(self) -> int:
        """Files open now."""
        return len(self._open)

    async def open(self, name: str, path: Path) -> int | None:
        """Make ``name``'s file (at ``path``) open for appending, closing the least recently used one if
        ``capacity`` are open; returns the file's size when this is its first open by this writer (after
        ending a torn last line), else None. Raises OSError when the file cannot be opened."""
        found = self._open.get(name)
        if found is not None:
            self._open.move_to_end(name)
            return None
        first = name not in self._seen
        try:
            fd, size = await self._open_closing(self._evict(self.capacity - 1), path, first)
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS or not self._open:
                raise
            # the process is out of descriptors (the user's own files, most likely): give back ours, once
            logger.debug("out of descriptors opening %s: closing the %d open stream files", path, len(self._open))
            fd, size = await self._open_closing(self._evict(0), path, first)
        self._open[name] = _OpenFile(fd, path)
        self._seen.add(name)
        self.reopens += not first
        return size

    async def write(self, name: str, blobs: list[bytes]) -> None:
        """Append ``blobs`` to ``name``'s file, opened by :meth:`open` just before (OSError on failure:
        part of them may be in the file, see :meth:`truncate`)."""
        found = self._open[name]
        found.dirty = True
        await self._run_blocking(_write_all, found.fd, blobs)

    async def size(self, name: str) -> int | None:
        """The size of ``name``'s file now if it is open (after a failed :meth:`write`: how much of it got
        into the file), else None."""
        found = self._open.get(name)
        if found is None:
            return None
        try:
            return (await self._run_blocking(os.fstat, found.fd)).st_size
        except OSError:
            return None

    async def truncate(self, name: str, size: int) -> None:
        """Cut ``name``'s file back to ``size`` bytes after a failed :meth:`write`. The file is open: a
        write fails only after its :meth:`open` succeeded, with nothing evicted between (the run's writes
        run one at a time); a file that could not be opened was not written."""
        found = self._open.get(name)
        if found is not None:
            await self._run_blocking(os.ftruncate, found.fd, size)

    async def sync(self) -> None:
        """fsync every file written since its last fsync: the open ones (through duplicates, so an eviction
        meanwhile closes nothing under it) and the ones closed since (reopened by path); many at once on
        several threads."""
        targets: list[tuple[str, int | None, Path]] = []
        for name, entry in self._open.items():
            if entry.dirty:
                try:
                    targets.append((name, os.dup(entry.fd), entry.path))
                except OSError:  # out of descriptors: still dirty, so the next sync, or the close, covers it
                    continue
                entry.dirty = False
        closed, self._unsynced = self._unsynced, {}
        targets += [(name, None, path) for name, path in closed.items()]
        if not targets:
            return
        failed = await self._fan_out(functools.partial(_sync_files, fsync=self.fsync), targets)
        for name in failed:  # could not be reopened (out of descriptors): the next durable point tries again
            self._unsynced.setdefault(name, closed[name])

    async def close(self) -> None:
        """Close every open file, then fsync what no :meth:`sync` covered yet (after one, nothing: this is
        for a process out of descriptors, whose last sync could not duplicate them)."""
        await self._run_blocking(_close_all, [entry.fd for entry in self._evict(0)])
        if self._unsynced:
            await self.sync()

    def _evict(self, keep: int) -> list[_OpenFile]:
        """Take files out, least recently used first, until ``keep`` are open; those written since their
        last fsync are remembered for the next :meth:`sync`. The caller closes them."""
        evicted = []
        while len(self._open) > max(keep, 0):
            name, entry = self._open.popitem(last=False)
            if entry.dirty:
                self._unsynced[name] = entry.path
            evicted.append(entry)
        return evicted

    async def _open_closing(self, evicted: list[_OpenFile], path: Path, first: bool) -> tuple[int, int | None]:
        return await self._run_blocking(_close_then_open, [entry.fd for entry in evicted], path, first)


# -- worker threads -----------------------------------------------------------
def _close_then_open(closing: list[int], path: Path, first: bool) -> tuple[int, int | None]:
    """Close ``closing`` (descriptors first given back, then taken), then open ``path`` for appending;
    on its first open, end a torn last line and return the size too."""
    _close_all(closing)
    torn = first and ends_torn(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:  # a new stream: its directory first (a reopen needs no mkdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        if torn:  # a crash's half line: new records start on a line of their own
            _write_all(fd, [b"\n"])
        return fd, os.fstat(fd).st_size if first else None
    except BaseException:
        os.close(fd)
        raise


def _write_all(fd: int, blobs: list[bytes]) -> None:
    for blob in blobs:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]


def _sync_files(targets: Sequence[tuple[str, int | None, Path]], fsync: Callable[[int], None]) -> list[str]:
    """fsync each (name, descriptor, path): a duplicate descriptor is closed after, a file without one is
    reopened one at a time; returns the names of files that could not be reopened for want of descriptors."""
    failed = []
    for name, fd, path in targets:
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    failed.append(name)
                else:  # removed by hand: nothing of it to make durable
                    logger.debug("could not reopen %s to fsync it: %s", path, exc)
                continue
        try:
            fsync(fd)
        except OSError as exc:
            logger.debug("fsync of %s failed: %s", path, exc)
        finally:
            os.close(fd)
    return failed


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError as exc:  # written data is in the page cache (fsynced by path later, or counted already)
            logger.debug("closing a stream file failed: %s", exc)
