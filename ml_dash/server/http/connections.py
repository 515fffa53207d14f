"""How many connections the server holds at once, and what a connection past that gets.

aiohttp accepts every connection it is offered. Each holds a file descriptor until it closes: a silent
one for the keep-alive timeout (75 s), a slow head for the head timeout, a trickling body for as long as
it trickles (a key has at most ``--max-bodies-per-key`` of those, server/http/admission.py). Without a
bound, a few hundred connections that send nothing (no key needed) took every descriptor of a server
under a limit of 1,024 (a common default): it stopped accepting (``accept: Too many open files``, a
traceback a second in its log), ``/health`` timed out, and a request already admitted could not open
the files it writes.

So, as nginx's ``worker_connections`` and uvicorn's ``--limit-concurrency`` do, the server holds at most
``max_connections`` (by default, what its descriptor limit leaves room for, at most
:data:`DEFAULT_MAX_CONNECTIONS`). A new connection past it takes the place of the oldest one that is
owed nothing (no request in hand: an idle keep-alive connection, as nginx reuses those, a silent one, or
one whose head is still arriving, since a legitimate head arrives whole in a moment and the oldest is a
slow one); when every one has a request in hand, it is answered 503 with ``Retry-After`` (which clients
honour) naming the limit, and closed. What requests in hand may hold is bounded apart: a key's bodies
by ``--max-bodies-per-key``, a sign-in's (no key yet) by twice the body timeout for the whole of it.
No limit per address: jobs of a cluster often reach the server through one NAT address, and a
per-address bound would refuse them first; a server on a hostile network belongs behind a proxy that
has one (nginx ``limit_conn``).
"""

from __future__ import annotations

import logging
import time

from ...format.jsonlines import dumps
from .admission import RETRY_AFTER_S

logger = logging.getLogger("ml_dash.server")

#: The most connections held by default, whatever the descriptor limit allows.
DEFAULT_MAX_CONNECTIONS = 4096
#: Descriptors kept for the server itself (its database, logs, worker pipes: about 20) whatever the connections.
RESERVED_DESCRIPTORS = 64
#: Connections the event loop may have accepted before the first of them is refused and closed: two
#: rounds of the listening socket's backlog (aiohttp's 128; the loop accepts that many a round, and
#: closes a refused one a round later), each holding a descriptor for that moment.
ACCEPTED_AT_ONCE = 256
#: How often, at most, refused connections are logged (a flood must not flood the log too).
LOG_EVERY_S = 60.0


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (as Go's runtime does), and return
    the soft limit now in force (where there is no such limit, as on Windows: what the default needs)."""
    try:
        import resource
    except ImportError:
        return 2 * DEFAULT_MAX_CONNECTIONS + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # not allowed here: the soft limit stays
            pass
    return soft


def default_max_connections(descriptors: int) -> int:
    """The connections a process allowed ``descriptors`` open files holds by default: each may also hold
    one file it writes (an upload), the server keeps some for itself, and a burst of new connections
    holds some for a moment before it is refused."""
    return max(16, min(DEFAULT_MAX_CONNECTIONS, (descriptors - RESERVED_DESCRIPTORS - ACCEPTED_AT_ONCE) // 2))


def refusal(limit: int) -> bytes:
    """The whole reply to a connection past ``limit``: 503 with Retry-After, then the connection closes."""
    body = dumps({"error": f"the server holds as many connections as it may ({limit}, its --max-connections); "
                           "retry later", "limit": limit})
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class RefusalLog:
    """Refused connections, logged at most once every :data:`LOG_EVERY_S` with how many since."""

    def __init__(self) -> None:
        self.refused = 0
        self._logged_at = float("-inf")

    def note(self, limit: int) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            logger.warning("refused %d connection(s): the server holds as many as it may (%d, --max-connections)",
                           self.refused, limit)
            self.refused, self._logged_at = 0, now
