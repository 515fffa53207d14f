"""``exp.stats()``: the accounting of every event of a run, per stream.

Per stream: ``accepted == written + dropped + pending`` (this process's events,
``dropped`` by reason), ``waits`` (calls that waited on a full buffer), and in
remote mode ``acknowledged`` (rows the server stored), ``set_aside`` (rows it
will never get, kept on disk, see agent/upload/rejects.py) and ``pending_upload``;
those three cover the whole stream file, earlier processes' rows included.
"""

from __future__ import annotations

from typing import Any

from .agent import RowStream, RunWriter


def _stream_stats(stream: RowStream) -> dict[str, Any]:
    accepted = stream.accepted()
    dropped = dict(stream.counters.dropped)
    pending = accepted - stream.counters.written - sum(dropped.values())
    return {"accepted": accepted, "written": stream.counters.written, "dropped": dropped, "pending": pending,
            "waits": stream.waits}


def collect_stats(writer: RunWriter | None, upload: dict[str, dict[str, int]] | None) -> dict[str, Any]:
    """The stats of ``writer``'s streams and files, with the upload's per-stream counts when given."""
    if writer is None:
        return {"streams": {}, "totals": _totals({})}
    streams = {name: _stream_stats(s) for name, s in writer.streams.items()}
    for name, counts in (upload or {}).items():
        if name in streams:
            streams[name].update(counts)
    files = writer.file_counters
    pending_files = len(writer.file_jobs)
    streams["files"] = {"accepted": files.written + files.dropped_total + pending_files, "written": files.written,
                        "dropped": dict(files.dropped), "pending": pending_files, "waits": 0}
    return {"streams": streams, "totals": _totals(streams)}


def _totals(streams: dict[str, Any]) -> dict[str, Any]:
    dropped: dict[str, int] = {}
    for s in streams.values():
        for reason, n in s["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    totals: dict[str, Any] = {
        "accepted": sum(s["accepted"] for s in streams.values()),
        "written": sum(s["written"] for s in streams.values()),
        "dropped": dropped,
        "pending": sum(s["pending"] for s in streams.values()),
    }
    for key in ("acknowledged", "set_aside", "pending_upload"):
        if any(key in s for s in streams.values()):
            totals[key] = sum(s.get(key, 0) for s in streams.values())
    return totals
