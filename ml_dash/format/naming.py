"""Validation of every user-supplied name that becomes part of a path.

All names go through here; :func:`safe_join` is the only way a user-supplied
relative path is joined onto a directory.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

# Matched with fullmatch, never match + "$": "$" also matches before a trailing newline, so
# "alice/p/run\n" would pass as another run than "alice/p/run".
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_METRIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-:@ ]*")
_IDENTITY = re.compile(r"[0-9A-Za-z_-]{1,64}")
MAX_SEGMENT_CHARS = 128
MAX_PATH_CHARS = 1024


def _check_segment(kind: str, segment: str, whole: str) -> None:
    if segment in ("", ".", ".."):
        raise ValueError(f"invalid {kind} {whole!r}: empty, '.' or '..' segment")
    if len(segment) > MAX_SEGMENT_CHARS:
        raise ValueError(f"invalid {kind} {whole!r}: segment longer than {MAX_SEGMENT_CHARS} characters")
    if not _SEGMENT.fullmatch(segment):
        raise ValueError(
            f"invalid {kind} {whole!r}: segment {segment!r} may use only letters, digits, '_', '-', '.' "
            "and must not start with '.' or '-'"
        )


def validate_prefix(prefix: object) -> tuple[str, str, str]:
    """Check an experiment prefix ``owner/project/name``; return its three parts."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str 'owner/project/name', not {type(prefix).__name__}")
    if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise ValueError(f"invalid prefix {prefix!r}: must be a relative 'owner/project/name'")
    parts = prefix.split("/")
    if len(parts) != 3:
        raise ValueError(f"invalid prefix {prefix!r}: expected exactly 'owner/project/name' (3 parts, got {len(parts)})")
    for part in parts:
        _check_segment("prefix", part, prefix)
    return parts[0], parts[1], parts[2]


def is_identity(value: object) -> bool:
    """A run, writer or segment id: 1 to 64 letters, digits, '-' or '_' (from clients and servers alike)."""
    return isinstance(value, str) and _IDENTITY.fullmatch(value) is not None


def validate_metric_name(name: object) -> str:
    """Check a metric name: one path segment (no '/' or '\\'), printable, bounded."""
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a str, not {type(name).__name__}")
    if "/" in name or "\\" in name:
        raise ValueError(f"invalid metric name {name!r}: path separators are not allowed")
    if name in (".", "..") or not _METRIC.fullmatch(name) or len(name) > MAX_SEGMENT_CHARS:
        raise ValueError(
            f"invalid metric name {name!r}: use letters, digits, '_', '-', '.', ':', '@' or spaces "
            f"(at most {MAX_SEGMENT_CHARS} characters, not starting with '.')"
        )
    return name


def clean_relative_path(kind: str, path: object, rooted_ok: bool = False) -> str:
    """Normalise a user-supplied relative file path (``'models/model.pth'``), rejecting traversal.

    With ``rooted_ok`` a leading ``/`` means "from the files root" (the
    specification's ``prefix="/models"``); otherwise an absolute path is refused.
    """
    if not isinstance(path, str):
        raise TypeError(f"{kind} must be a str, not {type(path).__name__}")
    if "\x00" in path or "\\" in path:
        raise ValueError(f"invalid {kind} {path!r}: NUL and backslashes are not allowed")
    if path.startswith("/") and not rooted_ok:
        raise ValueError(f"invalid {kind} {path!r}: must be relative")
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"invalid {kind} {path!r}: longer than {MAX_PATH_CHARS} characters")
    stripped = path.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        _check_segment(kind, segment, path)
    return str(PurePosixPath(stripped))


def safe_join(root: Path, relative: str) -> Path:
    """Join a cleaned relative path onto ``root``, refusing anything that escapes it."""
    target = (root / relative).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"path {relative!r} escapes {root}")
    return target
