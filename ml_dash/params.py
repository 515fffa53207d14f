"""``exp.params``: the run's hyper-parameters, merged and stored flat.

``set(model={"lr": 1e-3})`` stores ``{"model.lr": 0.001}``; ``get(flatten=False)``
rebuilds the nesting. The document is ``parameters.json`` in the upstream shape
``{"version": 2, "data": {...}, "createdAt": iso, "updatedAt": iso}``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .agent import utc_iso
from .agent.jsonlines import dumps

if TYPE_CHECKING:
    from .experiment import Experiment


def flatten(values: dict[str, Any], parent: str = "") -> dict[str, Any]:
    """Nested dicts become dot keys: ``{"a": {"b": 1}} -> {"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"parameter names must be str, got {key!r}")
        if not key or key.startswith(".") or key.endswith("."):
            raise ValueError(f"invalid parameter name {key!r}")
        full = f"{parent}.{key}" if parent else key
        if isinstance(value, dict) and value:
            flat.update(flatten(value, full))
        else:
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

    def __init__(self, experiment: Experiment) -> None:
        self._experiment = experiment
        self._values: dict[str, Any] = {}
        self._created_at: str | None = None

    def load(self, document: Any) -> None:
        """Start from a ``parameters.json`` already on disk (a resumed experiment)."""
        if isinstance(document, dict) and isinstance(document.get("data"), dict):
            self._values = dict(document["data"])
            self._created_at = document.get("createdAt")

    def set(self, _values: dict[str, Any] | None = None, /, **values: Any) -> None:
        """Merge parameters (nested dicts flatten to dot keys); written by the agent."""
        self._experiment._require_running()
        if _values is not None:
            if not isinstance(_values, dict):
                raise TypeError(f"params.set() takes a dict or keywords, not {type(_values).__name__}")
            values = {**_values, **values}
        flat = flatten(values)
        try:
            dumps(flat)
        except TypeError as exc:
            raise TypeError(f"parameters are not JSON-serialisable: {exc}") from None
        self._values.update(copy.deepcopy(flat))
        now = utc_iso()
        self._created_at = self._created_at or now
        document = {"version": 2, "data": dict(self._values), "createdAt": self._created_at, "updatedAt": now}
        self._experiment._writer.document("parameters.json").set(document)

    update = set

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The parameters so far: flat dot keys, or nested with ``flatten=False``. In remote
        mode, a run this process has not started is read from the server."""
        server = self._experiment._server_reads()
        values = server.params() if server is not None else copy.deepcopy(self._values)
        return values if flatten else unflatten(values)
