"""The ml-dash agent: buffers events from any thread and writes them from one asyncio loop.

It knows nothing of experiments: it moves typed events for named streams of a
run directory. Installed as ``ml_dash.agent`` (pyproject's package-dir maps
``agent/`` there); ``agent/upload/`` is the upload client.

The names below load on first use, so that importing one engine module (the
server's worker pool, say) does not start the whole engine's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from ..format.atomic import FileJob, file_entry, write_document
    from ..format.jsonlines import ReadReport, iter_records, restore_metric_row
    from ..format.vocabulary import utc_iso
    from .rundir import RunWriter
    from .runtime import Agent
    from .stats import DROP_REASONS, StreamCounters
    from .streams import DocumentSlot, RowStream, Seal, SizedRow, StreamClosedError

_HOMES = {
    "FileJob": "..format.atomic", "file_entry": "..format.atomic", "write_document": "..format.atomic",
    "ReadReport": "..format.jsonlines", "iter_records": "..format.jsonlines",
    "restore_metric_row": "..format.jsonlines",
    "RunWriter": ".rundir", "utc_iso": "..format.vocabulary", "Agent": ".runtime",
    "DROP_REASONS": ".stats", "StreamCounters": ".stats",
    "DocumentSlot": ".streams", "RowStream": ".streams", "Seal": ".streams", "SizedRow": ".streams",
    "StreamClosedError": ".streams",
}


__getattr__ = lazy_attributes(__name__, _HOMES)


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
