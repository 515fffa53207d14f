"""``ml-dash server`` and ``ml-dash keys``: the commands that act on a server's data directory."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from pathlib import Path

from ..format.wire import LIMITS
from ..server.config import ServerConfig


class ArgumentError(Exception):
    """An argument names no usable data directory or setting."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    server = sub.add_parser("server", help="run the ml-dash server (SQLite + blob directory under --data)",
                            description="Serve the HTTP API until SIGTERM or Ctrl-C.")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=int, default=8080, help="port to bind (default 8080; 0 picks a free port, "
                                                               "printed)")
    server.add_argument("--data", default="ml-dash-data", help="directory for the database and blobs "
                                                               "(created if missing; default ./ml-dash-data)")
    server.add_argument("--db", metavar="URL", default=os.environ.get("ML_DASH_DB") or None,
                        help="the metadata database instead of the one under --data: sqlite:///ABSOLUTE/PATH, a "
                             "file path, or postgresql://USER@HOST:PORT/DATABASE (default: $ML_DASH_DB; a password "
                             "is best given by PGPASSWORD or ~/.pgpass, never printed)")
    server.add_argument("--blobs", metavar="URL", default=os.environ.get("ML_DASH_BLOBS") or None,
                        help="where uploaded files' content lives instead of --data/blobs: file:///ABSOLUTE/DIR, "
                             "a directory path, or s3://BUCKET/PREFIX (endpoint, region and credentials from "
                             "AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                             "AWS_PROFILE; default: $ML_DASH_BLOBS)")
    server.add_argument("--allow-user-name", action="store_true",
                        help="development mode: accept X-ML-Dash-User without a key (warns off loopback)")
    server.add_argument("--crashed-after-s", type=float, default=120.0,
                        help="show a RUNNING run that has sent nothing for this long as CRASHED (default 120)")
    server.add_argument("--head-timeout-s", type=float, default=10.0,
                        help="close a connection whose request head is not complete this long after its first "
                             "byte (default 10)")
    server.add_argument("--body-timeout-s", type=float, default=30.0,
                        help="fail a request (408) whose body sends nothing for this long (default 30)")
    server.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="answer requests whose Host header names NAME (repeatable; '*' for any). A server "
                             "bound to loopback answers only 127.0.0.1, localhost and ::1 by default, so that no "
                             "web page can reach it through DNS rebinding")
    server.add_argument("--ingest-workers", type=int, default=2, metavar="N",
                        help="processes that decode ingest bodies, so the server answers other requests "
                             "meanwhile (default 2; 0 decodes in the server's own process)")
    server.add_argument("--body-memory-mb", type=int, default=64, metavar="MB",
                        help="request bodies the server holds in memory at once (default 64; a key holds at most "
                             "half); a request that finds no room waits up to 5 s, then gets 503 with Retry-After")
    server.add_argument("--max-bodies-per-key", type=int, default=64, metavar="N",
                        help="request bodies (ingest and file uploads) one key's owner may have under way at once "
                             "(default 64; an SDK run sends one at a time); one more gets 429 with Retry-After")
    server.add_argument("--max-connections", type=int, default=None, metavar="N",
                        help="connections held at once (default: what the open-file limit leaves room for, at most "
                             "4096); past it the oldest idle one is closed, or the new one gets 503 with Retry-After")
    server.add_argument("--body-min-rate-kb", type=int, default=64, metavar="KB",
                        help="the slowest, in KiB/s on average, that an ingest body holding more than 256 KiB of "
                             "that memory may arrive, with --body-timeout-s of slack; slower gets 408 (default 64; "
                             "0: no such bound)")
    server.add_argument("--worker-memory-mb", type=int, default=192, metavar="MB",
                        help="memory an ingest worker may use to decode one body, beyond its own (default 192; "
                             "Linux); a body that needs more gets 413")
    server.add_argument("--max-metrics-per-run", type=int, default=100_000, metavar="N",
                        help="metric streams one run may hold (default 100,000); a request that would start more "
                             "gets 422 naming them")
    server.add_argument("--metrics-token-file", metavar="PATH",
                        help="serve GET /metrics (Prometheus' format) to requests carrying the token this file "
                             "holds (Authorization: Bearer TOKEN); ML_DASH_METRICS_TOKEN gives it instead. "
                             "Without either, there is no /metrics")
    server.add_argument("--archive-after", default="30d", metavar="DURATION",
                        help="move metric chunks stored longer ago than this from the database to the blob store, in "
                             "the background (a number and a unit: 12h, 30d, 2w; default 30d; 'off': never). Reads "
                             "return the same rows either way")
    server.add_argument("--archive-every", default="10m", metavar="DURATION",
                        help="how often the background archiver looks for old chunks (default 10m)")
    server.set_defaults(handler=run_server)
    ui = sub.add_parser("ui", help="the web UI over local runs (a .dash directory), read-only, on 127.0.0.1",
                        description="Serve the web UI and the read API over the runs under DIR, on this machine "
                                    "only, until Ctrl-C. Nothing under DIR is written; runs being written show live. "
                                    "Only who opens the URL it prints (a random token in its #fragment) can read through it; "
                                    "ML_DASH_UI_TOKEN sets the token instead.")
    ui.add_argument("dir", nargs="?", default=".dash", help="a directory of runs (default ./.dash)")
    ui.add_argument("--port", type=int, default=8090, help="port on 127.0.0.1 (default 8090; 0 picks a free one, "
                                                           "printed)")
    ui.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="also answer requests whose Host header names NAME (repeatable): a name of this machine "
                         "other than 127.0.0.1, localhost and ::1, say. It stays bound to 127.0.0.1")
    ui.add_argument("--no-auth", action="store_true",
                    help="serve without the token: every account on this machine can then read these runs")
    ui.set_defaults(handler=run_ui)
    keys = sub.add_parser("keys", help="create, list and revoke API keys; grant read access",
                          description="Manage the API keys of a server's data directory (the server may be running).")
    keys.add_argument("action", choices=["create", "list", "revoke", "grant"],
                      help="create: a new key for --owner (printed once); list: --owner's keys; revoke: a key; "
                           "grant: let --member read --owner's runs")
    keys.add_argument("key", nargs="?", help="with revoke: the key id (from `keys list`) or the key itself")
    keys.add_argument("--owner", help="with create, list and grant: whose keys or runs")
    keys.add_argument("--member", help="with grant: who may read --owner's runs")
    keys.add_argument("--data", default="ml-dash-data", help="the server's data directory (default ./ml-dash-data)")
    keys.add_argument("--db", metavar="URL", default=os.environ.get("ML_DASH_DB") or None,
                      help="the server's database, when it was started with --db (default: $ML_DASH_DB)")
    keys.set_defaults(handler=run_keys)


