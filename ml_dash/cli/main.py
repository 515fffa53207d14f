"""The ``ml-dash`` command line.

    ml-dash ls [ROOT]          runs under ROOT (default .dash) with status and sizes
    ml-dash show RUN_DIR       one run: times, status reason, each metric's last and best values, logs, files
    ml-dash check [ROOT]       read every file; exit 1 if a line is damaged or an index repeats or is missing
    ml-dash server [--host 127.0.0.1] [--port 8080] [--data DIR] [--allow-user-name]
    ml-dash keys create --owner NAME --data DIR      the new key is the last line printed
    ml-dash keys list --owner NAME --data DIR
    ml-dash keys revoke KEY_ID --data DIR            KEY_ID from `keys list`, or the key itself
    ml-dash keys grant --owner NAME --member NAME --data DIR
    ml-dash sync [PATH ...] [--remote URL] [--api-key-file F | --user-name U] [--timeout S] [--prefix P] [--resume]
    ml-dash pull PREFIX [--remote URL] [--api-key-file F | --user-name U] --to DIR
    ml-dash export SOURCE --project OWNER/PROJECT --parquet DIR [--filter C] [--api-key-file F]   (pandas extra)

The remote commands take the server and the key from ML_DASH_API_URL and ML_DASH_API_KEY when not
given (a key in an argument is visible to `ps` and in the shell's history: prefer the variable or
--api-key-file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._run.reading import find_runs, summarise
from .._version import __version__


def _missing(command: str, path: str) -> int:
    print(f"ml-dash {command}: {path}: no such directory", file=sys.stderr)
    return 2


def _ls(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        return _missing("ls", args.root)
    runs = list(find_runs(Path(args.root)))
    if not runs:
        print(f"no runs under {args.root}")
        return 0
    for directory in runs:
        s = summarise(directory)
        rows = sum(s.metrics.values())
        print(f"{s.prefix:40s} {s.status:10s} {len(s.metrics):3d} metrics {rows:9d} rows {s.log_lines:7d} logs {s.files:4d} files")
    return 0


def _check(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        return _missing("check", args.root)
    problems = 0
    for directory in find_runs(Path(args.root)):
        for problem in summarise(directory).problems:
            problems += 1
            print(problem)
    print("ok" if not problems else f"{problems} problem(s); every intact record is still readable")
    return 1 if problems else 0


def _sync(args: argparse.Namespace) -> int:
    import asyncio

    from ..agent.settings import UploadSettings
    from ..errors import ConfigurationError
    from ..format.naming import validate_prefix
    from ..remote.sync import SyncOptions, sync_paths

    try:
        remote, api_key, user_name = remote_credentials(args)
        if args.prefix is not None:
            validate_prefix(args.prefix)
        if not args.timeout > 0:  # NaN too
            raise ConfigurationError(f"--timeout {args.timeout} must be a positive number of seconds")
        settings = UploadSettings.from_env()
    except (ConfigurationError, ValueError) as exc:  # the arguments and the environment, not the sync
        print(f"ml-dash sync: {exc}", file=sys.stderr)
        return 2
    options = SyncOptions(remote, api_key, user_name, args.timeout, args.prefix, args.resume)
    return asyncio.run(sync_paths([Path(p) for p in args.paths], options, settings=settings))


def _pull(args: argparse.Namespace) -> int:
    from ..errors import ConfigurationError, MLDashError
    from ..remote.pull import pull

    try:
        remote, api_key, user_name = remote_credentials(args)
    except ConfigurationError as exc:
        print(f"ml-dash pull: {exc}", file=sys.stderr)
        return 2
    try:
        counts = pull(args.prefix, remote, api_key, user_name, Path(args.to))
    except (MLDashError, ValueError, TypeError, OSError) as exc:  # a bad prefix, a bad server, a full disk
        print(f"ml-dash pull: {exc}", file=sys.stderr)
        return 1
    print(f"{args.prefix} -> {Path(args.to) / args.prefix}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """--remote and the credentials, each defaulting to its environment variable."""
    parser.add_argument("--remote", help="server URL, e.g. http://127.0.0.1:8080 (default: $ML_DASH_API_URL)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--api-key", help="the API key (default: $ML_DASH_API_KEY; an argument is visible to `ps` "
                                       "and in shell history, so prefer the variable or --api-key-file)")
    who.add_argument("--api-key-file", help="read the API key from this file (its first line)")
    who.add_argument("--user-name", help="act as this owner without a key (servers started with "
                                         "--allow-user-name only; default: $ML_DASH_USER_NAME)")


def remote_credentials(args: argparse.Namespace) -> tuple[str, str | None, str | None]:
    """(remote, api_key, user_name) from the arguments, else the environment; ConfigurationError when
    something is missing or malformed (the key itself is never echoed)."""
    from .._run.config import ENV_API_KEY, ENV_API_URL, ENV_USER_NAME, check_credentials, check_server_url, env_value
    from ..errors import ConfigurationError

    remote = args.remote or env_value(ENV_API_URL)
    if not remote:
        raise ConfigurationError("no server: pass --remote URL or set ML_DASH_API_URL")
    check_server_url("--remote" if args.remote else "ML_DASH_API_URL", remote)
    api_key, user_name = args.api_key, args.user_name
    if args.api_key_file:
        try:
            api_key = Path(args.api_key_file).read_text().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "no key on its first line"
            raise ConfigurationError(f"--api-key-file {args.api_key_file}: {reason}") from None
    if api_key is None and user_name is None:
        api_key = env_value(ENV_API_KEY)
        user_name = None if api_key else env_value(ENV_USER_NAME)
    if api_key is None and user_name is None:
        raise ConfigurationError("no credentials: set ML_DASH_API_KEY (or pass --api-key-file F), or --user-name "
                                 "for a server started with --allow-user-name")
    check_credentials(api_key, user_name)
    return remote, api_key, user_name


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ml-dash`` command."""
    from . import archive as cli_archive
    from . import export as cli_export
    from . import migrate as cli_migrate
    from . import server as cli_server
    from . import show as cli_show

    parser = argparse.ArgumentParser(
        prog="ml-dash", description="Inspect local ml-dash runs, run the server, manage its keys, and move runs "
                                    "between a .dash/ directory and a server (sync, pull).")
    parser.add_argument("--version", action="version", version=f"ml-dash {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="list the runs under ROOT with status and sizes")
    ls.add_argument("root", nargs="?", default=".dash", help="a .dash directory (default .dash)")
    ls.set_defaults(handler=_ls)
    show = sub.add_parser("show", help="summarise one run directory: times, status reason, each metric's last and "
                                       "best values, logs, files, parameters")
    show.add_argument("run", help="a run directory, e.g. .dash/alice/project/run, or a run's prefix under .dash "
                                   "(alice/project/run)")
    show.set_defaults(handler=cli_show.show)
    check = sub.add_parser("check", help="read every file of the runs under ROOT; exit 1 on damage or "
                                         "duplicate/missing indices")
    check.add_argument("root", nargs="?", default=".dash", help="a .dash directory (default .dash)")
    check.set_defaults(handler=_check)
    cli_server.add_commands(sub)
    cli_archive.add_command(sub)
    cli_migrate.add_command(sub)
    sync = sub.add_parser("sync", help="upload local runs (or interrupted remote ones) to a server, exactly once")
    sync.add_argument("paths", nargs="*", default=[".dash"], help="run directories or .dash roots (default .dash)")
    add_remote_arguments(sync)
    sync.add_argument("--timeout", type=float, default=600.0,
                      help="give up on a run after this many seconds (bounds every wait, Retry-After included)")
    sync.add_argument("--prefix", help="send the run under this owner/project/name instead of its own (one run)")
    sync.add_argument("--resume", action="store_true",
                      help="append the run's rows after the rows the server's run of the prefix already holds")
    sync.set_defaults(handler=_sync)
    pull = sub.add_parser("pull", help="write a server-side run into DIR in the local layout")
    pull.add_argument("prefix", help="owner/project/name of the run on the server")
    add_remote_arguments(pull)
    pull.add_argument("--to", required=True, help="directory; the run lands in DIR/<prefix>")
    pull.set_defaults(handler=_pull)
    cli_export.add_command(sub)
    args, extras = parser.parse_known_args(argv)
    if extras:  # said by the command's own parser: its usage, and the option meant where one is close
        command = _command_parser(parser, args)
        command.error(_unrecognized(extras, command))
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # the reader went away (`ml-dash show RUN | head`): stop quietly, as `cat` does
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a command its pipe's reader left


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` were parsed for: ``ml-dash keys create``'s, not ``ml-dash``'s."""
    chosen = parser
    for _ in range(4):  # bounded: commands nest two deep
        subcommands = [a for a in chosen._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subcommands[0].dest, None) if subcommands else None
        if name is None or name not in subcommands[0].choices:
            return chosen
        chosen = subcommands[0].choices[name]
    return chosen


def _unrecognized(extras: list[str], parser: argparse.ArgumentParser) -> str:
    import difflib

    options = [o for action in parser._actions for o in action.option_strings]
    said = []
    for extra in extras:
        close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1) if extra.startswith("-") else []
        said.append(f"{extra} (did you mean {close[0]}?)" if close else extra)
    return "unrecognized arguments: " + " ".join(said)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

