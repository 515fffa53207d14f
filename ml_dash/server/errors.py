"""The server's one error tree, mapped to HTTP once (in http/answers.py's :func:`error_middleware`).

::

    RequestError (status, message, details)    the client's request is wrong: a 4xx with a reason
    ├── BadRequest            400   malformed or out-of-domain input (``stream``/``index`` name a row)
    ├── Unauthorized          401
    ├── Forbidden             403
    ├── NotFound              404
    ├── Conflict              409   ``acked`` (a batch past the stored rows) or ``conflict`` (another run)
    ├── PayloadTooLarge       413
    ├── UnsupportedEncoding   415
    ├── UpgradeRequired       426   an older SDK's body that a reply could not answer safely
    └── Unprocessable         422   well-formed, but past a limit of what it writes to (``streams``: a
                                    run's metrics that do not fit; the client holds those streams back)
    StorageFull                     507   the server's disk is full: transient, the client retries
    StorageBusy                     503   another server process held the database's write lock too long
    StorageUnavailable              503   the database server cannot be reached just now (Retry-After)
    ArchiveUnreadable               500   archived rows' object is missing or damaged: the reply names the
                                          rows and the object (an operator restores it), never other rows
    Unavailable                     503   a part of the server is restarting (a decode worker died), or it
                                          is busy (no room for a body within the queue's bounds)
    └── TooManyRequests             429   the caller has as many bodies being read as one caller may
                                          (``limit``); transient like 503, with ``Retry-After``

Anything else raised by a handler is a server bug: a 500 whose body says so
(the traceback goes to the server's log, never to the client), which clients
retry. Never the other way round: a built-in ``ValueError`` from a bug must not
look like the client's fault, so handlers raise these classes explicitly.

This module imports no aiohttp (the mapping lives in http/answers.py): the ingest workers raise these
classes, and a worker that imported aiohttp would spend most of its start on it.
"""

from __future__ import annotations

import errno
from typing import Any

#: OS errors that mean "no space": the write will succeed once space returns.
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class RequestError(Exception):
    """A request the server will never accept as it is."""

    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        # raised in a worker process (server/ingest/prepare.py), it crosses back pickled, details and all
        return _rebuild, (type(self), self.message, self.details)


def _rebuild(cls: type[RequestError], message: str, details: dict[str, Any]) -> RequestError:
    return cls(message, **details)


class BadRequest(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401


class Forbidden(RequestError):
    status = 403


class NotFound(RequestError):
    status = 404


class RequestTimeout(RequestError):
    status = 408


class Conflict(RequestError):
    status = 409


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedEncoding(RequestError):
    status = 415


class Unprocessable(RequestError):
    status = 422


class UpgradeRequired(RequestError):
    status = 426


class Unavailable(Exception):
    """The server cannot handle the request just now (nothing of it was stored); the client retries
    after ``retry_after_s``."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 1, **details: Any) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.details = details


class TooManyRequests(Unavailable):
    """The caller has as many requests of a kind under way as one caller may (``limit``): the server is
    fine, this caller waits (429; the client retries after ``retry_after_s``)."""

    status = 429


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is an OS error meaning the disk is full. The storage and the blob store raise
    :class:`StorageFull` themselves; this catches a full disk met anywhere else (a temporary file)."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE
