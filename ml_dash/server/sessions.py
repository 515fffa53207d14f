"""Browser sessions for the web UI: an API key (or, on a development server, a user name) is exchanged
once for a session cookie, so that the key never lives in the page.

The cookie is ``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no other site's page can
send it) and ``Secure`` when the browser came over https (directly, or through a TLS-terminating
proxy on this machine). Only its SHA-256 is stored, like a key's.
A session may only read: writes still need a key, so a page that somehow got a request out with the
cookie could change nothing. Routes::

    POST   /api/v1/session   {"api_key": "mld_..."} or, with --allow-user-name, {"user": "alice"}
    GET    /api/v1/session   {"owner": ...} of the cookie's session (401 without one)
    DELETE /api/v1/session   sign out: the session is forgotten and the cookie expired
"""

from __future__ import annotations

import hashlib
import secrets
import time

from aiohttp import web

from ..format.jsonlines import DecodeError, loads
from ..format.naming import validate_prefix
from .auth import parse_token
from .errors import BadRequest, PayloadTooLarge, Unauthorized
from .http.answers import json_response
from .http.bodies import read_body
from .storage.protocol import Storage

COOKIE = "ml_dash_session"
SESSION_S = 7 * 24 * 3600  # a week, as a browser session of a tracker is expected to last
MAX_SIGN_IN_BYTES = 4096


def session_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_name(request: web.Request, base: str = COOKIE) -> str:
    """The session cookie's name on this server: ``base`` with its port when the URL names one.
    Browsers keep cookies per host, not per port, so two servers on one machine (a team's and a local
    ``ml-dash ui``, say) would otherwise sign each other out."""
    try:
        port = request.url.port
    except ValueError:  # a Host header whose port is no port: that request gets the plain name
        port = None
    return base if port in (None, 80, 443) else f"{base}_{port}"


LOOPBACK_PEERS = ("127.0.0.1", "::1")


def over_https(request: web.Request) -> bool:
    """Whether the browser reached us over https: directly, or through a reverse proxy on this machine
    that terminated TLS and says so (``X-Forwarded-Proto: https``, trusted from loopback only, as
    uvicorn and gunicorn do by default; from anywhere else the header could be anyone's)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return forwarded == "https" and request.remote in LOOPBACK_PEERS


def cookie_token(request: web.Request) -> str | None:
    token = request.cookies.get(cookie_name(request))
    return token if token and len(token) <= 128 else None


async def sign_in(request: web.Request, storage: Storage, allow_user_name: bool,
                  body_idle_timeout_s: float) -> web.Response:
    """Check the key (or, in development mode, the user name) in the JSON body; set the session cookie."""
    too_long = BadRequest(f"a sign-in body is at most {MAX_SIGN_IN_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_SIGN_IN_BYTES:
        raise too_long
    if request.content_type != "application/json":
        raise BadRequest("sign in with a JSON body: {\"api_key\": ...}")
    # to its end (one read returns what has arrived); a body that goes silent gets its 408, and so does one that
    # trickles for twice that long (no key yet: nothing else bounds how long it holds its connection)
    try:
        raw = await read_body(request, MAX_SIGN_IN_BYTES, body_idle_timeout_s, whole_within_s=2 * body_idle_timeout_s)
    except PayloadTooLarge:
        raise too_long from None
    try:
        body = loads(raw)
    except DecodeError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest("sign in with a JSON object: {\"api_key\": ...}")
    owner, key_id = await _owner_of(body, storage, allow_user_name)
    token = secrets.token_urlsafe(32)
    await storage.add_session(session_digest(token), owner, time.time() + SESSION_S, key_id)
    response = json_response({"owner": owner})
    response.set_cookie(cookie_name(request), token, max_age=SESSION_S, path="/", httponly=True,
                        samesite="Strict", secure=over_https(request))
    return response


async def _owner_of(body: dict, storage: Storage, allow_user_name: bool) -> tuple[str, str | None]:
    """(owner, key id) the body signs in as."""
    key = body.get("api_key")
    if isinstance(key, str):
        parsed = parse_token(key.strip())
        owner = await storage.key_owner(*parsed) if parsed else None
        if parsed is None or owner is None:
            raise Unauthorized("invalid or revoked API key")
        return owner, parsed[0]
    user = body.get("user")
    if isinstance(user, str) and allow_user_name:
        try:
            validate_prefix(f"{user}/p/n")
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"user: {exc}") from None
        return user, None
    if isinstance(user, str) and user:  # a user name, on a server that takes keys only
        raise BadRequest("this server signs in with API keys only (user names need a server started with "
                         "--allow-user-name)")
    raise BadRequest("sign in with an API key: {\"api_key\": ...}" + (" or a user name: {\"user\": ...}"
                                                                        if allow_user_name else ""))


async def sign_out(request: web.Request, storage: Storage) -> web.Response:
    token = cookie_token(request)
    if token is not None:
        await storage.drop_session(session_digest(token))
    response = json_response({"signed_out": True})
    response.del_cookie(cookie_name(request), path="/")
    return response
