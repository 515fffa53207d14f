"""The server's metadata storage: the :class:`Storage` protocol (protocol.py), its errors (errors.py),
:func:`open_storage` (a backend by URL, factory.py), and the backends (sqlite/).

Names load on first use: an ingest worker imports ``storage.records`` and ``storage.chunks`` without
the protocol or any backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        ConflictError,
        GapError,
        StorageBusy,
        StorageError,
        StorageFull,
        StorageURLError,
        StreamLimitError,
    )
    from .factory import open_storage
    from .protocol import ExperimentRow, KeyRow, OwnerRow, ProjectRow, Storage

_HOMES = {
    **dict.fromkeys(("Storage", "ExperimentRow", "KeyRow", "OwnerRow", "ProjectRow"), ".protocol"),
    **dict.fromkeys(("StorageError", "StorageFull", "StorageBusy", "StorageURLError", "GapError", "ConflictError",
                     "StreamLimitError"), ".errors"),
    "open_storage": ".factory",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConflictError", "ExperimentRow", "GapError", "KeyRow", "OwnerRow", "ProjectRow", "Storage", "StorageBusy",
           "StorageError", "StorageFull", "StorageURLError", "StreamLimitError", "open_storage"]
