"""Each field's latest value of a metric stream, kept in its ``metrics/<name>/metadata.json``.

The run table (``ml_dash.search_runs``, local) reads a stream's latest values from the end of its
file; a field logged only early in a long run (a setting logged once at step 0, a test metric logged
once at the end of an epoch long past) is not there. So the writer keeps every field's latest value as
rows are written (on the agent's thread, never the training thread) and stores it beside the stream's
row count at each durable point; readers merge it under the file's tail (the tail is newer when the
document lags the file by a second).

The document's part::

    "latest": {"data": {"loss": 0.12, "acc": "NaN"}, "nonFinite": ["acc"]}

``data`` as in a row of ``data.jsonl``, non-finite floats spelled as names and listed in ``nonFinite``
(the document stays JSON). A document without ``latest`` (written by an older version, or by upstream
ml-dash) gives nothing: the reader falls back to the tail alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .jsonlines import mark_non_finite_metric_row, restore_metric_row

#: The key of the part in metadata.json.
LATEST_KEY = "latest"
#: Longer text values are not kept in the document.
MAX_KEPT_TEXT_CHARS = 1024


def merge_latest(latest: dict[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Update ``latest`` with the values of ``rows`` (each a row's ``data``, oldest first).

    About 30 ns a row: the usual chunk, whose rows all carry the same fields, costs one set union and
    one update; only a chunk whose last row lacks a field looks further back, and only for that field.
    """
    if not rows:
        return
    last = rows[-1]
    fields = set().union(*rows)
    latest.update(last)
    if len(fields) == len(last):
        return
    missing = fields.difference(last)
    for row in reversed(rows):
        for key in missing.intersection(row):
            latest[key] = row[key]
        missing.difference_update(row)
        if not missing:
            return


def latest_part(latest: Mapping[str, Any]) -> dict[str, Any]:
    """``latest`` as the document stores it (non-finite floats named), without texts over
    :data:`MAX_KEPT_TEXT_CHARS`: a metric's text may be a MiB, and the document is rewritten about once a
    second while the stream grows (the table reads such a field from the file's tail, as before)."""
    kept = {k: v for k, v in latest.items() if not (isinstance(v, str) and len(v) > MAX_KEPT_TEXT_CHARS)}
    return mark_non_finite_metric_row({"data": kept})


def latest_from_document(document: Any) -> dict[str, Any]:
    """The latest values a metadata.json document holds (non-finite floats restored); {} for none or
    for a part that is not the shape above (a damaged or foreign document is not an error here)."""
    part = document.get(LATEST_KEY) if isinstance(document, dict) else None
    if not isinstance(part, dict) or not isinstance(part.get("data"), dict):
        return {}
    marked = part.get("nonFinite")
    names = [key for key in marked if isinstance(key, str)] if isinstance(marked, list) else None
    row = {"data": dict(part["data"]), "nonFinite": names}
    return restore_metric_row(row)["data"]
