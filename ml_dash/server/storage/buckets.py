"""Downsampling a metric series for charts: min, max, first and last per numeric field per index bucket,
with each bucket's first and last index and row count, so that no spike is ever hidden.

A bucket is a plain map ``{"first", "last", "count", "fields": {key: {"min", "max", "first", "last"}}}``.
The same shape serves twice: as the reply of a read, and as a *summary* that ingest stores for every
aligned window of :data:`SUMMARY_WIDTHS` indices (storage.py). Summaries merge like buckets, so a
read of a whole series combines a few thousand stored summaries instead of decoding a million rows;
only the unaligned ends of a range are computed from the rows themselves.

Rows are taken as the stored column blocks, without building a dict per row: a column slice's min and
max are C loops (``min``/``max`` over a list), with a Python pass only for slices that hold NaN or
non-numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ml_dash.format.wire import block_rows

_NUMBER = (int, float)

#: Window widths (in indices) of the stored summaries; each is a multiple of the one before, so a
#: level is computed by merging the level below it.
SUMMARY_WIDTHS = (64, 1024, 16384)


def bucket_edges(start: int, end: int, buckets: int) -> int:
    """The width of each of at most ``buckets`` equal index ranges covering ``start:end``."""
    return max(1, -(-(end - start) // buckets))


def plan(start: int, end: int, buckets: int) -> tuple[int, int | None]:
    """(bucket width, summary width to build them from, or None for rows only) for at most ``buckets``
    buckets over ``start:end``.

    With summaries, buckets are aligned to multiples of their width (a multiple of the summary width),
    so each summary falls in one bucket; the width may round up to twice the exact one, so a reply
    holds between about ``buckets / 2`` and ``buckets`` buckets.
    """
    exact = bucket_edges(start, end, buckets)
    usable = [w for w in SUMMARY_WIDTHS if w <= 2 * exact]
    if not usable:
        return exact, None
    summary = usable[-1]
    return _aligned_width(start, end, buckets, summary, -(-exact // summary)), summary


def _aligned_width(start: int, end: int, buckets: int, summary: int, k: int) -> int:
    """The smallest width ``k' * summary`` (``k' >= k``) whose aligned buckets over ``start:end`` number at
    most ``buckets`` (alignment can add one).

    Stepping ``k`` by one took up to ``end / summary`` steps (6 s for one bucket over 2^40:2^41); this jumps:
    while ``a = (end - 1) // width`` holds still, ``start // width`` can only fall as the width grows, so the
    count ``a - start // width + 1`` only grows: a width that fails is followed by failing ones until ``a``
    falls, and the next candidate is the first width where it does. A few steps in practice.
    """
    while True:
        width = k * summary
        last = (end - 1) // width
        if last - start // width + 1 <= buckets:
            return width
        k = max(k + 1, (end - 1) // (last * summary) + 1)  # last >= 1 here: a single bucket would have fit


def aligned_summary(width: int) -> int | None:
    """The widest stored summary that buckets of ``width`` indices, aligned to its multiples, are made
    of whole (None: only rows make them)."""
    usable = [w for w in SUMMARY_WIDTHS if width % w == 0]
    return usable[-1] if usable else None


class Buckets:
    """Accumulates rows (as column blocks at known indices) or summaries into buckets of ``width``
    indices, aligned at ``origin`` (default ``start``); only indices within ``start:end`` count."""

    def __init__(self, start: int, end: int, width: int, origin: int | None = None) -> None:
        self.start, self.end, self.width = start, end, width
        self.origin = start if origin is None else origin
        self._out: dict[int, dict[str, Any]] = {}

    def add_block(self, first_index: int, block: dict[str, Any], rows: int, since: int = 0,
                  upto: int | None = None) -> None:
        """Rows ``first_index .. first_index + rows - 1`` of one block, in index order (of indices
        ``since .. upto - 1`` only, when given)."""
        low = max(first_index, self.start, since)
        high = min(first_index + rows, self.end if upto is None else min(upto, self.end))
        position = low
        while position < high:
            number = (position - self.origin) // self.width
            bucket_end = min(high, self.origin + (number + 1) * self.width)
            a, b = position - first_index, bucket_end - first_index
            stats = {}
            for key, column in zip(block["keys"], block["cols"]):
                found = _stats(column[a:b])
                if found is not None:
                    stats[key] = found
            self.add({"first": position, "last": bucket_end - 1, "count": b - a, "fields": stats})
            position = bucket_end

    def add_blocks(self, first_index: int, blocks: Iterable[dict[str, Any]], since: int = 0,
                   upto: int | None = None) -> None:
        """The rows of consecutive blocks from ``first_index`` (of indices ``since .. upto - 1`` only)."""
        index = first_index
        for block in blocks:
            rows = block_rows(block)
            self.add_block(index, block, rows, since, upto)
            index += rows

    def add(self, part: dict[str, Any]) -> None:
        """Merge a bucket-shaped ``part`` that lies within one bucket, later in index order than
        what this bucket holds so far."""
        number = (part["first"] - self.origin) // self.width
        bucket = self._out.get(number)
        if bucket is None:
            self._out[number] = {"first": part["first"], "last": part["last"], "count": part["count"],
                                 "fields": {k: dict(v) for k, v in part["fields"].items()}}
            return
        merge_into(bucket, part)

    def result(self) -> list[dict[str, Any]]:
        return [self._out[k] for k in sorted(self._out)]


def merge_into(bucket: dict[str, Any], later: dict[str, Any]) -> None:
    """Fold ``later`` (whose rows come after ``bucket``'s) into ``bucket``."""
    bucket["last"] = later["last"]
    bucket["count"] += later["count"]
    fields = bucket["fields"]
    for key, stats in later["fields"].items():
        known = fields.get(key)
        if known is None:
            fields[key] = dict(stats)
        else:
            known["min"] = min(known["min"], stats["min"])
            known["max"] = max(known["max"], stats["max"])
            known["last"] = stats["last"]


def _stats(values: list[Any]) -> dict[str, Any] | None:
    """min, max, first and last of the numbers of ``values`` (bools, NaN, None, strings left out),
    or None when there are none."""
    try:
        total = sum(values)
    except TypeError:  # None or a string among them
        total = None
    if total is None or (type(total) is float and math.isnan(total)):  # non-numbers, or a NaN (whose
        values = [v for v in values if _is_number(v)]  # comparisons would mislead min and max)
    if not values:
        return None
    low, high = min(values), max(values)
    if type(low) is bool or type(high) is bool:  # a column of flags, not of numbers
        values = [v for v in values if type(v) in _NUMBER]
        if not values:
            return None
        low, high = min(values), max(values)
    first, last = values[0], values[-1]
    if not _is_number(first):
        first = next(v for v in values if _is_number(v))
    if not _is_number(last):
        last = next(v for v in reversed(values) if _is_number(v))
    return {"min": low, "max": high, "first": first, "last": last}


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER and not (type(value) is float and math.isnan(value))
