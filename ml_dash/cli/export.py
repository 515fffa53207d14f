"""``ml-dash export SOURCE --project OWNER/PROJECT --parquet DIR [--filter CONDITIONS]``: the run table and
every metric stream of the project's runs as Parquet files (ml_dash/analysis/_export.py says the layout).
SOURCE is a ``.dash`` root or a server URL (its key from ``--api-key-file`` or ``ML_DASH_API_KEY``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_command(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="write a project's runs and metric streams as Parquet (needs the pandas extra)",
                            description="Write DIR/runs.parquet (one row per run: status, times, params, each "
                                        "metric's latest values) and DIR/<owner>/<project>/<name>/<stream>.parquet "
                                        "(every row of each metric stream). Needs pip install \"ml-dash[pandas]\".")
    export.add_argument("source", help="a .dash root of runs, or a server URL (http://host:port)")
    export.add_argument("--project", required=True, help="owner/project")
    export.add_argument("--parquet", required=True, metavar="DIR", help="the directory to write into")
    export.add_argument("--filter", help="only the runs meeting these conditions, as in the web UI: 'lr < 0.01, "
                                         "train/loss < 0.5'")
    export.add_argument("--api-key-file", help="a server's API key, on this file's first line (default: "
                                               "$ML_DASH_API_KEY)")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..analysis import ConditionError, export_parquet
    from ..errors import ConfigurationError, MLDashError

    try:
        api_key = _key(args.api_key_file)
        summary = export_parquet(args.source, args.project, Path(args.parquet), filter=args.filter, api_key=api_key)
    except (ConfigurationError, ConditionError) as exc:  # the arguments: 2, as the other commands
        print(f"ml-dash export: {exc}", file=sys.stderr)
        return 2
    except (MLDashError, ImportError, ValueError, OSError) as exc:  # a bad server, a missing extra, a full disk
        print(f"ml-dash export: {exc}", file=sys.stderr)
        return 1
    print(f"{args.parquet}: {summary.runs} runs, {summary.streams} streams, {summary.rows} rows")
    return 0


def _key(path: str | None) -> str | None:
    from ..errors import ConfigurationError

    if path is None:
        return None
    try:
        return Path(path).read_text().splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "no key on its first line"
        raise ConfigurationError(f"--api-key-file {path}: {reason}") from None
