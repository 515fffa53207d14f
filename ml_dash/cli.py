"""The ``ml-dash`` command line.

    ml-dash ls [ROOT]          runs under ROOT (default .dash) with status and sizes
    ml-dash show RUN_DIR       one run: metrics, logs, files, parameters
    ml-dash check [ROOT]       read every file; exit 1 if any line is damaged
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .reading import find_runs, summarise

REMOTE_COMMANDS = ("server", "sync", "pull", "keys")


def _ls(args: argparse.Namespace) -> int:
    runs = list(find_runs(Path(args.root)))
    if not runs:
        print(f"no runs under {args.root}")
        return 0
    for directory in runs:
        s = summarise(directory)
        rows = sum(s.metrics.values())
        print(f"{s.prefix:40s} {s.status:10s} {len(s.metrics):3d} metrics {rows:9d} rows {s.log_lines:7d} logs {s.files:4d} files")
    return 0


def _show(args: argparse.Namespace) -> int:
    s = summarise(Path(args.run))
    print(f"{s.prefix}  [{s.status}]  {s.directory}")
    for name, rows in s.metrics.items():
        print(f"  metric {name}: {rows} rows")
    print(f"  logs: {s.log_lines} lines; files: {s.files}")
    if s.params:
        print("  params: " + json.dumps(s.params, sort_keys=True))
    for problem in s.problems:
        print(f"  damaged: {problem}")
    return 0


def _check(args: argparse.Namespace) -> int:
    damaged = 0
    for directory in find_runs(Path(args.root)):
        for problem in summarise(directory).problems:
            damaged += 1
            print(problem)
    print("ok" if not damaged else f"{damaged} damaged line(s); every intact record is still readable")
    return 1 if damaged else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ml-dash`` command."""
    parser = argparse.ArgumentParser(prog="ml-dash", description="Inspect ml-dash runs.")
    parser.add_argument("--version", action="version", version=f"ml-dash {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list runs")
    ls.add_argument("root", nargs="?", default=".dash")
    show = sub.add_parser("show", help="summarise one run directory")
    show.add_argument("run")
    check = sub.add_parser("check", help="verify every file of the runs under ROOT")
    check.add_argument("root", nargs="?", default=".dash")
    for name in REMOTE_COMMANDS:
        sub.add_parser(name, help="remote mode (not in this version)")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in REMOTE_COMMANDS:
        print(f"ml-dash {argv[0]}: remote mode is not available in this version yet", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return {"ls": _ls, "show": _show, "check": _check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
