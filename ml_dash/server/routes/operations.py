"""What a load balancer and a monitoring system ask of an instance.

* ``GET /health``: the process answers (alive). Nothing else is checked: a balancer that restarted
  an instance whenever its database hiccuped would restart every instance at once.
* ``GET /ready``: the database answers a query and the blob store is writable, each within
  :data:`READY_TIMEOUT_S`; 503 naming what is not (never a URL, a password or a driver's message,
  which may carry either: those go to the server's log). A balancer sends requests only to a ready
  instance.
* ``GET /metrics``: Prometheus' text format (server/http/instruments.py), only when the server was
  given a metrics token (``--metrics-token-file`` or ``ML_DASH_METRICS_TOKEN``), and only to a request
  that carries it (``Authorization: Bearer TOKEN``, as Prometheus' ``authorization`` scrape setting
  sends it). It names routes and counts, not runs or owners, but it is the operator's, not a user's:
  an API key does not open it. Without a token configured the route does not exist (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..._version import __version__
from ..access import BLOBS, CONFIG, STORAGE
from ..errors import Unauthorized
from ..http.answers import json_response
from ..http.instruments import INSTRUMENTS

logger = logging.getLogger("ml_dash.server")

#: How long ``/ready`` waits for each store: a balancer's check has its own timeout, a few seconds.
READY_TIMEOUT_S = 2.0


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    checks = {"database": request.app[STORAGE].ping, "blobs": request.app[BLOBS].ping}
    failing = []
    for name, ping in checks.items():
        try:
            await asyncio.wait_for(ping(), READY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - whatever it is, this instance must not get requests now
            logger.warning("not ready: the %s did not answer: %s", name, type(exc).__name__)
            failing.append(name)
    if failing:
        response = json_response({"status": "unready", "failing": failing}, 503)
        response.headers["Retry-After"] = "1"
        return response
    return json_response({"status": "ready", "version": __version__})


def metrics_token_sha256(token: str) -> str:
    """What the server keeps of its metrics token: its sha256 (like an API key's, never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def metrics(request: web.Request) -> web.Response:
    expected = request.app[CONFIG].metrics_token_sha256
    assert expected is not None  # the route exists only with a token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(metrics_token_sha256(given.strip()), expected):
        raise Unauthorized("/metrics needs the server's metrics token: Authorization: Bearer TOKEN")
    body = generate_latest(request.app[INSTRUMENTS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application, with_metrics: bool) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    if with_metrics:
        app.router.add_get("/metrics", metrics)
