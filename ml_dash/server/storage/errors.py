"""What a storage backend raises: the same classes whatever the backend, so that nothing above the
storage reads a driver's exceptions (their types or their messages).

::

    StorageError          a backend could not do what was asked (not the caller's fault)
    ├── StorageFull       no space left (database or blobs): nothing of the operation was stored;
    │                     transient, a retry succeeds once space returns (HTTP 507)
    ├── StorageBusy       the backend's write lock was not free in time (another server process on
    │                     the same database held it): nothing was stored; retry (HTTP 503)
    ├── StorageUnavailable  the database server cannot be reached just now (connection lost, restarting):
    │                     retry (HTTP 503 with Retry-After); a write whose commit was cut off may or may
    │                     not be stored, which a resend settles (exactly once: a re-ack)
    ├── StorageOpenError  at open: the database named cannot be used as given (unreachable, refused
    │                     login, no such database); a configuration error (the commands exit 2)
    └── StorageURLError   a storage or blob URL names no supported backend, or a bad location

    the three refusals of ingest (the request is wrong for what is stored; never retried as it is):
    GapError              a batch starts past the stored rows of a stream (409 ``acked``)
    ConflictError         rows under stored indices from another run or another writer (409 ``conflict``)
    StreamLimitError      new metric streams past what one run may hold (422 ``streams``)
    UnnamedReplyError     an older SDK's body for a run too wide for the replies it understands (426)

A backend maps its driver's errors to these where it calls the driver (``sqlite/store.py``); an
error it does not map is a bug (HTTP 500). This module imports only replies.py: ingest workers load it.
"""

from __future__ import annotations

from typing import Any

from .replies import Acknowledgement


class StorageError(Exception):
    """The storage could not do what was asked; nothing of the operation was stored."""


class StorageFull(StorageError):
    """No space left (in the database or the blob store): nothing of the operation was stored, and it
    succeeds once space returns."""


class StorageBusy(StorageError):
    """Another writer (another server process on the same database) held the write lock past the
    backend's wait: nothing was stored; the same request succeeds later."""


class StorageUnavailable(StorageError):
    """The database server could not be reached (the connection was lost, it is restarting or refuses
    connections): retry after ``retry_after_s``. Nothing of an operation that failed before its commit is
    stored; one cut off during its commit may be, and its resend is then acknowledged again."""

    retry_after_s = 2


class StorageOpenError(StorageError):
    """At open: the database a URL names cannot be used as given (unreachable, a refused login, no such
    database). The message names it with any password hidden."""


class StorageURLError(StorageError, ValueError):
    """A storage or blob URL that names no supported backend, or no usable location."""


class GapError(Exception):
    """A batch starts past what is stored: the client must resend from ``acked``."""

    def __init__(self, stream: str, acked: int) -> None:
        super().__init__(f"stream {stream!r} has {acked} rows stored; a batch must start at or before that")
        self.stream = stream
        self.acked = acked
        #: what the 409 says: the counts of the request's streams, filled in by the storage after rolling back
        self.reply = Acknowledgement({stream: acked}, 0, 0)


class UnnamedReplyError(Exception):
    """A body without ``"reply": "named"`` (an older SDK) for a run of more streams than a reply lists whole:
    that SDK reads a stream missing from a reply as "none stored", so nothing of it is stored (HTTP 426)."""

    def __init__(self, streams: int, limit: int) -> None:
        super().__init__(f"this run holds {streams} streams; a reply lists the streams of its request only, which "
                         f"the ml-dash that sent this body (without \"reply\": \"named\") reads as losing the "
                         f"others: upgrade it to upload runs of more than {limit} streams (its rows stay on its disk)")


class ConflictError(Exception):
    """Rows under stored indices from another run or another writer: never acknowledged."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


class StreamLimitError(Exception):
    """New metric streams past what one run may hold: nothing of the batch is stored. ``streams`` are the
    batch's new streams that do not fit (those before them would)."""

    def __init__(self, streams: list[str], limit: int, held: int) -> None:
        super().__init__(f"a run holds at most {limit} metrics; this one holds {held}, and {len(streams)} more "
                         f"of this request do not fit ({streams[0]}{', ...' if len(streams) > 1 else ''})")
        self.streams = streams
        self.limit = limit
