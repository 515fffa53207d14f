"""The ml-dash agent: buffers events from any thread and writes them from one asyncio loop.

It knows nothing of experiments: it moves typed events for named streams of a
run directory. Installed as ``ml_dash.agent``.
"""

from .atomic import FileJob, file_entry, write_document
from .jsonlines import ReadReport, iter_records, restore_metric_row
from .rundir import RunWriter, utc_iso
from .runtime import Agent
from .stats import DROP_REASONS, StreamCounters
from .streams import DocumentSlot, RowStream, Seal, SizedRow, StreamClosedError

__all__ = [
    "DROP_REASONS",
    "Agent",
    "DocumentSlot",
    "FileJob",
    "ReadReport",
    "RowStream",
    "RunWriter",
    "Seal",
    "SizedRow",
    "StreamClosedError",
    "StreamCounters",
    "file_entry",
    "iter_records",
    "restore_metric_row",
    "utc_iso",
    "write_document",
]
