"""``Server-Timing``: how long the server spent on each request, as the browser's developer tools and
the benchmarks read it (the time from the request's head to the response's, without the network)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web


@web.middleware
async def timing_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    began = time.perf_counter()
    response = await handler(request)
    if not response.prepared:  # a streamed response has sent its headers already
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1e3:.2f}"
    return response
