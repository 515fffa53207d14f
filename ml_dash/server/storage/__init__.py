"""The server's metadata storage: the :class:`Storage` protocol (protocol.py), its errors (errors.py),
:func:`open_storage` (a backend by URL, factory.py), and the backends (sqlite/).

Names load on first use: an ingest worker imports ``storage.records`` and ``storage.chunks`` without
the protocol or any backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_attributes

if TYPE_CHECKING:
    from .errors import (
        ConflictError,
        GapError,
        StorageBusy,
        StorageError,
        StorageFull,
        StorageOpenError,
        StorageUnavailable,
        StorageURLError,
        StreamLimitError,
        UnnamedReplyError,
    )
    from .factory import open_storage
    from .protocol import ExperimentRow, KeyRow, OwnerRow, ProjectRow, Storage
    from .replies import Acknowledgement

_HOMES = {
    **dict.fromkeys(("Storage", "ExperimentRow", "KeyRow", "OwnerRow", "ProjectRow"), ".protocol"),
    **dict.fromkeys(("StorageError", "StorageFull", "StorageBusy", "StorageUnavailable", "StorageOpenError", "StorageURLError", "GapError", "ConflictError",
                     "StreamLimitError", "UnnamedReplyError"), ".errors"),
    "Acknowledgement": ".replies",
    "open_storage": ".factory",
}


__getattr__ = lazy_attributes(__name__, _HOMES)


__all__ = [
    "Acknowledgement",
    "ConflictError",
    "ExperimentRow",
    "GapError",
    "KeyRow",
    "OwnerRow",
    "ProjectRow",
    "Storage",
    "StorageBusy",
    "StorageError",
    "StorageFull",
    "StorageOpenError",
    "StorageURLError",
    "StorageUnavailable",
    "StreamLimitError",
    "UnnamedReplyError",
    "open_storage",
]