def run_server(args: argparse.Namespace) -> int:
    from ..server.serve import serve

    try:
        for flag, value in (("--head-timeout-s", args.head_timeout_s), ("--body-timeout-s", args.body_timeout_s)):
            if not 0 < value <= 3600:  # NaN too
                raise ArgumentError(f"{flag} {value} must be within (0, 3600] seconds")
        if not 0 <= args.ingest_workers <= 64:
            raise ArgumentError(f"--ingest-workers {args.ingest_workers} must be within 0..64")
        # the largest body allowed must fit within one key's half of the body memory
        smallest = 2 * LIMITS.max_compressed_bytes >> 20
        for flag, value, low in (("--body-memory-mb", args.body_memory_mb, smallest),
                                 ("--worker-memory-mb", args.worker_memory_mb, 64),
                                 ("--body-min-rate-kb", args.body_min_rate_kb, 0),
                                 ("--max-bodies-per-key", args.max_bodies_per_key, 1),
                                 ("--max-connections", 16 if args.max_connections is None else args.max_connections, 16),
                                 ("--max-metrics-per-run", args.max_metrics_per_run, 1)):
            if not low <= value <= 1 << 30:
                raise ArgumentError(f"{flag} {value} must be within {low}..{1 << 30}")
        _check_urls(args.db, args.blobs, create=True)
        archive_after_s, archive_every_s = _archive_settings(args.archive_after, args.archive_every)
        # with both --db and --blobs nothing goes under --data: it is not even created
        local = args.db is None or args.blobs is None
        config = ServerConfig(_data_dir(args.data, create=local, own_db=args.db is None), db=args.db,
                              blobs=args.blobs, allow_user_name=args.allow_user_name,
                              crashed_after_s=args.crashed_after_s, head_timeout_s=args.head_timeout_s,
                              body_idle_timeout_s=args.body_timeout_s, ingest_workers=args.ingest_workers,
                              body_memory_bytes=args.body_memory_mb << 20,
                              body_min_bytes_per_s=args.body_min_rate_kb << 10,
                              max_bodies_per_key=args.max_bodies_per_key, max_connections=args.max_connections,
                              worker_memory_bytes=args.worker_memory_mb << 20,
                              max_metrics_per_run=args.max_metrics_per_run,
                              allowed_hosts=_allowed_hosts(args.host, args.allowed_host),
                              metrics_token_sha256=_metrics_token_sha256(args.metrics_token_file),
                              archive_after_s=archive_after_s, archive_every_s=archive_every_s)
    except ArgumentError as exc:
        print(f"ml-dash server: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"ml-dash server: --port {args.port} must be within 0..65535", file=sys.stderr)
        return 2
    from ..server.blobs.errors import BlobConfigError, BlobUnavailable
    from ..server.storage.errors import StorageError, StorageOpenError

    try:
        asyncio.run(serve(config, args.host, args.port))
    except StorageOpenError as exc:  # --db names a database that cannot be used as given: a setting to fix
        print(f"ml-dash server: --db: {exc}", file=sys.stderr)
        return 2
    except (BlobConfigError, BlobUnavailable) as exc:  # credentials or bucket refused, or no endpoint there
        print(f"ml-dash server: --blobs: {exc}", file=sys.stderr)
        return 2
    except (OSError, StorageError) as exc:  # the address is in use or cannot be bound; the database is unusable
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"ml-dash server: cannot serve on {args.host}:{args.port} with data in {config.data_dir}: {reason}",
              file=sys.stderr)
        return 1
    return 0


