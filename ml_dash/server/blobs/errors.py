"""What a blob store raises, whatever the backend. No HTTP here: the file routes map them
(routes/files.py). A full disk is the storage's :class:`~..storage.errors.StorageFull`."""

from __future__ import annotations


class BlobError(Exception):
    """A blob operation refused; nothing was stored."""


class InvalidDigest(BlobError, ValueError):
    """A name that is no sha256 (64 lowercase hex digits)."""


class DigestMismatch(BlobError):
    """The content streamed in does not hash to the sha256 declared for it: it was not stored."""


class BlobTooLarge(BlobError):
    """The content streamed in is longer than the put's limit: it was not stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"file larger than {limit} bytes")
        self.limit = limit


class BlobNotFound(BlobError):
    """No content is stored under that sha256."""


class ReadOnlyBlobs(BlobError):
    """This store serves content it did not store (``ml-dash ui``'s run files) and takes none."""
