"""Online, the default entity is the API key's owner, as W&B's is the account of its key: the server's
read API says who a key belongs to (``GET /api/v1/session`` -> ``{"owner": ...}``), and a prefix under
another owner would be refused by every upload (403).

Asked once at ``wandb.init``, within :data:`TIMEOUT_S`. When the server cannot say (down, an old
server, a key it refuses) the entity falls back to the offline default, with a warning that names the
fix (``entity=`` or ``ML_DASH_USER_NAME``); the run starts either way, as ml-dash runs do.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from ..format.credentials import credential_headers

logger = logging.getLogger("ml_dash")

TIMEOUT_S = 5.0
#: Loopback and cluster-internal servers are reached directly, as the SDK's own reads reach them.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def key_owner(server: str, api_key: str | None) -> str | None:
    """The owner ``api_key`` signs in as on ``server``, or None (with a warning) when it cannot be learnt."""
    if not api_key:
        return None
    request = urllib.request.Request(f"{server.rstrip('/')}/api/v1/session", headers=credential_headers(api_key, None))
    try:
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            owner = json.loads(response.read()).get("owner")
    except (OSError, ValueError, AttributeError) as exc:  # URLError/HTTPError are OSErrors; a body not a dict
        logger.warning("ml-dash: wandb.init could not learn from %s whose API key this is (%s); pass entity= or set "
                       "ML_DASH_USER_NAME, or the server will refuse the run's uploads", server, type(exc).__name__)
        return None
    if not isinstance(owner, str) or not owner:
        logger.warning("ml-dash: %s does not accept this API key; pass entity= or set ML_DASH_USER_NAME", server)
        return None
    return owner
