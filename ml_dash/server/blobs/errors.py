"""What a blob store raises, whatever the backend. No HTTP here: the file routes map them
(routes/files.py). A full disk is the storage's :class:`~..storage.errors.StorageFull`.

::

    BlobError
    ├── InvalidDigest      the name is no sha256                                     (400)
    ├── DigestMismatch     the content does not hash to its name: not stored          (400)
    ├── BlobTooLarge       past the put's limit: not stored                           (413)
    ├── BlobNotFound       nothing under that name                                    (404)
    ├── ReadOnlyBlobs      this store takes nothing (``ml-dash ui``)
    ├── BlobUnavailable    the store cannot be reached or is busy now: nothing stored (503, retried)
    └── BlobConfigError    the store refuses this server for good (credentials, bucket): at start
"""

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


class BlobUnavailable(BlobError):
    """The store cannot serve just now (unreachable, timing out, refusing for a while, or this server's
    room for uploads in flight is full): nothing was stored; the same request may succeed later."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BlobConfigError(BlobError):
    """The store refuses this server as configured (credentials refused, no such bucket): retrying
    cannot help; the message names what to fix and never carries a secret."""
