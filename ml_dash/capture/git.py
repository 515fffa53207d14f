"""The git state of the working directory: commit, branch, remote, dirty flag and the diff.

Read with the ``git`` command (what the user's git would say, worktrees and submodules included),
each call with a timeout and without prompts or optional locks (``GIT_OPTIONAL_LOCKS=0``: a
``git status`` of ours never holds ``index.lock`` while the user commits). No git, no repository,
or a call that fails or times out: that part is left out, silently (one debug line).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger("ml_dash.capture")

#: The longest one git command may take (a huge repository on a network file system).
GIT_TIMEOUT_S = 5.0
#: The longest diff kept (as the run's file ``provenance/diff.patch``); a longer one is cut, and says so.
MAX_DIFF_BYTES = 1024 * 1024


def git_state(cwd: Path, timeout_s: float = GIT_TIMEOUT_S, max_diff_bytes: int = MAX_DIFF_BYTES,
              ) -> tuple[dict[str, Any], bytes | None] | None:
    """``(fields, diff)`` of the repository holding ``cwd``, or None when there is none (or no git).

    ``fields``: ``root``, ``commit``, ``branch`` (None when detached), ``remote`` (``origin``'s URL, or
    the first remote's, credentials stripped), ``dirty`` (a tracked file changed, staged or not),
    ``untracked_files`` (their count), and with a diff
    ``diff_bytes`` and ``diff_truncated``. ``diff``: ``git diff HEAD`` (staged and unstaged changes of
    tracked files; untracked files are counted, not included), None when the tree is clean.
    """
    root = _git(cwd, timeout_s, "rev-parse", "--show-toplevel")
    if root is None:
        return None
    fields: dict[str, Any] = {"root": root.decode(errors="replace").strip()}
    commit = _git(cwd, timeout_s, "rev-parse", "--verify", "--quiet", "HEAD")
    fields["commit"] = commit.decode().strip() if commit else None  # None: a repository with no commit yet
    branch = _git(cwd, timeout_s, "symbolic-ref", "--quiet", "--short", "HEAD")
    fields["branch"] = branch.decode(errors="replace").strip() if branch else None
    fields["remote"] = _remote(cwd, timeout_s)
    status = _git(cwd, timeout_s, "status", "--porcelain", "--untracked-files=normal")
    diff = None
    if status is not None:
        entries = status.decode(errors="replace").splitlines()
        # dirty as ``git describe --dirty`` says it: tracked files changed. Untracked files are counted
        # apart: the run's own .dash/ is one whenever the repository does not ignore it
        fields["dirty"] = any(not e.startswith("??") for e in entries)
        fields["untracked_files"] = sum(1 for e in entries if e.startswith("??"))
        if fields["dirty"]:
            diff, truncated = _diff(cwd, timeout_s, max_diff_bytes, fields["commit"] is not None)
            if diff is not None:
                fields["diff_bytes"], fields["diff_truncated"] = len(diff), truncated
    return fields, diff


def strip_credentials(url: str) -> str:
    """``url`` without what could be a secret: the user and password of a URL (a token is often given as
    the user: ``https://ghp_x@github.com/...``), its query and fragment. An scp-like address
    (``git@host:path``) names an SSH user, never a secret, and is kept."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _remote(cwd: Path, timeout_s: float) -> str | None:
    names = _git(cwd, timeout_s, "remote")
    if not names:
        return None
    listed = names.decode(errors="replace").split()
    name = "origin" if "origin" in listed else listed[0]
    url = _git(cwd, timeout_s, "remote", "get-url", name)
    return strip_credentials(url.decode(errors="replace").strip()) if url else None


def _diff(cwd: Path, timeout_s: float, max_bytes: int, has_commit: bool) -> tuple[bytes | None, bool]:
    args = ["diff", "--no-color", "--no-ext-diff", "--no-textconv"] + (["HEAD"] if has_commit else ["--cached"])
    out = _git(cwd, timeout_s, *args, max_bytes=max_bytes + 1)
    if out is None:
        return None, False
    if len(out) > max_bytes:
        return out[:max_bytes], True
    return out, False


def _git(cwd: Path, timeout_s: float, *args: str, max_bytes: int = 64 * 1024) -> bytes | None:
    """git's output (at most ``max_bytes``: the rest is never read into memory), or None when it
    failed, timed out or is not installed."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.Popen(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)
    except OSError as exc:  # no git on this machine
        logger.debug("ml-dash: no git state: %s", exc)
        return None
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read(max_bytes)
        if len(out) == max_bytes:
            proc.kill()  # the rest is not wanted: git stops instead of filling a pipe nobody reads
        proc.stdout.close()
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0 and len(out) < max_bytes:
        logger.debug("ml-dash: git %s exited %s", args[0], code)
        return None
    return out
