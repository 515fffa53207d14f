"""Questions about a stream file that the upload asks, answered without reading the backlog.

With the server down for a day the backlog is gigabytes, and it waits on disk:
these helpers read the file's tail, or seek by bisection (rows are in index
order), never the whole file. They block, so the uploader runs them on a
worker thread, never on the agent's event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ..format.jsonlines import DecodeError, end_of_complete_lines, last_record, loads

#: The longest line a probe reads whole; a longer one is skipped over in pieces.
PROBE_LINE_BYTES = 1 << 20
_SKIP_PIECE = 1 << 20


def rows_on_disk(path: Path, key: str) -> int:
    """Rows in a stream file: its last intact record's index plus one (0 when none)."""
    record = last_record(path, key)
    index = record.get(key) if record is not None else None
    return index + 1 if isinstance(index, int) and index >= 0 else 0


def file_size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0


def offset_of_index(path: Path, key: str, index: int) -> int:
    """The byte offset of the line holding the first record whose ``key`` is at least ``index``
    (the end of the last complete line when there is none): a bisection, ~35 short reads per GB."""
    try:
        f = open(path, "rb")  # noqa: SIM115  # opened apart so only the open's error is caught
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, 2)
        lo, hi = 0, size + 1
        while lo < hi:  # the smallest position from which the first record reaches ``index``
            mid = (lo + hi) // 2
            found = _first_record_from(f, mid, key)
            # no record from there on counts as reaching it: else a probe inside the last line (always, in a
            # file of one line) went right of the row sought, and a rewind to it found the end of the file
            if found is None or found[1] >= index:
                hi = mid
            else:
                lo = mid + 1
        found = _first_record_from(f, lo, key) if lo <= size else None
        if found is not None and found[1] >= index:
            return found[0]
        return end_of_complete_lines(f, size)


def _first_record_from(f: BinaryIO, position: int, key: str) -> tuple[int, int] | None:
    """(line start, index) of the first intact record on a line starting at or after ``position``."""
    if position > 0:
        f.seek(position - 1)
        _skip_line(f)  # the rest of the line holding position - 1 (just its newline if it ends there)
    else:
        f.seek(0)
    while True:
        start = f.tell()
        line = f.readline(PROBE_LINE_BYTES)
        if not line.endswith(b"\n"):
            if len(line) < PROBE_LINE_BYTES:
                return None  # end of file, or a torn last line
            _skip_line(f)
            continue
        try:
            record = loads(line)
        except DecodeError:
            continue  # a damaged line: the next one is the probe's answer
        if isinstance(record, dict) and isinstance(record.get(key), int):
            return start, record[key]


def _skip_line(f: BinaryIO) -> None:
    while True:
        piece = f.readline(_SKIP_PIECE)
        if not piece or piece.endswith(b"\n"):
            return
