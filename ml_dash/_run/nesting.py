"""A run directory never lies inside another run's directory.

Seen: a user copied ``local_path=".dash/owner/my-project/my-experiment"`` and changed only the prefix;
``local_path`` was then a root, and the new run went silently into
``.dash/owner/my-project/my-experiment/owner/my-project/second-try/``, inside the old run, where no
reader looks for it (``ml-dash ls`` walks no run's folders) and ``ml-dash check`` says ok. So a start
whose directory lies below an existing run is refused, naming the run and what to write instead.

An ancestor counts as a run only when its ``experiment.json`` is a run document whose prefix the
ancestor's path ends with: a project's own ``experiment.json`` (another tool's config) above ``.dash``
is not mistaken for one.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..errors import ConfigurationError
from ..format import layout
from ..format.jsonlines import read_json


def enclosing_run(directory: Path) -> tuple[Path, str] | None:
    """The nearest ancestor of ``directory`` (not itself) that is a run directory, with its prefix."""
    for ancestor in Path(os.path.abspath(directory)).parents:
        marker = ancestor / layout.EXPERIMENT
        if not marker.is_file():
            continue
        document = read_json(marker)
        prefix = document.get("prefix") if isinstance(document, dict) else None
        if isinstance(prefix, str) and ancestor.parts[-len(prefix.split("/")):] == tuple(prefix.split("/")):
            return ancestor, prefix
    return None


def check_not_inside_a_run(directory: Path, prefix: str, option: str = "local_path") -> None:
    """ConfigurationError when the run ``prefix`` would be written inside another run's directory; the message
    names the value of ``option`` (``local_path``, or ``ml-dash pull``'s ``--to``) to write instead."""
    found = enclosing_run(directory)
    if found is None:
        return
    run_dir, other = found
    root = run_dir.parents[len(other.split("/")) - 1]
    where = os.path.relpath(root) if root.is_relative_to(Path.cwd()) else str(root)
    instead = (f"{option}={where!r}" if option == "local_path" else f"{option} {shlex.quote(where)}")
    default = ", or leave local_path out (runs go to .dash/<prefix>)" if option == "local_path" else ""
    raise ConfigurationError(
        f"{directory} lies inside the directory of the run {other!r} ({run_dir}), where no reader would find "
        f"it. Give the runs' root instead: {instead} (the run then goes to {root / prefix}){default}")
