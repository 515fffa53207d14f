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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rundir import RunWriter

#: Used when the close has no deadline (``close_timeout_s=None`` is not allowed today; a bound anyway).
DEFAULT_RETRY_S = 10.0
#: Left for the fsync and the release after the last try, so the close still ends inside its deadline.
MARGIN_S = 0.25
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 1.0


async def retry_unwritten(writer: RunWriter) -> list[Path]:
    """Write the writer's dirty documents again until they are written or the close deadline
    (``writer.close_deadline``, monotonic) is near; returns the paths still unwritten."""
    deadline = writer.close_deadline
    if deadline is None:
        deadline = time.monotonic() + DEFAULT_RETRY_S
    delay = FIRST_DELAY_S
    while True:
        unwritten = [slot.path for slot in writer.documents.values() if slot.dirty]
        if not unwritten:
            return []
        left = deadline - MARGIN_S - time.monotonic()
        if left <= 0:
            return unwritten
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, MAX_DELAY_S)
        await writer._write_documents(final=True)  # the writer's own pass (every document), with its error handling
