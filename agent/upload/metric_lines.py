"""Metric lines read back from disk, decoded straight into one columnar block.

This is the upload's disk path (``ml-dash sync`` and a live upload that fell
behind), so it runs for every row. Decoding each line into dicts and
transposing them costs ~2.6 µs a row. A training loop logs the same keys
every step, so the common case decodes into a msgspec Struct made for those
keys (~0.5 µs a row) and takes each column with ``attrgetter`` mapped in C
(~0.05 µs a value).

Anything else returns None and the caller takes the general path: a key that
a Struct field cannot be renamed to (one holding a double quote, a backslash
or a control character: any str is a valid metric key), keys that change
between rows (a Struct without defaults rejects missing and unknown keys), a
row with non-finite markers (``nonFinite`` is an unknown field
here), a damaged line, or indices that are not ``first, first + 1, ...``.
"""

from __future__ import annotations

from functools import lru_cache
from operator import attrgetter
from typing import Any

import msgspec

from ml_dash.format.wire import columns_block

_index = attrgetter("index")
_data = attrgetter("data")
_created = attrgetter("createdAt")
_head_decoder = msgspec.json.Decoder()


@lru_cache(maxsize=64)
def _decoder_for(keys: tuple[str, ...]) -> tuple[msgspec.json.Decoder, list[attrgetter]]:
    """A decoder for lines whose ``data`` holds exactly ``keys`` (any order), and a getter per key.

    Fields are named f0, f1, ... and renamed to the keys, since metric keys
    need not be Python identifiers ("train/loss"). ``gc=False``: decoded JSON
    cannot form reference cycles, and a million tracked objects would push
    the cyclic collector into full passes.
    """
    fields = [f"f{i}" for i in range(len(keys))]
    data = msgspec.defstruct("MetricData", [(f, Any) for f in fields], rename=dict(zip(fields, keys)),
                             forbid_unknown_fields=True, gc=False)
    line = msgspec.defstruct("MetricLine", [("index", int), ("data", data), ("createdAt", str)],
                             forbid_unknown_fields=True, gc=False)
    return msgspec.json.Decoder(line), [attrgetter(f) for f in fields]


def uniform_block(data: bytes, end: int, first: int) -> dict[str, Any] | None:
    """One columnar block for the lines of ``data[:end]`` (complete JSON lines, the first indexed
    ``first``), or None when they are not all intact rows with the same keys and consecutive indices.
    (``end`` instead of a slice: a batch is tens of megabytes, and a memoryview does not copy it.)"""
    head_end = data.find(b"\n", 0, end)
    if head_end <= 0:
        return None
    try:
        head = _head_decoder.decode(data[:head_end])
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if not isinstance(head, dict) or not isinstance(head.get("data"), dict):
        return None
    keys = tuple(head["data"])
    try:
        decoder, getters = _decoder_for(keys)
    except ValueError:  # a key msgspec cannot rename to (it holds '"', '\\' or a control character)
        return None
    try:
        rows = decoder.decode_lines(memoryview(data)[:end])
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
        return None
    if list(map(_index, rows)) != list(range(first, first + len(rows))):
        return None
    datas = list(map(_data, rows))
    return columns_block(list(keys), [list(map(get, datas)) for get in getters], list(map(_created, rows)))
