"""Uploaded files' content: the :class:`BlobStore` protocol (protocol.py), its errors (errors.py),
:func:`open_blobs` (a store by URL, factory.py) and the stores (fs.py, paths.py). Names load on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import BlobError, BlobNotFound, BlobTooLarge, DigestMismatch, InvalidDigest, ReadOnlyBlobs
    from .factory import open_blobs
    from .protocol import BlobReader, BlobStore

_HOMES = {
    **dict.fromkeys(("BlobStore", "BlobReader"), ".protocol"),
    **dict.fromkeys(("BlobError", "BlobNotFound", "BlobTooLarge", "DigestMismatch", "InvalidDigest", "ReadOnlyBlobs"),
                    ".errors"),
    "open_blobs": ".factory",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BlobError", "BlobNotFound", "BlobReader", "BlobStore", "BlobTooLarge", "DigestMismatch", "InvalidDigest",
           "ReadOnlyBlobs", "open_blobs"]
