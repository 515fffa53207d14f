"""The server's error tree (server/errors.py) mapped to HTTP once: every error leaves as JSON.

Apart from the tree so that what raises those errors without answering HTTP (an ingest worker, which
imports the errors and the decoder at its start) does not import aiohttp: a second or so of each
worker's start on a loaded machine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ...format.jsonlines import dumps
from ..errors import RequestError, RequestTimeout, Unavailable, is_no_space
from ..storage.errors import (  # raised by the storage (storage/errors.py), answered here
    ArchiveUnreadable,
    StorageBusy,
    StorageFull,
    StorageUnavailable,
)

logger = logging.getLogger("ml_dash.server")

#: Where :func:`error_middleware` leaves the class of the error a request was answered with (counted
#: by server/http/instruments.py: a bounded label, unlike the message).
REJECTION = web.RequestKey("ml_dash_rejection", str)


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
_ANSWERED = (RequestError, StorageFull, Unavailable, StorageBusy, StorageUnavailable, ArchiveUnreadable)


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
    if isinstance(exc, ArchiveUnreadable):  # not a bug, and nothing secret: what an operator must restore
        logger.error("%s %s: %s", request.method, request.path, exc)
        return json_response({"error": f"stored rows cannot be read: {exc}"}, 500)
    logger.exception("internal error in %s %s", request.method, request.path, exc_info=exc)
    return json_response({"error": "internal server error (a bug; the server's log has the details)"}, 500)
