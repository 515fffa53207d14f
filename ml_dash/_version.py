"""The package's version, and which ``ml-dash`` distribution the environment holds: ours or PyPI's.

One place for the version, read by setuptools (pyproject's dynamic version) and by the code.

The name ``ml-dash`` on PyPI belongs to the public upstream project (0.11.0 when this was written), whose
files this one reads and writes; this one is installed from its repository. Both install the package
``ml_dash``. So that pip never takes upstream's for a newer release of ours, our version carries the epoch
``1!`` (PEP 440): it ranks above every version without one, so ``pip install -U ml-dash`` and
``pip install "ml-dash[s3]"`` keep this one where it is installed, and a requirement ``ml-dash`` is
satisfied by it. (A distribution name of our own would not help: pip would then install upstream *beside*
it, into the same ``ml_dash`` folder, each overwriting the other's files.)

One way to mix them is left: a checkout of this project imported (from the working directory or
``PYTHONPATH``) in an environment where upstream's ``ml-dash`` is installed; then ``pip`` and the
``ml-dash`` command are upstream's while ``import ml_dash`` is ours. :func:`check_distribution` names that
at import, with the command that fixes it. It reads the first ``ml_dash`` metadata folder in the
``site-packages`` (or ``dist-packages``) folders of ``sys.path``, where pip installs, without importing
``importlib.metadata`` (~30 ms) and without listing the working directory (which may hold a million files).
"""

from __future__ import annotations

import os
import re
import sys
import warnings

__version__ = "1!0.1.0"

#: What our versions start with; upstream's never do.
EPOCH = "1!"

_METADATA_DIR = re.compile(r"^ml[-_.]dash(-[^-]+)?\.(dist-info|egg-info)$", re.IGNORECASE)
_METADATA_FILES = {"dist-info": "METADATA", "egg-info": "PKG-INFO"}


def installed_version(path: list[str] | None = None) -> str | None:
    """The version of the first ``ml-dash`` distribution installed in a ``site-packages`` folder of ``path``
    (default ``sys.path``), None if none."""
    for entry in sys.path if path is None else path:
        if os.path.basename(os.path.normpath(entry or ".")) not in ("site-packages", "dist-packages"):
            continue
        try:
            names = os.listdir(entry)
        except OSError:  # a zip file, a missing folder
            continue
        for name in sorted(names):
            match = _METADATA_DIR.match(name)
            if match is None:
                continue
            version = _read_version(os.path.join(entry, name, _METADATA_FILES[match.group(2).lower()]))
            if version is not None:
                return version
    return None


def _read_version(metadata: str) -> str | None:
    try:
        with open(metadata, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():  # the headers end at the first blank line
                    break
    except OSError:
        pass
    return None


def conflict_message(installed: str) -> str:
    """What :func:`check_distribution` says when the installed ``ml-dash`` is upstream's ``installed``."""
    here = os.path.dirname(os.path.abspath(__file__))
    return (f"ml_dash is imported from {here} (this project, version {__version__}), but the `ml-dash` "
            f"distribution installed in this environment is {installed}: PyPI's upstream project of the same "
            "name, a different package. `pip` and the `ml-dash` command are that one's. Install this project "
            f"over it: pip install -e {os.path.dirname(here)} (or pip install \"ml-dash @ git+<its repository's "
            "URL>\").")


def check_distribution(path: list[str] | None = None) -> str | None:
    """Warn (RuntimeWarning) when the installed ``ml-dash`` is not ours; the message, or None when all is well."""
    installed = installed_version(path)
    if installed is None or installed.startswith(EPOCH):
        return None  # not installed (a checkout on the path), or ours
    message = conflict_message(installed)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return message
