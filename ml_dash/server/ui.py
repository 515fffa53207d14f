"""The web UI's files and the headers every response carries.

The UI is static files inside the package (``ml_dash/ui/static``): nothing is built at install time
and nothing is fetched at run time. ``GET /`` is the page (its state lives in the query string, so
any ``/?...`` is the same page), ``GET /ui/<file>`` the scripts, styles and vendored libraries.

Every response carries a strict Content-Security-Policy: scripts and styles only from this server,
no inline script, no plugins, no framing, requests only back to this server. The UI renders every
user-supplied string as text; the policy is the second wall should that ever fail. A stored file is
served under ``sandbox`` with ``nosniff``, so a file that holds HTML or script never runs as part
of the UI.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: For stored files shown or downloaded: no script, no plugins, a unique origin.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: on every response as its head is sent, so a response a handler streams
    (a file download) gets them as well as one returned whole (a middleware sees the streamed one only
    after its head has left)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"


async def index(request: web.Request) -> web.StreamResponse:
    return _static_file("index.html")


async def static(request: web.Request) -> web.StreamResponse:
    return _static_file(request.match_info["path"])


def _static_file(name: str) -> web.StreamResponse:
    """A file of the UI by its relative name; anything outside the static folder is a 404."""
    path = (STATIC / name).resolve()
    if STATIC not in path.parents or not path.is_file() or path.suffix not in _TYPES:
        raise NotFound(f"no UI file {name[:100]!r}")
    response = web.FileResponse(path, headers={"Content-Type": _TYPES[path.suffix], "Cache-Control": "no-cache"})
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/ui/{path:.+}", static)
