"""One writer per run directory: an OS lock on ``<run>/.ml-dash.lock``, held for the run's life.

The lock belongs to the open file description of the lock file, not to the
process: an open-file-description lock (``F_OFD_SETLK``) on Linux, ``flock``
where those are missing (macOS, Linux before 3.15). So nothing the holder does
with the files of its directory drops it: reading, copying (``shutil.copytree``),
archiving (``tarfile``), ``os.walk`` and open. (A POSIX ``lockf`` lock, used
before, went away at the first close of *any* descriptor of the file in the
process, and a second writer then wrote every index again.) The kernel releases
it when the last descriptor of that description closes: when the process ends,
``kill -9`` included.

OFD locks rather than ``flock`` on Linux because they conflict with POSIX locks:
an older ml-dash, which locks with ``lockf``, and this one still exclude each
other, and :func:`is_held` can ask the kernel without taking the lock.

A forked child inherits the descriptor and, through it, the lock: a data-loader
worker living on after its trainer was killed would keep the run locked. So a
child closes its copies at once (``os.register_at_fork``; closing a copy releases
nothing while the parent keeps its own), and ``O_CLOEXEC`` closes them at exec.
A process forked by C code that skips Python's fork hooks and never execs keeps
the copy until it exits; releasing unlocks explicitly, so the parent can still
let go of a run.

A holder checks its lock file on each durable pass (about every second) and
locks the file at the path again when it was deleted or replaced. Until it
does, nothing is locked: so whoever concludes "no writer is left" from "not
locked" (``ml-dash ls`` and the local UI showing a RUNNING run as CRASHED,
``ml-dash sync`` marking it so, a second writer starting) asks
:func:`writer_alive`, or :meth:`RunLock.acquire` waits, for up to
:data:`RELOCK_WAIT_S` when the file is missing or has just changed and the
writer the run names may be alive. A writer of this host that has ended is
known at once (its pid is gone), so a crashed run is still said promptly.

Holders write who they are (pid, host, since when, prefix) into the file, so a
refused writer can say who holds it. An in-process registry refuses a second
writer inside the process (two ``Experiment`` objects on one directory) before
the kernel is asked. Network file systems: see :mod:`ml_dash._run.mounts`; a lock
call that fails there (``ENOLCK``) refuses the run, and a lock taken there warns
once what it guarantees. Without ``fcntl`` (not POSIX) only the in-process rule
holds.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import RunLockedError
from ..format.jsonlines import dumps, loads, read_json
from ..format.layout import EXPERIMENT, LOCK_FILE
from ..format.vocabulary import utc_iso
from .mounts import Mount, lock_caveat, mount_of_directory

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("ml_dash")

#: struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
#: (0 for OFD locks), padding. The whole file (start 0, length 0).
_FLOCK_LAYOUT = "hhqqi4x"
#: OFD locks where their struct layout is known; cleared when the kernel turns them down (EINVAL, before 3.15).
_ofd = fcntl is not None and sys.platform.startswith("linux") and struct.calcsize("P") == 8 and hasattr(
    fcntl, "F_OFD_SETLK")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: errnos of "someone else holds it"; anything else means the file system has no working locks
_HELD_ERRNOS = frozenset({errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK})
#: How long a lock file missing or changed moments ago is watched for its holder to lock it again: the holder
#: does so on its next durable pass (``ML_DASH_FSYNC_INTERVAL_S``, 1 s by default), a loaded machine later.
RELOCK_WAIT_S = 3.0
_RELOCK_POLL_S = 0.05

_registry_lock = threading.Lock()
_held: dict[str, RunLock] = {}
#: Every descriptor of a lock file this process has open for a lock (held or being taken); a forked child
#: closes them. The guard keeps a fork from falling between the open and the record of it.
_lock_fds: set[int] = set()
_fork_guard = threading.Lock()
_warned_mounts: set[str] = set()


def _before_fork() -> None:
    _fork_guard.acquire()


def _after_fork_in_parent() -> None:
    _fork_guard.release()


def _forget_in_child() -> None:
    """A forked child holds none of its parent's locks: it closes its copies of the lock files'
    descriptors (the parent's lock stays), and its registry starts empty, so it asks the kernel, which
    names the parent as the holder."""
    global _registry_lock, _fork_guard
    for fd in _lock_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    _lock_fds.clear()
    for lock in _held.values():
        lock._fd = None
    _held.clear()
    _registry_lock = threading.Lock()  # it may have been held by another thread at the fork
    _fork_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_forget_in_child)


class RunLock:
    """A held run-directory lock; :meth:`release` (idempotent) or process exit lets it go."""

    def __init__(self, key: str, fd: int | None, holder: dict[str, Any], directory: Path | None = None) -> None:
        self._key = key
        self._fd = fd
        self.holder = holder
        self._directory = directory
        #: times the lock file was found deleted or replaced while held (each one re-locked or lost)
        self.relocked = 0
        #: times another writer was found holding the file that now stands at the lock's path
        self.lost_to_another = 0
        self._lost_file: tuple[int, int] | None = None  # the file another writer holds (said once per file)

    @classmethod
    def acquire(cls, directory: Path, prefix: str, purpose: str = "writes") -> RunLock:
        """Lock ``directory`` (created if needed) for this process, or raise :class:`RunLockedError`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(directory)
        holder = {"pid": os.getpid(), "hostname": socket.gethostname(), "since": utc_iso(), "prefix": prefix,
                  "purpose": purpose}
        _await_relock(directory)  # else, in that window, the run's living writer would be refused its own run
        with _registry_lock:
            mine = _held.get(key)
            if mine is not None:
                raise RunLockedError(_in_process_message(directory, mine.holder), mine.holder)
            fd = _lock_file(directory)
            lock = cls(key, fd, holder, directory)
            if fd is not None:
                _record_holder(fd, holder)
            _held[key] = lock
        _warn_once_on_network_fs(directory)
        return lock

    def release(self) -> None:
        """Let the directory go (the kernel does it anyway when the process ends); idempotent."""
        with _registry_lock:
            if _held.get(self._key) is not self:
                return
            del _held[self._key]
            fd, self._fd = self._fd, None
        if fd is not None:
            _unlock(fd)  # explicitly: a copy in a child forked past the hooks must not keep it
            _close(fd)

    def verify(self) -> None:
        """Make sure the file at the lock's path is the one locked (called on the agent's durable pass,
        about every second, and at the run's end). A lock file deleted, or replaced by a rename (a restore
        from a backup, ``tar x`` into the run, a cleanup of dotfiles), leaves this lock on an orphan inode
        that no second writer sees: the file now at the path is locked again (created if missing). If
        another writer got it first, two processes write the run: said loudly, and counted."""
        with _registry_lock:
            fd, directory = self._fd, self._directory
            if fd is None or directory is None or _held.get(self._key) is not self:
                return
            path = directory / LOCK_FILE
            try:
                mine = os.fstat(fd)
                there: os.stat_result | None = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                there = None
            except OSError:  # the directory itself is gone or unreadable: nothing to re-lock
                return
            if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                return
            what = "deleted" if there is None else "replaced"
            try:
                new_fd = _lock_file(directory)
            except RunLockedError as exc:
                self._report_lost(path, what, there, exc)
                return
            if new_fd is None:
                return
            _record_holder(new_fd, self.holder)
            self._fd = new_fd
            self.relocked += 1
            self._lost_file = None
        _unlock(fd)
        _close(fd)
        logger.warning("ml-dash: the lock file %s of the running run %s was %s while the run held it; "
                       "locked again (a second writer is refused again)", path, self.holder.get("prefix"), what)

    def _report_lost(self, path: Path, what: str, there: os.stat_result | None, exc: RunLockedError) -> None:
        """Another writer holds the file now at the lock's path (registry lock held): say so once per file."""
        key = (there.st_dev, there.st_ino) if there is not None else (0, 0)
        if key == self._lost_file:
            return  # said already; retried each pass, so the lock comes back once the other one ends
        self._lost_file = key
        self.lost_to_another += 1
        if exc.holder:
            logger.error("ml-dash: TWO WRITERS NOW WRITE run %s (%s): its lock file %s was %s while this "
                         "process (pid %d) held it, and another writer locked the new file: %s. Their rows "
                         "interleave and indices repeat; stop one of them.", self.holder.get("prefix"),
                         self._directory, path, what, os.getpid(), _describe(exc.holder))
        else:
            logger.error("ml-dash: run %s (%s) is no longer protected from a second writer: its lock file %s "
                         "was %s while this process (pid %d) held it, and the file now there cannot be locked: "
                         "%s", self.holder.get("prefix"), self._directory, path, what, os.getpid(), exc)

    def stats(self) -> dict[str, int]:
        """``relocked`` (lock file deleted or replaced, and locked again) and ``lost_to_another`` (another
        writer held the new file: two writers)."""
        return {"relocked": self.relocked, "lost_to_another": self.lost_to_another}


def is_held(directory: Path) -> bool | None:
    """Whether a writer holds ``directory`` now, asked without taking the lock (a writer starting at
    that moment must not be refused because someone listed runs): this process's registry, then the
    kernel (``F_OFD_GETLK``, which also sees an older ml-dash's ``lockf``). None when it cannot tell
    (no OFD locks: ``flock`` has no query)."""
    with _registry_lock:
        if os.path.realpath(directory) in _held:
            return True
    if not _ofd:
        return None
    try:
        # not following a symlink, not waiting on a FIFO planted at the path (`ml-dash ls` would hang)
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC | _O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False  # not a lock file ml-dash made: no writer can hold it
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock_struct(fcntl.F_WRLCK))
    except OSError:
        return None
    finally:
        os.close(fd)  # a lock belongs to its open file description: closing this one drops none
    return struct.unpack(_FLOCK_LAYOUT, answer)[0] != fcntl.F_UNLCK


