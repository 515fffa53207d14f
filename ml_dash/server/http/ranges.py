"""``Range: bytes=...`` of a download (RFC 9110 section 14): one range, or the whole content.

Several ranges in one header, or a header that is no byte range at all, are ignored and the whole
content is sent (a server may; no client of ours asks for several). A range that starts past the end
is unsatisfiable (416). ``If-Range`` with a validator other than the content's ETag also means the
whole content: the client's piece belongs to another version.
"""

from __future__ import annotations

import re

_ONE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """The range starts at or past the end of the content."""


def byte_range(header: str | None, size: int, if_range: str | None = None,
               etag: str | None = None) -> tuple[int, int] | None:
    """(start, end), end exclusive, of the one range ``header`` asks for within ``size`` bytes;
    None for the whole content."""
    if header is None or (if_range is not None and if_range.strip() != etag):
        return None
    found = _ONE_RANGE.fullmatch(header.strip().replace(" ", ""))
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.group(1), found.group(2)
    if first == "":  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(f"bytes=-0 of {size} bytes")
        return max(0, size - suffix), size
    start = int(first)
    if last != "" and int(last) < start:
        return None  # no valid range: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"bytes {start}- of {size} bytes")
    return start, size if last == "" else min(int(last) + 1, size)
