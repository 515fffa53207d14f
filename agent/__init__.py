"""The ml-dash agent: buffers events from any thread and writes them from one asyncio loop.

It knows nothing of experiments: it moves typed events for named streams of a
run directory. Installed as ``ml_dash.agent``.
"""

from .jsonlines import ReadReport, iter_records, restore_metric_row
from .rundir import FileJob, RunWriter, file_entry, utc_iso
from .runtime import Agent
from .stats import DROP_REASONS, StreamCounters
from .streams import DocumentSlot, RowStream, StreamClosedError

__all__ = [
    "Agent",
    "DROP_REASONS",
    "DocumentSlot",
    "FileJob",
    "ReadReport",
    "RowStream",
    "RunWriter",
    "StreamClosedError",
    "StreamCounters",
    "file_entry",
    "iter_records",
    "restore_metric_row",
    "utc_iso",
]
