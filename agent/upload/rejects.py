"""Rows set aside: what could not be sent, and why, recorded next to the run.

A set-aside range stays where it is in its stream's file (nothing is deleted);
``.ml-dash-rejected/`` gets one JSON record per range, so ``exp.stats()``,
``ml-dash sync`` and a person can see which rows, why, and the bytes::

    {"stream": "metrics/train", "first": 1200, "count": 1, "server": "http://...", "prefix": "a/b/c",
     "reason": "unencodable", "detail": "OverflowError: ...", "status": 0,
     "offset": 123456, "length": 88, "content": "<the line, cut at 64 KiB>", "at": "...Z"}

The server learns of the range as a *void* (ml_dash/format/wire.py), so the stream's
indices stay contiguous there and later rows are stored. Blocking: run on a
worker thread.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ml_dash.format.atomic import write_document
from ml_dash.format.jsonlines import dumps, read_json
from ml_dash.format.layout import REJECTED_DIR

from .pending import Void

CONTENT_BYTES = 64 << 10


def set_aside(directory: Path, data_path: Path, remote: str, prefix: str, stream: str, first: int, count: int,
              void: Void, at_iso: str) -> Path:
    """Record rows ``first .. first + count - 1`` of ``stream`` as set aside; returns the record's path."""
    folder = Path(directory) / REJECTED_DIR
    try:
        with open(data_path, "rb") as f:
            f.seek(void.offset)
            content = f.read(min(void.length, CONTENT_BYTES)).decode("utf-8", "replace")
    except OSError:
        content = ""
    record = {"stream": stream, "first": first, "count": count, "server": remote, "prefix": prefix,
              "reason": void.reason, "detail": void.detail, "status": void.status, "offset": void.offset,
              "length": void.length, "content": content, "at": at_iso}
    # named by what it records: setting the same rows aside again (a resend after a rewind, a crash
    # before the cursor was saved) replaces the record instead of counting them twice
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stream)
    where = hashlib.sha256(f"{remote} {prefix}".encode()).hexdigest()[:12]
    path = folder / f"{safe}-{first}-{count}-{where}.json"
    write_document(path, dumps(record))
    return path


def set_aside_counts(directory: Path, remote: str | None = None, prefix: str | None = None) -> dict[str, Counter]:
    """stream -> reason -> rows set aside (for one server and prefix, when given)."""
    counts: dict[str, Counter] = {}
    folder = Path(directory) / REJECTED_DIR
    if not folder.is_dir():
        return counts
    for path in sorted(folder.glob("*.json")):
        record: Any = read_json(path)
        if not isinstance(record, dict) or not isinstance(record.get("count"), int):
            continue
        if (remote is not None and record.get("server") != remote) or (prefix is not None and record.get("prefix") != prefix):
            continue
        counts.setdefault(str(record.get("stream")), Counter())[str(record.get("reason"))] += record["count"]
    return counts
