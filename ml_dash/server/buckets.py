"""Downsampling a metric series for charts: min, max and last per numeric field per index bucket,
with each bucket's first and last index and row count, so that no spike is ever hidden.

Computed from the stored columns, chunk by chunk, without building a dict per row: a column slice's
min and max are C loops (``min``/``max`` over a list), with a Python pass only for slices that hold
NaN or non-numbers.
"""

from __future__ import annotations

import math
from typing import Any

_NUMBER = (int, float)


def bucket_edges(start: int, end: int, buckets: int) -> int:
    """The width of each of at most ``buckets`` equal index ranges covering ``start:end``."""
    return max(1, -(-(end - start) // buckets))


class Buckets:
    """Accumulates rows (as column blocks at known indices) into buckets of ``width`` indices."""

    def __init__(self, start: int, end: int, width: int) -> None:
        self.start, self.end, self.width = start, end, width
        self._out: dict[int, dict[str, Any]] = {}

    def add_block(self, first_index: int, block: dict[str, Any], rows: int) -> None:
        """Rows ``first_index .. first_index + rows - 1`` of one block."""
        low, high = max(first_index, self.start), min(first_index + rows, self.end)
        position = low
        while position < high:
            number = (position - self.start) // self.width
            bucket_end = min(high, self.start + (number + 1) * self.width)
            a, b = position - first_index, bucket_end - first_index
            bucket = self._out.get(number)
            if bucket is None:
                bucket = self._out[number] = {"first": position, "last": bucket_end - 1, "count": 0, "fields": {}}
            bucket["last"] = bucket_end - 1
            bucket["count"] += b - a
            fields = bucket["fields"]
            for key, column in zip(block["keys"], block["cols"]):
                stats = _stats(column[a:b])
                if stats is None:
                    continue
                low_v, high_v, last_v = stats
                known = fields.get(key)
                if known is None:
                    fields[key] = {"min": low_v, "max": high_v, "last": last_v}
                else:
                    known["min"], known["max"], known["last"] = min(known["min"], low_v), max(known["max"], high_v), last_v
            position = bucket_end

    def result(self) -> list[dict[str, Any]]:
        return [self._out[k] for k in sorted(self._out)]


def _stats(values: list[Any]) -> tuple[Any, Any, Any] | None:
    """(min, max, last) of the numbers of ``values`` (bools, NaN, None, strings left out), or None."""
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
    last = values[-1]
    if not _is_number(last):
        last = next((v for v in reversed(values) if _is_number(v)), None)
    return low, high, last


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER and not (type(value) is float and math.isnan(value))
