"""The one line a run prints when it starts: where it goes and how to look at it.

W&B prints "View run at URL" and trackio "View dashboard by running: trackio show"; a run that
printed nothing left a new user not knowing where it went. So a run says it once, on stderr (stdout
stays the script's), at its start, when the user can still open it while it trains::

    ml-dash: logging alice/my-project/first-run to .dash/alice/my-project/first-run (view it: ml-dash ui)
    ml-dash: logging alice/my-project/first-run to http://host:8080/?run=alice/my-project/first-run (a copy in ...)

``Experiment(quiet=True)`` or ``ML_DASH_QUIET=1`` silences it (for scripts that start many runs).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ENV_QUIET = "ML_DASH_QUIET"
_TRUE = frozenset({"1", "true", "yes", "on"})

#: The directory ``ml-dash ui`` and ``ml-dash ls`` read when given none (ml_dash/cli).
DEFAULT_ROOT = ".dash"


def quiet(explicit: bool | None) -> bool:
    """``explicit`` when given, else whether ``ML_DASH_QUIET`` is set to 1/true/yes/on."""
    if explicit is not None:
        return bool(explicit)
    return os.environ.get(ENV_QUIET, "").strip().lower() in _TRUE


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (what a user would type)."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):  # no working directory any more
        return str(path)


def where_line(prefix: str, directory: Path, remote: str | None) -> str:
    """The line that says where the run ``prefix`` goes and how to view it."""
    shown = _shown(directory)
    if remote is not None:
        return f"ml-dash: logging {prefix} to {remote.rstrip('/')}/?run={prefix} (a copy in {shown})"
    root = directory.parents[len(prefix.split("/")) - 1]  # the directory that holds owner/project/name
    command = "ml-dash ui" if _shown(root) == DEFAULT_ROOT else f"ml-dash ui {shlex.quote(_shown(root))}"
    return f"ml-dash: logging {prefix} to {shown} (view it: {command})"


def announce(prefix: str, directory: Path, remote: str | None) -> None:
    """Print :func:`where_line` on stderr; a closed or broken stderr never stops a run."""
    stream = sys.stderr
    if stream is None:  # pythonw; and print(file=None) would write to stdout, which is the script's
        return
    try:
        print(where_line(prefix, directory, remote), file=stream, flush=True)
    except (OSError, ValueError):  # stderr closed
        pass
