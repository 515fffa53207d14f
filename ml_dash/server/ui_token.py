"""``ml-dash ui``'s access rule: only who holds the token it printed reads through it.

A port on 127.0.0.1 is open to every account of the machine (a login node, a lab server), so a UI
without a sign-in hands each of them the runs of whoever started it, files they could not read
directly included. As Jupyter does, ``ml-dash ui`` makes a random token at start (or takes
``ML_DASH_UI_TOKEN``) and prints ``http://127.0.0.1:PORT/?token=...``; every request but
``GET /health`` (which says nothing of the runs) must then carry the token, in one of three ways:

* ``?token=`` in the URL. On the page (``GET /``) the answer is the session cookie and a redirect
  (303) to the same URL without the token, so that it leaves the address bar at once and can never
  be shared with a view's URL; elsewhere (a script's GET) it lets that request in.
* The cookie ``ml_dash_ui_<port>`` (named after the port, like the server's sessions): an HMAC of
  the token, not the token. HttpOnly, so no script reads it.
* ``Authorization: token <token>`` (Jupyter's header), for scripts.

Without one: a 401 whose page (or JSON ``error``) says to open the URL ``ml-dash ui`` printed or to
start it with ``--no-auth``. Tokens are compared as bytes in constant time; none is ever logged or
quoted in a reply, and every page carries ``Referrer-Policy: no-referrer`` (server/ui.py).

Why ``SameSite=Lax`` where the server's sessions are ``Strict``: the printed URL is often clicked in
another site's page (a terminal or notebook in the browser, a chat), and a Strict cookie set there is
not sent on the redirect that follows, nor on any later click from such a page: the UI would refuse
the very URL it printed. Lax sends the cookie on top-level GET navigations only, which here can only
show the user their own runs: ``ml-dash ui`` has no route that writes, another site cannot read the
answers (no CORS, no framing), sub-requests from other sites carry no Lax cookie, and the Host check
(server/hosts.py) refuses DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import sessions
from .errors import json_response

#: The UI's token (absent: no token is asked, as on ``ml-dash server`` or ``ml-dash ui --no-auth``).
UI_TOKEN = web.AppKey("ui_token", str)
COOKIE = "ml_dash_ui"
#: Paths anyone may ask: nothing of the runs.
OPEN_PATHS = frozenset({"/health"})
#: A token we accept from the environment: long enough not to be guessed, and URL-safe as it stands.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
NEEDED = ("this ml-dash ui is only for the account that started it: open the URL it printed "
          "(http://127.0.0.1:PORT/?token=..., also in the file named beside it), or start it with "
          "--no-auth to let every account on this machine read these runs")
WRONG = ("the token in the URL is not this ml-dash ui's (each start prints a new URL: was it restarted?); "
         + NEEDED)


def check_token(token: str) -> str:
    """``token`` if it may serve as a UI token, else a ValueError that does not quote it."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError("a UI token is 16 to 256 characters of A-Z, a-z, 0-9 and . _ ~ - "
                         f"(this one has {len(token)} characters)")
    return token


def cookie_value(token: str) -> str:
    """What the cookie holds: it proves the token without being it (it cannot serve as ``?token=``)."""
    return hmac.new(token.encode(), b"ml-dash ui session", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    # bytes, not str: compare_digest refuses a str that is not ASCII, and a query may hold anything
    return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _header_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "token" else None


def _is_page(request: web.Request) -> bool:
    return request.path == "/" and request.method in ("GET", "HEAD")


@web.middleware
async def token_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Let in a request that carries the app's token (when it has one); see the module's docstring."""
    token = request.app.get(UI_TOKEN)
    if token is None or request.path in OPEN_PATHS:
        return await handler(request)
    in_url = request.query.get("token")
    url_ok = _same(in_url, token)
    if not (url_ok or _same(_header_token(request), token)
            or _same(request.cookies.get(sessions.cookie_name(request, COOKIE)), cookie_value(token))):
        return _refusal(request, NEEDED if in_url is None else WRONG)
    if in_url is not None and _is_page(request):
        return _without_token(request, token if url_ok else None)
    return await handler(request)


def _without_token(request: web.Request, token: str | None) -> web.Response:
    """A redirect to the page's URL without ``token``, setting the cookie when the token was right."""
    kept = [(key, value) for key, value in request.query.items() if key != "token"]
    response = web.Response(status=303, headers={"Location": str(request.rel_url.with_query(kept)),
                                                 "Cache-Control": "no-store"})
    if token is not None:
        response.set_cookie(sessions.cookie_name(request, COOKIE), cookie_value(token), path="/",
                            max_age=sessions.SESSION_S, httponly=True, samesite="Lax",
                            secure=sessions.over_https(request))
    return response


def _refusal(request: web.Request, reason: str) -> web.Response:
    """401: JSON for the API, a page a person can read for the rest (no script, no style: the UI's
    own files are behind the token too)."""
    if request.path.startswith("/api/"):
        response = json_response({"error": reason}, 401)
    else:
        page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ml-dash ui</title></head>"
                f"<body><h1>ml-dash ui</h1><p>{html.escape(reason)}.</p></body></html>")
        response = web.Response(status=401, text=page, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["WWW-Authenticate"] = 'Token realm="ml-dash ui"'
    return response
