"""Who a request acts as, what it may read, and the app's shared state: used by every route module.

A request acts as the owner of its API key (``Authorization: Bearer``), as the user it names on a
development server (``X-ML-Dash-User`` with --allow-user-name), or as the owner of its browser
session (a cookie, read-only); on ``ml-dash ui`` (open reads) whoever got past its token
(server/http/ui_token.py; anyone with ``--no-auth``) reads everything.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..format.credentials import USER_HEADER
from ..format.naming import validate_metric_name, validate_prefix
from . import sessions
from .auth import parse_token
from .blobs.fs import LocalBlobStore
from .config import ServerConfig
from .errors import BadRequest, Forbidden, NotFound, Unauthorized
from .http.admission import IngestGate
from .ingest.prepare import Preparer
from .local_index import LocalIndex
from .storage.sqlite.store import Storage

STORAGE = web.AppKey("storage", Storage)
BLOBS = web.AppKey("blobs", LocalBlobStore)
CONFIG = web.AppKey("config", ServerConfig)
PREPARER = web.AppKey("preparer", Preparer)
LOCAL_INDEX = web.AppKey("local_index", LocalIndex)
GATE = web.AppKey("ingest_gate", IngestGate)
#: Who reads an ``ml-dash ui`` (open_reads): its token, not a sign-in, lets a reader in.
LOCAL_READER = "local"


async def caller(request: web.Request) -> str:
    """The owner name the request acts as (401 when it carries no valid credentials): a key, a
    development server's user name, or a browser session, which may only read."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        parsed = parse_token(auth[len("Bearer "):].strip())
        owner = await request.app[STORAGE].key_owner(*parsed) if parsed else None
        if owner is None:
            raise Unauthorized("invalid or revoked API key")
        return owner
    user = request.headers.get(USER_HEADER)
    if user is not None and request.app[CONFIG].allow_user_name:
        try:
            validate_prefix(f"{user}/p/n")
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"{USER_HEADER}: {exc}") from None
        return user
    token = sessions.cookie_token(request)
    if token is not None:
        owner = await request.app[STORAGE].session_owner(sessions.session_digest(token))
        if owner is None:
            raise Unauthorized("the browser session has ended; sign in again")
        if request.method not in ("GET", "HEAD"):
            raise Forbidden("a browser session may only read; writes need an API key")
        return owner
    if request.app[CONFIG].open_reads and request.method in ("GET", "HEAD"):
        return LOCAL_READER
    raise Unauthorized("send 'Authorization: Bearer <api key>'")


def run_prefix(request: web.Request) -> tuple[str, str, str]:
    info = request.match_info
    try:
        return validate_prefix(f"{info['owner']}/{info['project']}/{info['name']}")
    except (TypeError, ValueError) as exc:
        raise BadRequest(str(exc)) from None


def metric_of(request: web.Request) -> str:
    """The route's ``{metric}``, checked as the SDK checks a metric name (400 if it is none)."""
    try:
        return validate_metric_name(request.match_info["metric"])
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


async def check_read(request: web.Request, who: str, owner: str) -> None:
    """Forbidden unless ``who`` may read ``owner``'s runs (anyone may, on ``ml-dash ui``)."""
    if not request.app[CONFIG].open_reads and not await request.app[STORAGE].can_read(who, owner):
        raise Forbidden(f"{who!r} may not read {owner!r}'s runs")


async def require_read(request: web.Request, owner: str) -> None:
    await check_read(request, await caller(request), owner)


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name}={value} must be within [{low}, {high}]")
    return value


async def readable_owner(request: web.Request) -> str:
    """``?owner=`` (default: the caller), checked readable by the caller."""
    who = await caller(request)
    owner = request.query.get("owner", who)
    await check_read(request, who, owner)
    return owner


async def experiment_of(request: web.Request) -> dict[str, Any]:
    owner, project, name = run_prefix(request)
    await require_read(request, owner)
    exp = await request.app[STORAGE].experiment(owner, project, name)
    if exp is None:
        raise NotFound(f"no experiment {owner}/{project}/{name}")
    return exp


def public_view(request: web.Request, exp: dict[str, Any]) -> dict[str, Any]:
    """The experiment as clients see it: a silent RUNNING run past the timeout shows as CRASHED."""
    out = dict(exp)
    if out["status"] == "RUNNING" and time.time() - out["last_seen"] > request.app[CONFIG].crashed_after_s:
        out["status"] = "CRASHED"
    return out
