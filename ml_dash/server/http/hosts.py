"""Which ``Host`` names a server answers to.

A server bound to loopback answers only loopback names by default: a web page on another site whose
name an attacker resolves to 127.0.0.1 (DNS rebinding) sends its own name as the Host, and is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from .answers import json_response

#: The names a loopback-bound server answers to by default.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: The app's allowed names (absent: any), from ServerConfig.allowed_hosts.
ALLOWED_HOSTS = web.AppKey("allowed_hosts", frozenset)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web.middleware
async def host_middleware(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse a request whose Host header names none of ``request.app['allowed_hosts']`` (when set)."""
    allowed = request.app.get(ALLOWED_HOSTS)
    if allowed is not None:
        name = host_name(request.headers.get("Host", ""))
        if name not in allowed:
            return json_response({"error": f"this server does not answer to the host {name[:100]!r}; start it "
                                           "with --allowed-host NAME to add a name"}, 400)
    return await handler(request)


def host_name(header: str) -> str:
    """The host of a Host header, lower case, without its port ('[::1]:80' -> '[::1]')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
