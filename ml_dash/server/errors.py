"""The server's one error tree, mapped to HTTP once (in :func:`error_middleware`).

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
    Unavailable                     503   a part of the server is restarting (a decode worker died), or it
                                          is busy (no room for a body within the queue's bounds)
    └── TooManyRequests             429   the caller has as many bodies being read as one caller may
                                          (``limit``); transient like 503, with ``Retry-After``

Anything else raised by a handler is a server bug: a 500 whose body says so
(the traceback goes to the server's log, never to the client), which clients
retry. Never the other way round: a built-in ``ValueError`` from a bug must not
look like the client's fault, so handlers raise these classes explicitly.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..format.jsonlines import dumps
from .storage.errors import (  # raised by the storage (storage/errors.py), answered here
    StorageBusy,
    StorageFull,
    StorageUnavailable,
)

logger = logging.getLogger("ml_dash.server")

#: Where :func:`error_middleware` leaves the class of the error a request was answered with (counted
#: by server/http/instruments.py: a bounded label, unlike the message).
REJECTION = web.RequestKey("ml_dash_rejection", str)

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


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(payload), status=status, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every error leaves as JSON ``{"error": ..., **details}``: 4xx for the client's, 5xx for ours;
    the error's class is left in ``request[REJECTION]`` (``InternalError`` for a bug)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: no route, method not allowed, body too large
        if exc.status < 400:
            raise
        request[REJECTION] = type(exc).__name__
        return json_response({"error": exc.reason if exc.text is None else exc.text}, exc.status)
    except Exception as exc:  # noqa: BLE001 - every error gets a reply; _answer logs a bug's traceback
        request[REJECTION] = type(exc).__name__ if isinstance(exc, _ANSWERED) or is_no_space(exc) else "InternalError"
        return _answer(request, exc)


#: The errors answered as what they are; anything else is a bug (500).
_ANSWERED = (RequestError, StorageFull, Unavailable, StorageBusy, StorageUnavailable)


def _answer(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, RequestError):
        response = json_response({"error": exc.message, **exc.details}, exc.status)
        if isinstance(exc, RequestTimeout):  # the rest of the body is not coming: do not linger for it
            response.force_close()
        return response
    if isinstance(exc, StorageFull):
        return json_response({"error": f"the server's disk is full; retry later ({exc})"}, 507)
    if isinstance(exc, (Unavailable, StorageBusy, StorageUnavailable)):
        details = exc.details if isinstance(exc, Unavailable) else {}
        response = json_response({"error": f"{exc}; retry later", **details}, getattr(exc, "status", 503))
        response.headers["Retry-After"] = str(getattr(exc, "retry_after_s", 1))
        return response
    if is_no_space(exc):
        return json_response({"error": "the server's disk is full; retry later"}, 507)
    logger.exception("internal error in %s %s", request.method, request.path, exc_info=exc)
    return json_response({"error": "internal server error (a bug; the server's log has the details)"}, 500)
