"""Writer segments: which start of a run directory wrote which of its rows.

Each ``run.start()`` in a directory begins a segment with a writer id of its
own, recorded in ``experiment.json`` (``writer_id`` is the latest one)::

    "segments": [{"writer_id": "4f0c...", "first": {}},
                 {"writer_id": "9a1e...", "first": {"metrics/train": 120, "logs": 4}}]

``first`` holds the next index of every stream that existed when the segment
began. Row *i* of a stream belongs to the last segment whose ``first`` for it
is at most *i*; a stream a segment does not list starts at 0 there (it was
created then or later). The server keeps which writer stored which rows, so
rows of two starts under the same indices (a copied run directory continued,
rows an OS crash took from the files after the server had them) are never
taken for resends of each other.
"""

from __future__ import annotations

from typing import Any


def segments_of(document: Any) -> list[dict[str, Any]]:
    """The segments an experiment.json records (one for a directory written before segments existed)."""
    if not isinstance(document, dict):
        return []
    found = document.get("segments")
    if isinstance(found, list):
        return [s for s in found if isinstance(s, dict) and isinstance(s.get("writer_id"), str)
                and isinstance(s.get("first", {}), dict)]
    writer = document.get("writer_id")
    return [{"writer_id": writer, "first": {}}] if isinstance(writer, str) else []


def writer_at(segments: list[dict[str, Any]], stream: str, index: int) -> tuple[str | None, int | None]:
    """The writer of row ``index`` of ``stream``, and the index where the next segment takes over (None:
    none does); (None, None) without segments."""
    writer, end = None, None
    for segment in segments:
        first = segment.get("first", {}).get(stream, 0)
        if first <= index:
            writer, end = segment["writer_id"], None
        elif end is None or first < end:
            end = first
    return writer, end