def writer_alive(directory: Path, recorded: dict[str, Any]) -> bool | None:
    """Whether a writer still holds ``directory``, as :func:`is_held` says, except that a lock file deleted or
    replaced moments ago is watched for up to :data:`RELOCK_WAIT_S` while the writer ``recorded`` (the pid and
    hostname of the run's experiment.json) may be alive: its holder locks the new file within a second. False
    at once for a writer of this host whose process has ended. None when it cannot tell."""
    held = is_held(directory)
    if held is not False or not _in_relock_window(directory, recorded):
        return held
    deadline = time.monotonic() + RELOCK_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(_RELOCK_POLL_S)
        held = is_held(directory)
        if held is not False or not _may_be_alive(recorded):
            return held
    return False


def _in_relock_window(directory: Path, recorded: dict[str, Any]) -> bool:
    """Whether a living holder may be about to lock the file again: the file is missing or changed less than
    :data:`RELOCK_WAIT_S` ago (a rename or a restore sets its ctime), and the recorded writer may be alive
    (another process than this one, which its registry answers for)."""
    if recorded.get("pid") == os.getpid() and recorded.get("hostname") == socket.gethostname():
        return False
    if not _may_be_alive(recorded):
        return False
    try:
        changed = os.stat(directory / LOCK_FILE, follow_symlinks=False).st_ctime
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return time.time() - changed < RELOCK_WAIT_S


