"""Which file system a run directory is on, and what a lock taken there guarantees.

A lock on a local file system (ext4, xfs, btrfs, tmpfs, ...) is kept by the
one kernel every writer of the directory runs on: it refuses every second
writer. On a network file system the other writers may run on other
machines, and their kernels see a lock only if the file system carries it
through a lock service of its own:

* NFS carries locks through the server's lock service (NLM for v2/v3,
  the protocol itself for v4) unless mounted ``nolock`` or with
  ``local_lock=`` other than ``none``: then locks are local to each machine.
  A client that loses contact with the server for longer than its lease can
  lose its lock without being told.
* Other network and cluster file systems (CIFS/SMB, Lustre, GPFS, BeeGFS,
  CephFS, GlusterFS, 9p, FUSE file systems such as sshfs) differ by version
  and mount options, and some keep locks local to the machine.

So on any of them one writer per run holds among the processes of one
machine, and across machines only as far as the file system's locks reach.
The functions take the text of ``/proc/self/mountinfo`` so the rules can be
tested without a network mount.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: File system types whose files other machines can open at the same time (mountinfo's names).
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "9p", "ocfs2", "gfs2", "orangefs", "pvfs2", "davfs", "virtiofs",
})
#: FUSE subtypes (``fuse.<name>``) that reach other machines; an unlisted FUSE file system is local.
NETWORK_FUSE_TYPES = frozenset({
    "sshfs", "s3fs", "gcsfuse", "rclone", "glusterfs", "ceph-fuse", "juicefs", "beegfs", "davfs", "goofys",
    "mountpoint-s3", "blobfuse", "blobfuse2", "alluxio-fuse", "lizardfs", "moosefs", "mfs", "seaweedfs",
})


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of mountinfo: where it is mounted, its type, and its options (per mount and per file
    system together)."""

    mount_point: str
    fstype: str
    options: frozenset[str]

    @property
    def is_network(self) -> bool:
        if self.fstype.startswith("fuse."):
            return self.fstype[len("fuse."):] in NETWORK_FUSE_TYPES
        return self.fstype in NETWORK_TYPES


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts in the order of ``/proc/self/mountinfo`` (see proc(5)); lines it cannot read are
    skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 3:
            continue
        options = set(fields[5].split(","))
        if len(fields) > dash + 3:
            options.update(fields[dash + 3].split(","))
        mounts.append(Mount(_unescape(fields[4]), fields[dash + 1], frozenset(options)))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount that holds the absolute, resolved ``path``: the deepest mount point above it, the
    last one mounted where several share a point (it hides the others)."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = path == point or path.startswith(point if point == "/" else point + "/")
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


def lock_caveat(mount: Mount) -> str | None:
    """What one writer per run does and does not guarantee on ``mount``; None on a local file system,
    where it guarantees everything."""
    if not mount.is_network:
        return None
    where = f"{mount.fstype} (mounted at {mount.mount_point})"
    if mount.fstype in ("nfs", "nfs4"):
        local = {"nolock", "local_lock=all", "local_lock=posix", "local_lock=flock"} & mount.options
        if local:
            return (f"the run directory is on {where} with {', '.join(sorted(local))}: its locks are local to this "
                    "machine, so a second writer on this machine is refused but one on another machine is not. "
                    "Run each job under its own prefix, or log to a local disk (local_path=...).")
        return (f"the run directory is on {where}: the lock goes through the NFS server's lock service, so a "
                "second writer on another machine is refused while that service works; a client cut off from "
                "the server past its lease can lose the lock unnoticed. Run each job under its own prefix.")
    return (f"the run directory is on the network file system {where}: a second writer on this machine is "
            "refused, one on another machine only if this file system shares its locks between machines "
            "(it depends on its version and mount options). Run each job under its own prefix, or log to a "
            "local disk (local_path=...).")


def mount_of_directory(directory: Path) -> Mount | None:
    """The mount that holds ``directory`` on this machine; None where mountinfo cannot be read
    (not Linux)."""
    try:
        text = Path("/proc/self/mountinfo").read_text(errors="replace")
    except OSError:
        return None
    return mount_of(os.path.realpath(directory), parse_mountinfo(text))
