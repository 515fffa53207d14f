"""Conditional JSON replies: an ETag of the reply's bytes, and 304 when the client already holds them.

The UI polls a running run's document every second; while nothing changed, each poll costs a
header instead of the run's params and counts again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from ml_dash.format.jsonlines import dumps


def conditional_json(request: web.Request, payload: Any) -> web.Response:
    """``payload`` as JSON with its ETag, or an empty 304 when ``If-None-Match`` names that ETag."""
    body = dumps(payload)
    tag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    # no-store: a run's document stays out of shared and disk caches; the UI sends If-None-Match itself
    headers = {"ETag": tag, "Cache-Control": "no-store"}
    held = {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}
    if tag in held:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