def _await_relock(directory: Path) -> None:
    """Before locking: when the run says RUNNING and its lock file is in the window, wait for the holder to
    lock it again (the lock call then names it), so that neither a second writer nor ``ml-dash sync`` takes
    a living run for a crashed one."""
    doc = read_json(directory / EXPERIMENT)
    if isinstance(doc, dict) and doc.get("status") == "RUNNING" and isinstance(doc.get("pid"), int):
        writer_alive(directory, doc)


def _flock_struct(kind: int) -> bytes:
    return struct.pack(_FLOCK_LAYOUT, kind, os.SEEK_SET, 0, 0, 0)


def _lock_file(directory: Path) -> int | None:
    """Open and lock the lock file (registry lock held); RunLockedError naming the other holder."""
    if fcntl is None:
        return None
    path = directory / LOCK_FILE
    with _fork_guard:
        try:
            # O_NOFOLLOW: a symlink planted at the path would have us truncate and write its target;
            # O_NONBLOCK: opening a FIFO planted there must not hang (regular files ignore it). 0600: an
            # account that can read a run could otherwise hold a read lock on the file and keep it from starting.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | _O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise _open_failure(path, exc) from exc
        _lock_fds.add(fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunLockedError(f"cannot lock run directory {directory}: its lock file {path} is not a regular "
                                 "file. Remove it (ml-dash creates the file itself) and start again.")
        _try_lock(fd)
    except OSError as exc:
        if exc.errno not in _HELD_ERRNOS:  # not "held": no working locks here (ENOLCK on some NFS)
            _close(fd)
            raise RunLockedError(_no_locks_message(directory, exc)) from None
        holder = _read_holder(fd)
        _close(fd)
        raise RunLockedError(_refusal_message(directory, holder), holder) from None
    except BaseException:
        _close(fd)
        raise
    return fd


def _open_failure(path: Path, exc: OSError) -> Exception:
    """The error for a lock file that cannot be opened: a symlink or directory at its path is refused
    by name; anything else (a full disk, no permission) keeps its errno and gains the path."""
    if exc.errno in (errno.ELOOP, errno.EISDIR) or (exc.errno == errno.ENXIO and path.is_fifo()):
        kind = "a symbolic link" if path.is_symlink() else "not a regular file"
        return RunLockedError(f"cannot lock run directory {path.parent}: its lock file {path} is {kind}, which "
                              "ml-dash refuses to open (it would write through it). Remove it and start again.")
    return OSError(exc.errno, f"cannot open the lock file of run directory {path.parent}: "
                              f"{exc.strerror or exc}", str(path))


def _try_lock(fd: int) -> None:
    """Take the lock without waiting; OSError (EAGAIN) when it is held."""
    global _ofd
    if _ofd:
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK))
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _ofd = False  # a kernel without OFD locks: flock, which is also the description's
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    try:
        if _ofd:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_UNLCK))
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:  # (a network file system gone away) closing the descriptor lets it go as well
        logger.debug("ml-dash: could not unlock a run directory", exc_info=True)


