"""The read API's caps, and ``GET /api/v1/limits``, which tells the web UI what they are.

The handlers enforce these numbers; the UI asks for them once at start (ui/static/limits.js) rather
than holding copies that could drift from the server it talks to (an older or newer server, a
changed cap). Reply::

    {"max_read_rows": 100000, "max_buckets": 10000, "max_compared_runs": 50,
     "max_compared_buckets": 200000, "statuses": ["CREATED", "RUNNING", ...]}
"""

from __future__ import annotations

from aiohttp import web

from ml_dash.format.vocabulary import STATUSES

from ..access import caller
from ..http.answers import json_response

#: Rows (or log lines) in one page of a read: ``limit=`` at most this.
MAX_READ_ROWS = 100_000
#: Buckets in one reply of a metric (``buckets=`` at most this), for one run or each compared run.
MAX_BUCKETS = 10_000
#: Runs in one comparison (``runs=`` of /compare/metrics).
MAX_COMPARED_RUNS = 50
#: Buckets of all the runs of one comparison: 50 runs at 4,000 buckets (a chart 4,000 pixels wide).
#: Each is its own, so the product, not either number, is what a request costs.
MAX_COMPARED_BUCKETS = 200_000


def limits() -> dict[str, object]:
    """The caps as the UI reads them: the constants above and every status a run may show."""
    return {"max_read_rows": MAX_READ_ROWS, "max_buckets": MAX_BUCKETS, "max_compared_runs": MAX_COMPARED_RUNS,
            "max_compared_buckets": MAX_COMPARED_BUCKETS, "statuses": list(STATUSES)}


async def get_limits(request: web.Request) -> web.Response:
    """The caps, to whoever may read: the same rule as the rest of the read API (nothing in them is
    private, but a signed-out page has no use for them either)."""
    await caller(request)
    return json_response(limits())
