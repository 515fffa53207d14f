"""Reading request bodies with a bound on their size and on the time between their pieces.

A client that stops sending in the middle of a body (or sends a byte now and then) would otherwise
hold its handler, its connection and what was read so far until the connection dies. Every read of
a body waits at most ``idle_timeout_s`` for its next piece; then the request fails with 408 (which a
client retries: the server is fine, the transfer was not); so does a body whose connection is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from ..errors import PayloadTooLarge, RequestTimeout


def declared_size(request: web.Request, max_bytes: int) -> int:
    """The bytes the body will take: its ``Content-Length`` (413 at once past ``max_bytes``, before a byte
    of it is read), or ``max_bytes`` when it sends none (chunked)."""
    length = request.content_length
    if length is None:
        return max_bytes
    if length > max_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes is over {max_bytes} bytes")
    return length


async def read_body(request: web.Request, max_bytes: int, idle_timeout_s: float) -> bytes:
    """The whole body, at most ``max_bytes`` (413 beyond)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(request, 1 << 20, idle_timeout_s):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body over {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def body_chunks(request: web.Request, size: int, idle_timeout_s: float) -> AsyncIterator[bytes]:
    """The body in pieces of up to ``size`` bytes, each awaited at most ``idle_timeout_s``."""
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.read(size), idle_timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no part of the request body arrived for {idle_timeout_s:g} s") from None
        except ConnectionResetError:  # the client went away mid-body: its fault, and no bug of ours (no 500)
            raise RequestTimeout("the connection was lost before the whole request body arrived") from None
        if not chunk:
            return
        yield chunk
