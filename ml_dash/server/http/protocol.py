"""The HTTP connection handler: aiohttp's, except that a request its parser refuses is answered
without quoting it, and a request head must arrive whole within a time limit.

aiohttp answers a malformed request (a header over 8,190 bytes, a bad request line) with a 400 whose
text, and the traceback it logs, quote the offending bytes: for an over-long ``Authorization`` header
that is the API key, in the reply and in the server's log. Here the reply names the problem only and
the log keeps one line without the request's bytes.

aiohttp has no limit on the time a request head may take: a client sending one byte every few
seconds holds its connection (and its memory) for ever. Here the head must be complete within
``head_timeout_s`` of its first byte, or the connection is closed. The clock covers the head only:
it starts on a byte that begins a head (none of the latest request's body is still to come), also one
that arrives in the same segment as the end of the request before it (a pipelined head once waited
for the keep-alive timeout there), and stops when the parser has the whole head. A body is never on it, however long it takes (a 48 MiB
upload over a 3 MiB/s link was cut at 10 s when body bytes that arrived before the handler started
were taken for a new head); the handlers bound a body by the silence between its pieces
(server/http/bodies.py), and idle connections between requests close after aiohttp's keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .connections import RefusalLog, refusal

logger = logging.getLogger("ml_dash.server")


class QuietRequestHandler(RequestHandler):
    __slots__ = ("_head_timer", "_latest_body", "head_timeout_s")

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.head_timeout_s = 10.0
        self._head_timer: asyncio.TimerHandle | None = None
        self._latest_body: StreamReader | None = None  # the body of the latest request whose head was parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        if isinstance(manager, QuietServer) and not manager.make_room():
            self._manager = None  # never served: connection_lost has nothing to undo
            manager.refusals.note(manager.max_connections)
            # answered before its request is read; a client whose request had already arrived may see a reset
            # instead (closing unread bytes does that): either is retried
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal(manager.max_connections))
            transport.close()
            return
        if isinstance(manager, QuietServer):
            manager.open_connections += 1
        super().connection_made(transport)

    def owes_nothing(self) -> bool:
        """Whether closing this connection loses nobody anything: no request in hand or queued (an idle
        keep-alive connection, one that never sent a byte, or one whose head is still arriving: a legitimate
        head arrives whole in a moment, so the oldest of those is a slow one)."""
        waiting = self._waiter is not None and not self._waiter.done()
        return self.transport is not None and waiting and not self._messages

    def data_received(self, data: bytes) -> None:
        # Whether the connection is in a head is the parser's state, which it does not show: after these
        # bytes it is in one when their last byte neither completed a message (a head without a body, or
        # a body's last byte) nor went into a body. So the last byte is fed on its own, and what it did
        # is seen. Judging by the state before the bytes instead missed a head that begins in the
        # segment that ends the previous request (a body's end, or a whole GET): it had no clock, and
        # waited for the keep-alive timeout (75 s), not the head timeout.
        if len(data) > 1:
            self._feed(data[:-1])
            data = data[-1:]
        completed = self._feed(data)
        if self._latest_body is not None and not self._latest_body.is_eof():
            return  # in a body: no clock (body bytes also arrive before the handler starts, and after it returns)
        # b"": aiohttp parsing bytes it held back (pipelined requests past its queue); what followed the
        # message they completed is not known, so a head is taken to have begun (an idle connection then
        # closes at the head timeout rather than the keep-alive one, and nothing is lost)
        in_head = not completed if data else completed
        if in_head and self._head_timer is None:
            self._head_timer = self._loop.call_later(self.head_timeout_s, self._head_too_slow, self._request_count)

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; whether it completed a message (a head, or the body of the latest one)."""
        count, body = self._request_count, self._latest_body
        body_was_done = body is None or body.is_eof()
        super().data_received(data)
        if self._request_count != count:  # a head was completed: its clock stops; its body has none
            self._stop_head_clock()
            self._latest_body = self._messages[-1][1] if self._messages else None
            return True
        return not body_was_done and body is not None and body.is_eof()

    def _head_too_slow(self, count: int) -> None:
        self._head_timer = None
        if self._request_count != count or self.transport is None:
            return
        logger.info("closed a connection whose request head took over %.0f s", self.head_timeout_s)
        if self._waiter is not None:  # no request in hand: nothing is owed an answer
            self.transport.close()
        else:  # a pipelined head trickles while a request is handled: answer that one, then close
            self.close()

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_clock()
        if isinstance(self._manager, QuietServer):  # None for a connection refused at once: never counted
            self._manager.open_connections -= 1
        super().connection_lost(exc)

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
    head_timeout_s = 10.0
    max_connections = 0  # 0: no limit (server/http/connections.py)
    # connections whose descriptor is open (aiohttp's own list keeps a closed one until its task ends)
    open_connections = 0
    refusals: RefusalLog

    def __call__(self) -> RequestHandler:
        handler = QuietRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.head_timeout_s = self.head_timeout_s
        return handler

    def make_room(self) -> bool:
        """Whether a new connection may be served: under the limit, or in the place of the oldest
        connection that is owed nothing, closed for it."""
        if not self.max_connections or self.open_connections < self.max_connections:
            return True
        for handler in self._connections:  # oldest first
            if isinstance(handler, QuietRequestHandler) and handler.owes_nothing():
                handler.force_close()
                return True
        return False


class QuietAppRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections use :class:`QuietRequestHandler`, at most
    ``max_connections`` of them (0: no limit; server/http/connections.py)."""

    def __init__(self, app: web.Application, *, head_timeout_s: float = 10.0, max_connections: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.head_timeout_s = head_timeout_s
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = QuietServer  # same state; only the handler it makes per connection differs
        assert isinstance(server, QuietServer)
        server.head_timeout_s = self.head_timeout_s
        server.max_connections = self.max_connections
        server.refusals = RefusalLog()
        return server
