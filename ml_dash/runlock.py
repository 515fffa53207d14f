"""One writer per run directory: an OS lock on ``<run>/.ml-dash.lock``, held for the run's life.

The lock is a POSIX record lock (``fcntl.lockf``): the kernel releases it when
the holding process dies, ``kill -9`` included, and a forked child does not
inherit it (data-loader workers never keep a dead trainer's run locked).
Holders write who they are (pid, host, since when, prefix) into the file, so
a refused writer can say who holds it.

POSIX locks belong to the process, and closing *any* descriptor of the file
drops them: so this process opens each lock file at most once, through the
registry here, which also refuses a second writer inside the process (two
``Experiment`` objects on one directory). Nothing else opens the lock file.

Without ``fcntl`` (not POSIX) only the in-process rule holds.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from .agent.jsonlines import dumps, loads
from .agent.layout import LOCK_FILE
from .agent.rundir import utc_iso
from .errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_registry_lock = threading.Lock()
_held: dict[str, RunLock] = {}


def _forget_in_child() -> None:
    """A forked child holds none of its parent's locks (POSIX locks are not inherited): its registry
    starts empty, so it asks the kernel, which names the parent as the holder."""
    global _registry_lock
    _held.clear()
    _registry_lock = threading.Lock()  # it may have been held by another thread at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class RunLock:
    """A held run-directory lock; :meth:`release` (idempotent) or process exit lets it go."""

    def __init__(self, key: str, fd: int | None, holder: dict[str, Any]) -> None:
        self._key = key
        self._fd = fd
        self.holder = holder

    @classmethod
    def acquire(cls, directory: Path, prefix: str, purpose: str = "writes") -> RunLock:
        """Lock ``directory`` (created if needed) for this process, or raise :class:`RunLockedError`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(directory)
        holder = {"pid": os.getpid(), "hostname": socket.gethostname(), "since": utc_iso(), "prefix": prefix,
                  "purpose": purpose}
        with _registry_lock:
            mine = _held.get(key)
            if mine is not None:
                raise RunLockedError(_in_process_message(directory, mine.holder), mine.holder)
            fd = _lock_file(directory, key)
            lock = cls(key, fd, holder)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.pwrite(fd, dumps(holder), 0)
            _held[key] = lock
        return lock

    def release(self) -> None:
        """Let the directory go (the kernel does it anyway when the process ends); idempotent."""
        with _registry_lock:
            if _held.get(self._key) is not self:
                return
            del _held[self._key]
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)



def is_held(directory: Path) -> bool | None:
    """Whether a writer holds ``directory`` now, asked without taking the lock (a writer starting at
    that moment must not be refused because someone listed runs): this process's registry, then the
    kernel (``F_GETLK``). None when it cannot tell (not Linux)."""
    key = os.path.realpath(directory)
    # under the registry lock throughout: closing our descriptor would drop a lock this process took
    # on the file meanwhile
    with _registry_lock:
        if key in _held:
            return True
        if fcntl is None or not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
            return None
        try:
            fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:
            # struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
            query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        except OSError:
            return None
        finally:
            os.close(fd)  # this process holds no lock on the file (not in the registry): nothing is dropped
    return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK


def _lock_file(directory: Path, key: str) -> int | None:
    """Open and lock the lock file (registry lock held); RunLockedError naming the other holder."""
    if fcntl is None:
        return None
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):  # not "held": no locks here (ENOLCK on some NFS)
            os.close(fd)
            raise RunLockedError(f"cannot lock run directory {directory}: {exc}; one writer per run cannot be "
                                 "ensured on this filesystem") from None
        holder = _read_holder(fd)
        os.close(fd)  # this process holds no lock on the file, so closing it drops nothing
        raise RunLockedError(_other_process_message(directory, holder), holder) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = loads(os.pread(fd, 4096, 0) or b"{}")
    except Exception:  # noqa: BLE001  # being rewritten right now, or damaged: say what we can
        holder = {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('hostname', '?')} "
            f"(since {holder.get('since', '?')}, {holder.get('purpose', 'writes')} {holder.get('prefix', '?')})")


def _other_process_message(directory: Path, holder: dict[str, Any]) -> str:
    return (f"run directory {directory} is held by another process: {_describe(holder)}. One process writes a "
            "run at a time. Wait for it to end (or stop it), or log this run under another prefix or "
            "local_path; to add to that run later, start it again once the holder has ended.")


def _in_process_message(directory: Path, holder: dict[str, Any]) -> str:
    return (f"run directory {directory} is already being written by another Experiment of this process "
            f"({_describe(holder)}). Log through that Experiment, or end it first (exp.run.complete()).")
