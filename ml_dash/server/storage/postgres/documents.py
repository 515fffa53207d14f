"""A run's fields and params as PostgreSQL keeps them: exactly, and as query copies.

``experiments.doc`` holds the run fields (``..records.RUN_COLUMNS``) and params as the client sent them,
one JSON object (text: a NUL in a string is the escape ``\\u0000`` there, which text holds). Reads return
it. Beside it, the columns filters and indexes use: ``status`` (text) and ``tags``, ``metadata``,
``params`` as JSONB, with any NUL in their strings read as U+FFFD (JSONB refuses NUL).
"""

from __future__ import annotations

from typing import Any

from ml_dash.format.jsonlines import dumps, loads

from ..records import RUN_COLUMNS

#: the run fields kept as JSONB query copies (the others are only in ``doc``; status has its own column)
JSONB_FIELDS = ("tags", "metadata", "params")


def merged(doc_text: str, run: dict[str, Any], params: dict[str, Any] | None) -> dict[str, Any]:
    """The run's document after a batch: its run fields replaced, its params merged in."""
    doc = loads(doc_text) if doc_text else {}
    for key in RUN_COLUMNS:
        if key in run:
            doc[key] = run[key]
    if params is not None:
        doc["params"] = {**doc.get("params", {}), **params}
    return dict(doc)


def document_text(doc: dict[str, Any]) -> str:
    return dumps(doc).decode()


def query_copy(value: Any) -> str | None:
    """``value`` as JSONB input: its JSON, NUL characters in strings (and keys) as U+FFFD."""
    if value is None:
        return None
    text = dumps(value).decode()
    if "\\u0000" not in text:
        return text
    return dumps(_without_nul(loads(text))).decode()


def text_copy(value: str | None) -> str | None:
    """A text column's value: NUL (which PostgreSQL's text cannot hold) as U+FFFD."""
    return None if value is None else value.replace("\x00", "\ufffd")


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value
