"""The run's last documents: retried until the close deadline, and what stays unwritten is named.

During a run a document whose write fails (a full disk) is simply written again on the next pass.
At the end there is no next pass: ``experiment.json`` with the run's end status, the parameters, the
files' metadata would stay as they were on disk, and ``ml-dash ls`` would show a COMPLETED run as
CRASHED (RUNNING on disk, no writer). So the close retries them with a short backoff until its
deadline (space freed meanwhile, by the user or a cleaner, lets them through), and what still could
not be written is kept in :attr:`RunWriter.unwritten_documents` for the end of the run to report and
to return False for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

#: Used when the close has no deadline (``close_timeout_s=None`` is not allowed today; a bound anyway).
DEFAULT_RETRY_S = 10.0
#: Left for the fsync and the release after the last try, so the close still ends inside its deadline.
MARGIN_S = 0.25
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 1.0


async def retry_unwritten(unwritten: Callable[[], list[Path]], write_all: Callable[[], Awaitable[None]],
                          deadline: float | None, clock: Callable[[], float] = time.monotonic) -> list[Path]:
    """Call ``write_all()`` (the writer's own pass over every document, with its error handling) again
    until ``unwritten()`` is empty or ``deadline`` (on ``clock``, the writer's monotonic clock) is near;
    returns the paths still unwritten."""
    if deadline is None:
        deadline = clock() + DEFAULT_RETRY_S
    delay = FIRST_DELAY_S
    while True:
        paths = unwritten()
        if not paths:
            return []
        left = deadline - MARGIN_S - clock()
        if left <= 0:
            return paths
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, MAX_DELAY_S)
        await write_all()
