"""The HTTP connection handler: aiohttp's, except that a request its parser refuses is answered
without quoting it.

aiohttp answers a malformed request (a header over 8,190 bytes, a bad request line) with a 400 whose
text, and the traceback it logs, quote the offending bytes: for an over-long ``Authorization`` header
that is the API key, in the reply and in the server's log. Here the reply names the problem only and
the log keeps one line without the request's bytes.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger("ml_dash.server")


class QuietRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        reason = ("a request line or header is longer than the server accepts" if isinstance(exc, LineTooLong)
                  else "the request is not well-formed HTTP/1.1")
        logger.info("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        response = web.Response(status=status, text=f"{status}: {reason}\n")
        response.force_close()
        return response


class QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections use :class:`QuietRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = QuietServer  # same state; only the handler it makes per connection differs
        return server