def _archive_settings(after: str, every: str) -> tuple[float | None, float]:
    """(--archive-after in seconds, or None for 'off'; --archive-every in seconds)."""
    from .archive import parse_duration

    try:
        after_s = None if after.strip().lower() in ("off", "never") else parse_duration(after, "--archive-after")
        every_s = parse_duration(every, "--archive-every")
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    if every_s < 1:
        raise ArgumentError(f"--archive-every {every!r} must be at least 1s")
    return after_s, every_s


def run_ui(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from ..server.serve import serve

    root = Path(args.dir)
    if not root.is_dir():
        missing = "does not exist" if not root.exists() else "is not a directory"
        print(f"ml-dash ui: {root} {missing}: it shows the runs under a .dash directory (where "
              "Experiment(prefix=...) writes them, in the directory the script runs in); run a script first, "
              "or give the directory: ml-dash ui PATH/.dash", file=sys.stderr)
        return 1
    if not 0 <= args.port <= 65535:
        print(f"ml-dash ui: --port {args.port} must be within 0..65535", file=sys.stderr)
        return 2
    try:
        token = None if args.no_auth else _ui_token()
    except ValueError as exc:
        print(f"ml-dash ui: ML_DASH_UI_TOKEN: {exc}", file=sys.stderr)
        return 2
    index = Path(tempfile.mkdtemp(prefix="ml-dash-ui-"))  # the private index (0700), removed on exit
    config = ServerConfig(index, open_reads=True, read_only=True, ingest_workers=0, ui_token=token,
                          crashed_after_s=float("inf"),  # a local run's status follows its lock, not silence
                          allowed_hosts=_allowed_hosts("127.0.0.1", args.allowed_host))
    announced = _UiAnnouncement(token, root)
    try:
        asyncio.run(serve(config, "127.0.0.1", args.port, local_root=root.resolve(), label="ml-dash ui",
                          on_listening=announced))
    except OSError as exc:
        print(f"ml-dash ui: cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        announced.close()
        shutil.rmtree(index, ignore_errors=True)
    return 0


def _ui_token() -> str:
    """``ML_DASH_UI_TOKEN`` when set (for scripts: an environment is readable by its own account only,
    where a command-line flag would show in every account's ``ps``), else a new random token."""
    import secrets

    from ..server.http.ui_token import check_token

    chosen = os.environ.get("ML_DASH_UI_TOKEN")
    return check_token(chosen) if chosen else secrets.token_urlsafe(32)


class _UiAnnouncement:
    """Once ``ml-dash ui`` is bound: the URL to open (with its token, also written to a file only this
    account reads), or, with --no-auth, a warning that every account can read."""

    def __init__(self, token: str | None, root: Path) -> None:
        self.token = token
        self.root = root
        self.url_file: Path | None = None

    def __call__(self, base: str) -> None:
        from .ui_url_file import write_url_file

        if self.token is None:
            print(f"warning: --no-auth: every account on this machine can read the runs under {self.root} "
                  f"through {base}/", file=sys.stderr, flush=True)
            return
        url = f"{base}/#token={self.token}"  # a fragment: never sent to a server (server/http/ui_token.py)
        try:
            self.url_file = write_url_file(int(base.rsplit(":", 1)[1]), url)
            where = f"; it is also in {self.url_file}"
        except OSError as exc:
            print(f"warning: ml-dash ui could not write its URL to a file: {exc.strerror or exc}", file=sys.stderr)
            where = ""
        print(f"open {url}   (only who has this URL can read through it: keep it to yourself{where})", flush=True)

    def close(self) -> None:
        from .ui_url_file import remove_url_file

        if self.url_file is not None:
            remove_url_file(self.url_file)


def run_keys(args: argparse.Namespace) -> int:
    from ..format.naming import validate_prefix

    try:
        if args.action == "revoke" and not args.key:
            raise ValueError("keys revoke needs the key id (see `ml-dash keys list --owner NAME`)")
        if args.action != "revoke":
            if not args.owner:
                raise ValueError(f"keys {args.action} needs --owner")
            validate_prefix(f"{args.owner}/p/n")
        if args.action == "grant":
            if not args.member:
                raise ValueError("keys grant needs --member")
            validate_prefix(f"{args.member}/p/n")
        # only `create` may start a new data directory or database: a typo elsewhere must not make an empty one
        _check_urls(args.db, None, create=args.action == "create")
        config = ServerConfig(_data_dir(args.data, create=args.action == "create", own_db=args.db is None), db=args.db)
    except (ValueError, ArgumentError) as exc:
        print(f"ml-dash keys: {exc}", file=sys.stderr)
        return 2
    from ..server.storage.errors import StorageError, StorageOpenError

    try:
        return _KEY_ACTIONS[args.action](config, args)
    except StorageOpenError as exc:
        print(f"ml-dash keys: --db: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"ml-dash keys: {exc}", file=sys.stderr)
        return 1


def _allowed_hosts(bind: str, named: list[str]) -> frozenset[str] | None:
    """None (any host) for '*' or for a server bound off loopback with no names given; else the names."""
    from ..server.http.hosts import LOOPBACK_HOSTS, is_loopback

    if "*" in named:
        return None
    names = frozenset(n.strip().lower() for n in named if n.strip())
    if is_loopback(bind):
        return LOOPBACK_HOSTS | names
    return names or None


#: The shortest metrics token taken: a guessable one would open the server's counters to anyone.
MIN_METRICS_TOKEN_CHARS = 16


def _metrics_token_sha256(path: str | None) -> str | None:
    """The sha256 of the metrics token (--metrics-token-file, else ML_DASH_METRICS_TOKEN); None: neither.
    The token itself is never kept, printed or logged."""
    from ..server.routes.operations import metrics_token_sha256

    if path is not None:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ArgumentError(f"--metrics-token-file {path}: cannot read it ({type(exc).__name__})") from None
        source = f"--metrics-token-file {path}"
    else:
        token = os.environ.get("ML_DASH_METRICS_TOKEN", "").strip()
        source = "ML_DASH_METRICS_TOKEN"
        if not token:
            return None
    if len(token) < MIN_METRICS_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ArgumentError(f"{source}: the metrics token must be at least {MIN_METRICS_TOKEN_CHARS} printable "
                            "characters without spaces")
    return metrics_token_sha256(token)


def _check_urls(db: str | None, blobs: str | None, create: bool) -> None:
    """--db and --blobs name a supported backend (the error names the scheme and the supported ones);
    unless ``create``, a SQLite --db must be an existing file. A PostgreSQL --db is checked for its form
    here, and reached when the storage opens (an unreachable one or a refused login: exit 2 there)."""
    from ..server.blobs.factory import SUPPORTED as BLOB_SUPPORTED
    from ..server.blobs.factory import blob_location
    from ..server.storage.errors import StorageURLError
    from ..server.storage.factory import SUPPORTED, postgres_target, scheme_of, shown, sqlite_path

    for flag, url, parse, supported in (("--db", db, sqlite_path, SUPPORTED), ("--blobs", blobs, blob_location, BLOB_SUPPORTED)):
        if url is None:
            continue
        try:
            if flag == "--db" and postgres_target(url) is not None:
                continue
            where = parse(url)
        except StorageURLError as exc:
            raise ArgumentError(f"{flag} {exc}") from None
        if where is None:
            raise ArgumentError(f"{flag}: unsupported URL scheme {scheme_of(url)!r} in {shown(url)}; supported: "
                                f"{', '.join(supported)}")
        if flag == "--db" and not create and isinstance(where, Path) and not where.is_file():
            raise ArgumentError(f"--db {shown(url)}: no database there")


def _data_dir(raw: str, create: bool, own_db: bool = True) -> Path:
    """The --data directory (created when ``create``); unless ``create``, it must hold the database
    when it is the server's (``own_db``: no --db)."""
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"--data {raw}: not a directory")
    database = ServerConfig(path).database
    if own_db and not create and not database.is_file():
        raise ArgumentError(f"--data {raw}: no ml-dash database there ({database.name}); `ml-dash server --data "
                           f"{raw}` or `ml-dash keys create --data {raw}` makes one")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArgumentError(f"--data {raw}: cannot create it: {exc.strerror or exc}") from None
    return path


def _create(config: ServerConfig, args: argparse.Namespace) -> int:
    from ..server.serve import create_key

    token = asyncio.run(create_key(config, args.owner))
    print(f"API key for {args.owner} (shown once; the server keeps only its hash):")
    print(token)
    return 0


def _list(config: ServerConfig, args: argparse.Namespace) -> int:
    from ..server.serve import list_keys

    def when(t: float | None) -> str:
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"

    print("key id        created               revoked")
    for key in asyncio.run(list_keys(config, args.owner)):
        print(f"{key['key_id']}  {when(key['created_at'])}  {when(key['revoked_at'])}")
    return 0


def _revoke(config: ServerConfig, args: argparse.Namespace) -> int:
    from ..server.auth import parse_key_id
    from ..server.serve import revoke_key

    key_id = parse_key_id(args.key)
    if key_id is None:
        print("ml-dash keys: the argument of revoke is neither a key id (12 hex digits) nor an mld_ key",
              file=sys.stderr)  # not echoed: it may be a mistyped secret
        return 2
    if not asyncio.run(revoke_key(config, key_id)):
        from ..server.storage.factory import shown

        print(f"ml-dash keys: no key {key_id} in {shown(config.storage_url)}", file=sys.stderr)
        return 1
    print(f"key {key_id} revoked; the server refuses it from the next request on")
    return 0


def _grant(config: ServerConfig, args: argparse.Namespace) -> int:
    from ..server.serve import grant

    asyncio.run(grant(config, args.owner, args.member))
    print(f"{args.member} may now read {args.owner}'s runs")
    return 0


_KEY_ACTIONS = {"create": _create, "list": _list, "revoke": _revoke, "grant": _grant}
