"""``ml-dash show RUN_DIR``: one run at a glance, as a W&B run's summary reads.

    alice/my-project/first-run  [COMPLETED]  /home/me/.dash/alice/my-project/first-run
      started 2026-12-07T08:00:00Z, ended 2026-12-07T08:01:23Z (ran 1 min 23 s)
      metric train: 100 rows
        loss  last 0.12 at step 99  best (min) 0.1 at step 87  max 2.3 at step 0
      logs: 3 lines; files: 1
      params: {"lr": 0.001}

The status reason follows the times when the run has one (a FAILED run's exception). "Best" is the
rule of ml_dash/_run/metric_summary.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .._run.announce import DEFAULT_ROOT
from .._run.metric_summary import describe
from .._run.reading import RunSummary, summarise
from ..capture.system import SYSTEM_METRIC


def _moment(value: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 time as the run document holds it, None if it holds none."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``1 min 23 s``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def times_line(summary: RunSummary, now: float | None = None) -> str:
    """When the run started and ended, and how long it ran (so far, for a live run)."""
    doc = summary.document
    started, ended = _moment(doc.get("started_at")), _moment(doc.get("ended_at"))
    line = f"started {doc.get('started_at') or 'never'}"
    if started is not None and ended is not None:
        return f"{line}, ended {doc['ended_at']} (ran {format_duration(max(0.0, ended - started))})"
    if started is not None and summary.status == "RUNNING":
        return f"{line}, running for {format_duration(max(0.0, (now or time.time()) - started))}"
    return f"{line}, no end recorded"


def show(args: argparse.Namespace) -> int:
    """Print the summary of the run directory ``args.run`` (or of the run ``args.run`` names under ``.dash``);
    2 when it is no run."""
    run = Path(args.run)
    if not (run / "experiment.json").is_file() and (Path(DEFAULT_ROOT) / args.run / "experiment.json").is_file():
        run = Path(DEFAULT_ROOT) / args.run  # a prefix, as the run printed it: owner/project/name under .dash
    if not (run / "experiment.json").is_file():
        if not run.is_dir():
            print(f"ml-dash show: {args.run}: no such directory", file=sys.stderr)
            return 2
        print(f"ml-dash show: {args.run}: not a run directory (no experiment.json)", file=sys.stderr)
        return 2
    s = summarise(run, values=True)
    print(f"{s.prefix}  [{s.status}]  {s.directory}")
    print(f"  {times_line(s)}")
    if s.document.get("status_reason"):
        print(f"  status reason: {s.document['status_reason']}")
    # the run's own metrics first; the machine's readings (capture's ``system``) last, as ranges: a lower
    # memory use is no "best"
    for name, rows in sorted(s.metrics.items(), key=lambda item: item[0] == SYSTEM_METRIC):
        print(f"  metric {name}: {rows} rows")
        folded = s.values.get(name)
        if folded is None:
            continue
        for field, field_summary in folded.fields.items():
            print(f"    {describe(field, field_summary, folded.step_field, ranked=name != SYSTEM_METRIC)}")
    print(f"  logs: {s.log_lines} lines; files: {s.files}")
    if s.params:
        print("  params: " + json.dumps(s.params, sort_keys=True))
    for problem in s.problems:
        print(f"  damaged: {problem}")
    return 0
