"""Uploaded files' content: the :class:`BlobStore` protocol (protocol.py), its errors (errors.py),
:func:`open_blobs` (a store by URL, factory.py) and the stores (fs.py, paths.py). Names load on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_attributes

if TYPE_CHECKING:
    from .errors import (
        BlobConfigError,
        BlobError,
        BlobNotFound,
        BlobTooLarge,
        BlobUnavailable,
        DigestMismatch,
        InvalidDigest,
        ReadOnlyBlobs,
    )
    from .factory import open_blobs
    from .protocol import BlobReader, BlobStore

_HOMES = {
    **dict.fromkeys(("BlobStore", "BlobReader"), ".protocol"),
    **dict.fromkeys(("BlobConfigError", "BlobError", "BlobNotFound", "BlobTooLarge", "BlobUnavailable", "DigestMismatch",
                    "InvalidDigest", "ReadOnlyBlobs"),
                    ".errors"),
    "open_blobs": ".factory",
}


__getattr__ = lazy_attributes(__name__, _HOMES)


__all__ = ["BlobConfigError", "BlobError", "BlobNotFound", "BlobReader", "BlobStore", "BlobTooLarge", "BlobUnavailable",
           "DigestMismatch", "InvalidDigest", "ReadOnlyBlobs", "open_blobs"]
