"""Refuse a request whose path or query holds a NUL character, before any handler sees it.

SQLite ends a statement's text at a NUL (a log search for "step\\0" was a 500) and file systems
refuse one in a name (a UI path holding one was a 500). One check here instead of one in each
handler. (Percent-escapes that are not UTF-8 arrive as replacement characters, which every handler
takes as text.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .answers import json_response


@web.middleware
async def text_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """A 400 naming the part of the request (never quoting it) that holds a NUL."""
    if "\x00" in request.path:
        return json_response({"error": "the request's path holds a NUL character"}, 400)
    if any("\x00" in key or "\x00" in value for key, value in request.query.items()):
        return json_response({"error": "the request's query holds a NUL character"}, 400)
    return await handler(request)