def _close(fd: int) -> None:
    _lock_fds.discard(fd)
    os.close(fd)


def _warn_once_on_network_fs(directory: Path) -> None:
    """Say once per mount what one writer per run guarantees on a network file system."""
    mount = _mount(directory)
    caveat = lock_caveat(mount) if mount is not None else None
    if caveat is None or mount is None or mount.mount_point in _warned_mounts:
        return
    _warned_mounts.add(mount.mount_point)
    logger.warning("ml-dash: %s", caveat)


def _mount(directory: Path) -> Mount | None:
    try:
        return mount_of_directory(directory)
    except Exception:  # only a warning depends on it: never keep a run from starting
        logger.debug("ml-dash: could not tell the file system of %s", directory, exc_info=True)
        return None


def _record_holder(fd: int, holder: dict[str, Any]) -> None:
    """Write who holds the lock, for a refused writer to name. Only messages depend on it: on a full disk
    the lock is kept without it (raising here would leave the descriptor, and the lock, behind)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, dumps(holder), 0)
    except OSError:
        logger.debug("ml-dash: could not record the holder of a run directory lock", exc_info=True)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = loads(os.pread(fd, 4096, 0) or b"{}")
    except Exception:  # noqa: BLE001  # being rewritten right now, or damaged: say what we can
        holder = {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('hostname', '?')} "
            f"(since {holder.get('since', '?')}, {holder.get('purpose', 'writes')} {holder.get('prefix', '?')})")


def _refusal_message(directory: Path, holder: dict[str, Any]) -> str:
    if holder.get("pid") == os.getpid() and holder.get("hostname") == socket.gethostname():
        # the kernel refused this very process: the same directory reached by another path (a bind mount)
        return _in_process_message(directory, holder)
    if not _may_be_alive(holder):
        return (f"run directory {directory} is locked, but not by the writer its lock file names "
                f"({_describe(holder)}, which has ended): another process holds a lock on {directory / LOCK_FILE} "
                "(another account that can read it, a backup or sync tool; `fuser -v` or `lsof` on the file "
                "names it). Stop that process, or log this run under another prefix or local_path.")
    return (f"run directory {directory} is held by another process: {_describe(holder)}. One process writes a "
            "run at a time. Wait for it to end (or stop it), or log this run under another prefix or "
            "local_path; to add to that run later, start it again once the holder has ended.")


def _may_be_alive(holder: dict[str, Any]) -> bool:
    """False only when the recorded holder surely has ended: a process of this host that no longer
    exists. A holder on another host, or one we may not signal, may be alive."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True  # no record (not written yet, or a full disk): nothing to say it has ended
    if holder.get("hostname") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another account
        return True
    return True


def _in_process_message(directory: Path, holder: dict[str, Any]) -> str:
    return (f"run directory {directory} is already being written by another Experiment of this process "
            f"({_describe(holder)}). Log through that Experiment, or end it first (exp.run.complete()); it "
            "is referenced while any of its handles is (exp.metrics(...), exp.logs, exp.params, exp.files).")


def _no_locks_message(directory: Path, exc: OSError) -> str:
    mount = _mount(directory)
    where = f" on {mount.fstype} (mounted at {mount.mount_point})" if mount is not None else ""
    return (f"cannot lock run directory {directory}{where}: {exc.strerror or exc}. One writer per run cannot be "
            "ensured on a file system without working locks (an NFS mount whose lock service does not answer), "
            "so the run is not started: log to a local disk (local_path=...), or have the file system's locks "
            "fixed (for NFS: rpc.statd/lockd running, or mount with local_lock=all if only this machine writes).")
