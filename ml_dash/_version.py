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


#: How our metadata's Summary begins (pyproject's description): our releases before the epoch carry it too.
OUR_SUMMARY = "Experiment tracker whose logging never blocks training"


def installed_version(path: list[str] | None = None) -> str | None:
    """The version of the first ``ml-dash`` distribution installed in a ``site-packages`` folder of ``path``
    (default ``sys.path``), None if none."""
    found = installed(path)
    return found[0] if found is not None else None


def installed(path: list[str] | None = None) -> tuple[str, str] | None:
    """(version, summary) of the first ``ml-dash`` distribution installed in a ``site-packages`` folder of
    ``path`` (default ``sys.path``), None if none."""
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
            headers = _read_headers(os.path.join(entry, name, _METADATA_FILES[match.group(2).lower()]))
            if "Version" in headers:
                return headers["Version"], headers.get("Summary", "")
    return None


def _read_headers(metadata: str) -> dict[str, str]:
    """The Version and Summary headers of a METADATA / PKG-INFO file ({} when it cannot be read)."""
    headers: dict[str, str] = {}
    try:
        with open(metadata, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():  # the headers end at the first blank line
                    break
                key, _, value = line.partition(":")
                if key in ("Version", "Summary"):
                    headers[key] = value.strip()
    except OSError:
        pass
    return headers


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
    found = installed(path)
    if found is None or found[0].startswith(EPOCH) or found[1].startswith(OUR_SUMMARY):
        return None  # not installed (a checkout on the path), or ours (a release from before the epoch, too)
    message = conflict_message(found[0])
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return message
