"""Where a run came from: recorded once, at its start, in ``metadata["provenance"]`` of the run.

``provenance`` (experiment.json's ``metadata``, so it is uploaded, synced and pulled with the run)::

    {"git": {"root", "commit", "branch", "remote", "dirty", "untracked_files", "diff_file",
             "diff_bytes", "diff_truncated"},                      # absent outside a repository
     "command": [...], "executable", "cwd",
     "python": {"version", "implementation"}, "platform", "machine", "hostname", "cpu_count",
     "gpus": [names], "nvidia_driver", "cuda_driver",              # when NVML sees GPUs
     "torch": {"version", "cuda"},                                 # when torch is installed
     "packages_file": "provenance/requirements.txt", "packages": <count>, "ml_dash": <version>}

and the run's files ``provenance/diff.patch`` (when the tree is dirty) and
``provenance/requirements.txt`` (``name==version`` of every installed distribution).

Never recorded: the environment's values (they hold keys and tokens), and the values of command-line
options whose name says they are secret (``--api-key x``, ``--password=x``: kept as ``<hidden>``).
torch is never imported for this: its version and CUDA build are read from the module when the
script imported it, else only its version, from the installed distribution's metadata.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import sys
from pathlib import Path
from typing import Any

from .._version import __version__
from .git import git_state

#: Where the files of the provenance go in the run.
FILES_PREFIX = "provenance"
DIFF_FILE = "diff.patch"
PACKAGES_FILE = "requirements.txt"

# an option named like a secret: its value (``--token=x`` or the next argument) is hidden
_SECRET_OPTION = re.compile(r"^--?[\w.-]*(key|token|secret|passw(or)?d|credential|auth)[\w.-]*$", re.IGNORECASE)
HIDDEN = "<hidden>"


def collect(cwd: Path, gpus: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(provenance, files)``: the record and the files to save with the run (name -> content)."""
    record: dict[str, Any] = {
        "command": redact_argv(sys.argv), "executable": sys.executable, "cwd": str(cwd),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "platform": platform.platform(), "machine": platform.machine(), "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(), "ml_dash": __version__,
    }
    files: dict[str, bytes] = {}
    git = git_state(cwd)
    if git is not None:
        fields, diff = git
        if diff is not None:
            files[DIFF_FILE] = diff
            fields["diff_file"] = f"{FILES_PREFIX}/{DIFF_FILE}"
        record["git"] = fields
    if gpus:
        record.update(gpus)
    torch = _torch()
    if torch:
        record["torch"] = torch
    packages = installed_packages()
    files[PACKAGES_FILE] = "".join(f"{p}\n" for p in packages).encode()
    record["packages_file"], record["packages"] = f"{FILES_PREFIX}/{PACKAGES_FILE}", len(packages)
    return record, files


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with the values of secret-named options replaced by ``<hidden>``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(HIDDEN)
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            if eq:
                out.append(f"{name}={HIDDEN}")
                continue
            hide_next = True
        out.append(arg)
    return out


def installed_packages() -> list[str]:
    """``name==version`` of each installed distribution, sorted, the first found of each name (as
    Python's import system would)."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist)
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={version}"
    return [seen[k] for k in sorted(seen)]


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """The ``Name`` and ``Version`` headers of a distribution's metadata, read from its first lines:
    ``dist.metadata`` parses the whole file as an e-mail (long descriptions included), ten times the
    cost over a typical environment, paid at every run's start."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.splitlines():
        if not line:  # the headers end at the first empty line; the description follows
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version


def _torch() -> dict[str, Any] | None:
    torch = sys.modules.get("torch")
    if torch is not None:  # imported by the script: reading attributes costs nothing and initialises nothing
        version = getattr(torch, "version", None)
        return {"version": str(getattr(torch, "__version__", "")), "cuda": getattr(version, "cuda", None)}
    try:
        return {"version": importlib.metadata.version("torch")}
    except importlib.metadata.PackageNotFoundError:
        return None
