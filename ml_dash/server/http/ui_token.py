"""``ml-dash ui``'s access rule: only who holds the token it printed reads through it.

A port on 127.0.0.1 is open to every account of the machine (a login node, a lab server), so a UI
without a sign-in hands each of them the runs of whoever started it, files they could not read
directly included. As Jupyter does, ``ml-dash ui`` makes a random token at start (or takes
``ML_DASH_UI_TOKEN``) and prints ``http://127.0.0.1:PORT/#token=...``.

Where the token may live, and why not in a cookie: a browser keeps cookies per host, not per port,
so a cookie set by ``127.0.0.1:8090`` is sent to every port of ``127.0.0.1``, to a listener of
another account included (one link to it is enough), which could then replay it. ``SameSite`` does
not help (another port of the same host is the same site). So no credential of ``ml-dash ui`` is
ever a cookie: the token rides in the URL's fragment (never sent to any server, nor logged, nor in a
Referer); the page's script (ui/static/token.js) moves it to ``localStorage``, which browsers keep
per origin (scheme, host and port: a page of another port cannot read it), takes it off the address
bar, and sends it on each request as ``Authorization: token <token>`` (Jupyter's header, which
scripts send too).

The rule, then, by path:

* ``GET /health``: open (it says nothing of the runs).
* ``GET /`` and ``/ui/<file>``: the page, its scripts, styles and vendored libraries hold no run
  data and are served to anyone: the page must load to read the fragment. ``/?token=X`` (the form
  printed before, pasted from an old terminal) is sent on (303) to ``/#token=X``: the token leaves
  the request line at once and no cookie is set.
* Everything else (``/api/...``, file downloads included): the header, or a 401 that says to open
  the URL ``ml-dash ui`` printed or to start it with ``--no-auth``. No query token (a URL is
  logged, kept in history, shared), no cookie.

Tokens are compared as bytes in constant time; none is ever logged or quoted in a reply, and every
response carries ``Referrer-Policy: no-referrer`` (server/ui.py).
"""

from __future__ import annotations

import hmac
import html
import re
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from .answers import json_response

#: The UI's token (absent: no token is asked, as on ``ml-dash server`` or ``ml-dash ui --no-auth``).
UI_TOKEN = web.AppKey("ui_token", str)
#: Paths anyone may ask: nothing of the runs.
OPEN_PATHS = frozenset({"/health"})
#: A token we accept from the environment: long enough not to be guessed, and URL-safe as it stands.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
#: The header's scheme, for the 401's ``WWW-Authenticate`` (the page tells this refusal from others by it).
SCHEME = "Token"
NEEDED = ("this ml-dash ui is only for the account that started it: open the URL it printed "
          "(http://127.0.0.1:PORT/#token=..., also in the file named beside it), or start it with "
          "--no-auth to let every account on this machine read these runs")
WRONG = ("the token this page holds is not this ml-dash ui's (each start prints a new URL: was it restarted?); "
         + NEEDED)


def check_token(token: str) -> str:
    """``token`` if it may serve as a UI token, else a ValueError that does not quote it."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError("a UI token is 16 to 256 characters of A-Z, a-z, 0-9 and . _ ~ - "
                         f"(this one has {len(token)} characters)")
    return token


def _same(given: str | None, expected: str) -> bool:
    # bytes, not str: compare_digest refuses a str that is not ASCII, and a header may hold anything
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _header_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == SCHEME.lower() else None


def _is_static(request: web.Request) -> bool:
    """The page and its files: the same for everyone, no run data in them."""
    return request.method in ("GET", "HEAD") and (request.path == "/" or request.path.startswith("/ui/"))


@web.middleware
async def token_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Let in a request that carries the app's token (when it has one); see the module's docstring."""
    token = request.app.get(UI_TOKEN)
    if token is None or request.path in OPEN_PATHS:
        return await handler(request)
    if _is_static(request):
        if request.path == "/" and "token" in request.query:
            return _to_fragment(request)
        return await handler(request)
    given = _header_token(request)
    if not _same(given, token):
        return _refusal(request, NEEDED if given is None else WRONG)
    return await handler(request)


def _to_fragment(request: web.Request) -> web.Response:
    """``/?token=X&...`` sent on to ``/?...#token=X``: the same view, the token where no server sees it.
    Whether X is right is not checked here: the page's first API request says so."""
    kept = [(key, value) for key, value in request.query.items() if key != "token"]
    location = str(request.rel_url.with_query(kept)) + "#token=" + quote(request.query["token"], safe="")
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _refusal(request: web.Request, reason: str) -> web.Response:
    """401: JSON for the API, a page a person can read for the rest."""
    if request.path.startswith("/api/"):
        response = json_response({"error": reason}, 401)
    else:
        page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ml-dash ui</title></head>"
                f"<body><h1>ml-dash ui</h1><p>{html.escape(reason)}.</p></body></html>")
        response = web.Response(status=401, text=page, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["WWW-Authenticate"] = f'{SCHEME} realm="ml-dash ui"'
    return response
