"""Where ``ml-dash ui`` leaves the URL it printed (its token in it), so that it can be found again once
the terminal has scrolled or closed, or read by a script: like Jupyter's runtime files.

``$XDG_RUNTIME_DIR/ml-dash/ui-<port>.url`` (a per-user directory on this machine), or, where that is
not set (a batch job's shell, say), ``~/.local/share/ml-dash/runtime/<host>/ui-<port>.url`` (home
directories are often shared by a cluster's machines: the host keeps their ports apart). One line,
the URL. The directory is made ``0700`` and the file ``0600``: only this account reads them. The
file is removed when the UI stops; one left by a killed UI is overwritten by the next on its port.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def runtime_dir() -> Path:
    """This account's directory of URL files on this machine."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "ml-dash"
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return Path.home() / ".local" / "share" / "ml-dash" / "runtime" / host


def write_url_file(port: int, url: str) -> Path:
    """Write ``url`` to this port's file, readable by this account only; OSError when it cannot."""
    directory = runtime_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if directory.stat().st_uid != os.geteuid():  # someone else's: what we write there is not ours to guard
        raise PermissionError(f"{directory} belongs to another account")
    directory.chmod(0o700)
    path = directory / f"ui-{port}.url"
    # O_NOFOLLOW: a symbolic link left in its place is refused, not written through
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file left by an earlier UI keeps its mode through O_CREAT
        os.write(fd, (url + "\n").encode())
    finally:
        os.close(fd)
    return path


def remove_url_file(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # removed already, or its directory went: nothing is left to guard
        pass
