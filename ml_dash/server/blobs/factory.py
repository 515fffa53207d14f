"""A blob store by URL: ``open_blobs("file:///srv/ml-dash/blobs")``.

Supported (:data:`SUPPORTED`): ``file:///ABSOLUTE/DIR`` and a plain directory path. A blob backend
plugs in here as one more scheme (the next: ``s3://``); the routes use only the blob store's methods.
"""

from __future__ import annotations

from pathlib import Path

from ..storage.errors import StorageURLError
from ..storage.factory import local_path, scheme_of, shown
from .fs import LocalBlobStore
from .protocol import BlobStore

SUPPORTED = ("file:///ABSOLUTE/DIR", "a plain directory path")


def blob_dir(url: str) -> Path | None:
    """The directory a ``file:`` URL (or a plain path) names; None for another scheme."""
    return local_path(url, "file", "blob", "file:///ABSOLUTE/DIR (no host, no options)", hosts=("", "localhost"))


async def open_blobs(url: str) -> BlobStore:
    """The blob store ``url`` names, ready (its directories created): the caller closes it.
    :class:`StorageURLError` for an unknown scheme (naming it and the supported ones) or a bad URL."""
    directory = blob_dir(url)
    if directory is None:
        raise StorageURLError(f"unsupported blob URL scheme {scheme_of(url)!r} in {shown(url)}; "
                              f"supported: {', '.join(SUPPORTED)}")
    try:
        return LocalBlobStore(directory)
    except OSError as exc:
        raise StorageURLError(f"cannot use {directory} for blobs: {exc.strerror or exc}") from exc
