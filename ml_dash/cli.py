"""The ``ml-dash`` command line.

    ml-dash ls [ROOT]          runs under ROOT (default .dash) with status and sizes
    ml-dash show RUN_DIR       one run: metrics, logs, files, parameters
    ml-dash check [ROOT]       read every file; exit 1 if a line is damaged or an index repeats or is missing
    ml-dash server [--host 127.0.0.1] [--port 8080] [--data DIR] [--allow-user-name]
    ml-dash keys create --owner NAME --data DIR      the new key is the last line printed
    ml-dash keys list --owner NAME --data DIR
    ml-dash keys revoke KEY_ID --data DIR            KEY_ID from `keys list`, or the key itself
    ml-dash keys grant --owner NAME --member NAME --data DIR
    ml-dash sync [PATH ...] --remote URL (--api-key K | --user-name U) [--timeout S] [--prefix P] [--resume]
    ml-dash pull PREFIX --remote URL (--api-key K | --user-name U) --to DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .reading import find_runs, summarise


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
    problems = 0
    for directory in find_runs(Path(args.root)):
        for problem in summarise(directory).problems:
            problems += 1
            print(problem)
    print("ok" if not problems else f"{problems} problem(s); every intact record is still readable")
    return 1 if problems else 0


def _server(args: argparse.Namespace) -> int:
    import asyncio

    from .server.config import ServerConfig
    from .server.serve import serve

    config = ServerConfig(Path(args.data), allow_user_name=args.allow_user_name, crashed_after_s=args.crashed_after_s)
    asyncio.run(serve(config, args.host, args.port))
    return 0


def _keys(args: argparse.Namespace) -> int:
    import asyncio
    import datetime

    from .naming import validate_prefix
    from .server.auth import parse_key_id
    from .server.config import ServerConfig
    from .server.serve import create_key, grant, list_keys, revoke_key

    config = ServerConfig(Path(args.data))
    if args.action == "revoke":
        key_id = parse_key_id(args.key)
        if key_id is None:
            print(f"error: {args.key!r} is neither a key id (12 hex digits) nor an mld_ key", file=sys.stderr)
            return 2
        if not asyncio.run(revoke_key(config, key_id)):
            print(f"error: no key {key_id} in {config.database}", file=sys.stderr)
            return 1
        print(f"key {key_id} revoked; the server refuses it from the next request on")
        return 0
    validate_prefix(f"{args.owner}/p/n")
    if args.action == "create":
        token = asyncio.run(create_key(config, args.owner))
        print(f"API key for {args.owner} (shown once; the server keeps only its hash):")
        print(token)
    elif args.action == "list":
        def when(t: float | None) -> str:
            return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"
        print("key id        created               revoked")
        for key in asyncio.run(list_keys(config, args.owner)):
            print(f"{key['key_id']}  {when(key['created_at'])}  {when(key['revoked_at'])}")
    else:
        validate_prefix(f"{args.member}/p/n")
        asyncio.run(grant(config, args.owner, args.member))
        print(f"{args.member} may now read {args.owner}'s runs")
    return 0


def _sync(args: argparse.Namespace) -> int:
    import asyncio

    from .agent.settings import UploadSettings
    from .config import check_credentials, check_server_url
    from .errors import ConfigurationError
    from .naming import validate_prefix
    from .sync import SyncOptions, sync_paths

    try:
        if args.prefix is not None:
            validate_prefix(args.prefix)
        check_server_url("--remote", args.remote)
        check_credentials(args.api_key, args.user_name)
        if not args.timeout > 0:  # NaN too
            raise ConfigurationError(f"--timeout {args.timeout} must be a positive number of seconds")
        settings = UploadSettings.from_env()
    except (ConfigurationError, ValueError) as exc:  # the arguments and the environment, not the sync
        print(f"ml-dash sync: {exc}", file=sys.stderr)
        return 2
    options = SyncOptions(args.remote, args.api_key, args.user_name, args.timeout, args.prefix, args.resume)
    return asyncio.run(sync_paths([Path(p) for p in args.paths], options, settings=settings))


def _pull(args: argparse.Namespace) -> int:
    from .errors import MLDashError
    from .pull import pull

    try:
        counts = pull(args.prefix, args.remote, args.api_key, args.user_name, Path(args.to))
    except (MLDashError, ValueError, TypeError, OSError) as exc:  # a bad prefix, a bad server, a full disk
        print(f"ml-dash pull: {exc}", file=sys.stderr)
        return 1
    print(f"{args.prefix} -> {Path(args.to) / args.prefix}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


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
    server = sub.add_parser("server", help="run the ml-dash server (SQLite + blob directory under --data)")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    server.add_argument("--data", default="ml-dash-data", help="directory for the database and blobs")
    server.add_argument("--allow-user-name", action="store_true",
                        help="development mode: accept X-ML-Dash-User without a key (warns off loopback)")
    server.add_argument("--crashed-after-s", type=float, default=120.0,
                        help="show a RUNNING run that has sent nothing for this long as CRASHED")
    keys = sub.add_parser("keys", help="create, list and revoke API keys; grant read access")
    keys.add_argument("action", choices=["create", "list", "revoke", "grant"])
    keys.add_argument("key", nargs="?", help="with revoke: the key id (from `keys list`) or the key itself")
    keys.add_argument("--owner", help="with create, list and grant: whose keys or runs")
    keys.add_argument("--member", help="with grant: who may read --owner's runs")
    keys.add_argument("--data", default="ml-dash-data")
    sync = sub.add_parser("sync", help="upload local runs (or interrupted remote ones) to a server, exactly once")
    sync.add_argument("paths", nargs="*", default=[".dash"])
    sync.add_argument("--remote", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    who = sync.add_mutually_exclusive_group(required=True)
    who.add_argument("--api-key")
    who.add_argument("--user-name")
    sync.add_argument("--timeout", type=float, default=600.0,
                      help="give up on a run after this many seconds (bounds every wait, Retry-After included)")
    sync.add_argument("--prefix", help="send the run under this owner/project/name instead of its own (one run)")
    sync.add_argument("--resume", action="store_true",
                      help="append the run's rows after the rows the server's run of the prefix already holds")
    pull = sub.add_parser("pull", help="write a server-side run into DIR in the local layout")
    pull.add_argument("prefix")
    pull.add_argument("--remote", required=True)
    pull_who = pull.add_mutually_exclusive_group(required=True)
    pull_who.add_argument("--api-key")
    pull_who.add_argument("--user-name")
    pull.add_argument("--to", required=True, help="directory; the run lands in DIR/<prefix>")
    args = parser.parse_args(argv)
    if args.command == "keys":
        if args.action == "revoke" and not args.key:
            parser.error("keys revoke needs the key id (see `ml-dash keys list --owner NAME`)")
        if args.action != "revoke" and not args.owner:
            parser.error(f"keys {args.action} needs --owner")
        if args.action == "grant" and not args.member:
            parser.error("keys grant needs --member")
    commands = {"ls": _ls, "show": _show, "check": _check, "server": _server, "keys": _keys, "sync": _sync,
                "pull": _pull}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
