"""Fault matrix row 16 on network file systems: which file system a run is on, what its lock guarantees
there, and a clear refusal where locks do not work (mountinfo text stands in for real network mounts)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from ml_dash import Experiment, RunLockedError
from ml_dash._run import runlock
from ml_dash._run.mounts import Mount, lock_caveat, mount_of, mount_of_directory, parse_mountinfo

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
30 22 0:40 / /home rw,relatime shared:20 - nfs4 fs1:/export/home rw,vers=4.2,rsize=1048576,local_lock=none,addr=10.0.0.1
31 22 0:41 / /scratch rw,relatime - nfs fs2:/scratch rw,vers=3,nolock,local_lock=all,addr=10.0.0.2
32 22 0:42 / /mnt/team\\040share rw - cifs //srv/team rw,vers=3.1.1
33 22 0:43 / /mnt/remote rw,nosuid - fuse.sshfs me@host:/data rw,user_id=0
34 22 0:44 / /mnt/local-fuse rw - fuse.my-local-fs /dev/fuse rw
35 30 0:45 / /home/alice/fast rw - tmpfs tmpfs rw
36 22 0:46 / /home rw - ext4 /dev/sdb1 rw
this line is not a mount
"""


def _mount(path: str) -> Mount:
    found = mount_of(path, parse_mountinfo(MOUNTINFO))
    assert found is not None
    return found


def test_row16_the_run_directory_s_file_system_is_the_deepest_mount_above_it() -> None:
    assert _mount("/data/runs").fstype == "ext4" and _mount("/data/runs").mount_point == "/"
    assert _mount("/scratch/x/.dash/a/b/c").fstype == "nfs"
    assert _mount("/scratchy").fstype == "ext4"  # a name that starts like a mount point is not inside it
    assert _mount("/home/alice/fast/.dash").fstype == "tmpfs"
    assert _mount("/mnt/team share/run").fstype == "cifs"  # \040 is a space
    assert _mount("/home/bob").mount_point == "/home" and _mount("/home/bob").fstype == "ext4"  # mounted over


def test_row16_local_file_systems_need_no_caveat_network_ones_say_what_holds() -> None:
    assert lock_caveat(_mount("/data")) is None
    assert lock_caveat(_mount("/mnt/local-fuse/x")) is None
    shared = lock_caveat(_mount("/home/carol"))  # nfs4 mounted over by ext4: local
    assert shared is None
    nfs_with_locks = lock_caveat(parse_mountinfo(MOUNTINFO)[1])
    assert nfs_with_locks is not None and "NFS server's lock service" in nfs_with_locks
    local_only = lock_caveat(_mount("/scratch/run"))
    assert local_only is not None and "local_lock=all, nolock" in local_only
    assert "one on another machine is not" in local_only
    for path, fstype in [("/mnt/team share/r", "cifs"), ("/mnt/remote/r", "fuse.sshfs")]:
        caveat = lock_caveat(_mount(path))
        assert caveat is not None and fstype in caveat and "only if this file system shares its locks" in caveat


def test_row16_this_machine_s_mountinfo_is_read() -> None:
    mount = mount_of_directory(Path("/proc"))
    assert mount is not None and mount.fstype == "proc"


def test_row16_a_run_on_a_network_file_system_warns_once_what_the_lock_guarantees(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    nfs = Mount("/nfs-here", "nfs", frozenset({"rw", "nolock", "local_lock=all"}))
    monkeypatch.setattr(runlock, "mount_of_directory", lambda directory: nfs)  # no NFS mount in a test
    monkeypatch.setattr(runlock, "_warned_mounts", set())
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        for name in ("a/b/one", "a/b/two"):
            with Experiment(prefix=name).run:
                pass
    warnings = [r.getMessage() for r in caplog.records if "its locks are local to this machine" in r.getMessage()]
    assert len(warnings) == 1 and "/nfs-here" in warnings[0]


def test_row16_a_file_system_without_working_locks_refuses_the_run_naming_it(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    real_try_lock = runlock._try_lock
    monkeypatch.setattr(runlock, "_try_lock", no_locks)  # what an NFS mount without a lock service answers
    monkeypatch.setattr(runlock, "mount_of_directory", lambda directory: Mount("/nfs-here", "nfs", frozenset()))
    with pytest.raises(RunLockedError, match="cannot lock run directory .* on nfs .*No locks available") as refused:
        Experiment(prefix="a/b/c").run.start()
    assert "local_path" in str(refused.value) and not runlock._lock_fds  # nothing left open
    monkeypatch.setattr(runlock, "_try_lock", real_try_lock)
    with Experiment(prefix="a/b/c").run:  # nothing was held
        pass


def test_row16_sync_says_why_it_cannot_lock_a_run_rather_than_naming_a_writer(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import io

    from ml_dash.remote.sync import SyncOptions, sync_paths

    with Experiment(prefix="a/b/c").run:
        pass

    def no_locks(fd: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock, "_try_lock", no_locks)
    out = io.StringIO()
    options = SyncOptions(remote="http://127.0.0.1:9", api_key="k", user_name=None, timeout_s=1)  # never reached
    assert asyncio.run(sync_paths([workdir / ".dash"], options, out=out)) == 1
    assert "skipped: cannot lock run directory" in out.getvalue() and "No locks available" in out.getvalue()
    assert "pid ?" not in out.getvalue()
