"""``exp.params``: the run's hyper-parameters, merged and stored flat.

``set(model={"lr": 1e-3})`` stores ``{"model.lr": 0.001}``; ``get(flatten=False)``
rebuilds the nesting. The document is ``parameters.json`` in the upstream shape
``{"version": 2, "data": {...}, "createdAt": iso, "updatedAt": iso}``. Values are
checked at the call (ml_dash/format/values.py: nested at most 32 deep, at most 1 MiB as
JSON in all).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .format.jsonlines import encode_checked, read_json
from .format.layout import PARAMS
from .format.values import MAX_DEPTH, MAX_DOCUMENT_BYTES, check_json, utf8_size
from .format.vocabulary import utc_iso

if TYPE_CHECKING:
    from ._run.session import RunSession


def flatten(values: dict[str, Any], parent: str = "") -> dict[str, Any]:
    """Nested dicts become dot keys: ``{"a": {"b": 1}} -> {"a.b": 1}`` (at most 32 levels)."""
    flat: dict[str, Any] = {}
    pending: list[tuple[str, dict[str, Any], int]] = [(parent, values, 0)]
    while pending:  # iterative: a hostile 5,000-deep dict must not hit Python's recursion limit
        prefix, node, depth = pending.pop()
        if depth >= MAX_DEPTH:
            raise ValueError(f"parameters are nested deeper than {MAX_DEPTH} levels at {prefix[:80]!r}")
        for key, value in node.items():
            if not isinstance(key, str):
                raise TypeError(f"parameter names must be str, got {key!r}")
            if not all(key.split(".")):  # "", ".a", "a.", "a..b": an empty segment has no nesting to rebuild
                raise ValueError(f"invalid parameter name {key[:80]!r}: empty segment between dots")
            utf8_size(f"parameter name {key[:40]!r}", key)
            full = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and value:
                pending.append((full, value, depth + 1))
            else:
                check_json(f"parameter {full[:80]!r}", value, MAX_DEPTH - depth)
                flat[full] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Dot keys back to nested dicts (the inverse of :func:`flatten`)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return nested


class Params:
    """``exp.params``: ``set(**kw)`` merges, ``get()`` returns a copy."""

    def __init__(self, session: RunSession) -> None:
        self._session = session
        self._owner = session.holder()  # a handle keeps its Experiment referenced (session._end_orphan)
        self._values: dict[str, Any] = {}
        self._created_at: str | None = None
        session.on_start(lambda: self.load(read_json(session.directory / PARAMS)))

    def load(self, document: Any) -> None:
        """Start from a ``parameters.json`` already on disk (a resumed experiment)."""
        if isinstance(document, dict) and isinstance(document.get("data"), dict):
            self._values = dict(document["data"])
            self._created_at = document.get("createdAt")

    def set(self, _values: dict[str, Any] | None = None, /, **values: Any) -> None:
        """Merge parameters (nested dicts flatten to dot keys); written by the agent."""
        self._session.require_running()
        if _values is not None:
            if not isinstance(_values, dict):
                raise TypeError(f"params.set() takes a dict or keywords, not {type(_values).__name__}")
            values = {**_values, **values}
        flat = copy.deepcopy(flatten(values))
        merged = {**self._values, **flat}
        encode_checked("parameters", merged, MAX_DOCUMENT_BYTES)  # refused here, before anything changes
        now = utc_iso()
        created_at = self._created_at or now
        self._session.set_document(PARAMS, {"version": 2, "data": merged, "createdAt": created_at, "updatedAt": now})
        self._values, self._created_at = merged, created_at

    update = set

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The parameters so far: flat dot keys, or nested with ``flatten=False``. In remote
        mode, a run this process has not started is read from the server."""
        server = self._session.server_reads()
        values = server.params() if server is not None else copy.deepcopy(self._values)
        return values if flatten else unflatten(values)
