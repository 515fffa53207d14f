"""``ml-dash migrate``: copy an embedded deployment (``--data DIR``) to the stores ``--db`` and ``--blobs`` name
(ml_dash/server/migrate/). Exit 0 when done (or nothing was left to copy), 2 for a setting to fix or a
target holding other data under the source's names (nothing copied), 1 when a store failed on the way
(what was copied is whole: run it again to go on)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..server.config import ServerConfig
    from ..server.migrate.copy import MigrationReport


def add_command(sub: argparse._SubParsersAction) -> None:
    migrate = sub.add_parser("migrate", help="copy an embedded deployment to PostgreSQL + S3 (or any --db/--blobs)",
                             description="Copy runs, metrics (archived ones too), logs, files, API keys, grants and "
                                         "browser sessions of the server data directory --data to the database --db "
                                         "and blob store --blobs. Stop the server on --data first. Safe to interrupt "
                                         "and run again: it goes on where it stopped, and copies nothing twice.")
    migrate.add_argument("--data", required=True, help="the embedded deployment's data directory (ml-dash server --data)")
    migrate.add_argument("--db", metavar="URL", default=os.environ.get("ML_DASH_DB") or None,
                         help="the target database, postgresql://... or sqlite:///... (default: $ML_DASH_DB)")
    migrate.add_argument("--blobs", metavar="URL", default=os.environ.get("ML_DASH_BLOBS") or None,
                         help="the target blob store, s3://BUCKET/PREFIX or file:///DIR (default: $ML_DASH_BLOBS)")
    migrate.set_defaults(handler=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig
    from ..server.storage.factory import shown
    from .server import ArgumentError, _check_urls, _data_dir

    try:
        if args.db is None or args.blobs is None:
            raise ArgumentError("--db and --blobs (or ML_DASH_DB and ML_DASH_BLOBS) name the target")
        _check_urls(args.db, args.blobs, create=True)
        source = ServerConfig(_data_dir(args.data, create=False))
        _refuse_same_place(source, args.db, args.blobs)
    except ArgumentError as exc:
        print(f"ml-dash migrate: {exc}", file=sys.stderr)
        return 2
    from ..server.blobs.errors import BlobConfigError, BlobError
    from ..server.migrate.copy import MigrationConflict, MigrationError
    from ..server.storage.errors import StorageError, StorageOpenError

    print(f"migrating {source.data_dir} to {shown(args.db)} and {shown(args.blobs)}", flush=True)
    try:
        report = asyncio.run(_migrate(source, args.db, args.blobs))
    except MigrationConflict as exc:
        print(f"ml-dash migrate: refused: {exc}", file=sys.stderr)
        return 2
    except StorageOpenError as exc:
        print(f"ml-dash migrate: --db: {exc}", file=sys.stderr)
        return 2
    except BlobConfigError as exc:  # credentials or bucket refused: a setting to fix
        print(f"ml-dash migrate: --blobs: {exc}", file=sys.stderr)
        return 2
    except (MigrationError, StorageError, BlobError, OSError) as exc:  # what was copied is whole: run it again
        print(f"ml-dash migrate: stopped: {type(exc).__name__}: {exc}; run it again to go on", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def _refuse_same_place(source: ServerConfig, db: str, blobs: str) -> None:
    """A target that is the source itself would find every run "already there": say so instead."""
    from ..server.blobs.factory import blob_dir
    from ..server.storage.factory import sqlite_path
    from .server import ArgumentError

    target_db, target_blobs = sqlite_path(db), blob_dir(blobs)
    if target_db is not None and _same(target_db, source.database):
        raise ArgumentError(f"--db {db} is the source's own database")
    if target_blobs is not None and _same(target_blobs, source.blob_dir):
        raise ArgumentError(f"--blobs {blobs} is the source's own blob directory")


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


async def _migrate(source_config: ServerConfig, db: str, blobs: str) -> MigrationReport:
    from contextlib import AsyncExitStack

    from ..server.blobs.factory import open_blobs
    from ..server.migrate.copy import migrate
    from ..server.migrate.source import SQLiteSource
    from ..server.storage.factory import open_storage

    # opened as the server would: an older embedded schema is brought up to date before it is read
    await (await open_storage(source_config.storage_url)).close()
    async with AsyncExitStack() as stack:
        source = SQLiteSource(source_config.database)
        stack.callback(source.close)
        source_blobs = await open_blobs(source_config.blob_url)
        stack.push_async_callback(source_blobs.close)
        target = await open_storage(db)
        stack.push_async_callback(target.close)
        target_blobs = await open_blobs(blobs)
        stack.push_async_callback(target_blobs.close)
        return await migrate(source, source_blobs, target.migration_target(), target_blobs,
                             say=lambda line: print(line, flush=True))
    raise AssertionError("unreachable")  # mypy: an exit stack may swallow an exception
