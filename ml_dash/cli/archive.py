"""``ml-dash archive``: one archival pass over a server's data (storage/archive.py), and the durations
that archival's flags take (``ml-dash server --archive-after``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys

#: A duration as the flags take it: a number and a unit.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_FORM = "a number and a unit (s, m, h, d, w): 90s, 15m, 12h, 30d, 2w"


def parse_duration(text: str, flag: str) -> float:
    """Seconds in ``text`` (``30d``); ValueError naming ``flag`` and the form otherwise."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{flag} {text!r}: a duration is {DURATION_FORM}")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def add_command(sub: argparse._SubParsersAction) -> None:
    archive = sub.add_parser("archive", help="move old metric chunks from the database to the blob store, once",
                             description="Archive every metric chunk stored longer ago than --older-than into "
                                         "compressed objects in the blob store, then say what moved. Safe while "
                                         "servers run and archive too; reads return the same rows after.")
    archive.add_argument("--older-than", required=True, metavar="DURATION", help=f"the age to archive: {DURATION_FORM}")
    archive.add_argument("--data", default="ml-dash-data", help="the server's data directory (default ./ml-dash-data)")
    archive.add_argument("--db", metavar="URL", default=os.environ.get("ML_DASH_DB") or None,
                         help="the server's database, when it was started with --db (default: $ML_DASH_DB)")
    archive.add_argument("--blobs", metavar="URL", default=os.environ.get("ML_DASH_BLOBS") or None,
                         help="the server's blob store, when it was started with --blobs (default: $ML_DASH_BLOBS)")
    archive.set_defaults(handler=run_archive)


def run_archive(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig
    from .server import ArgumentError, _check_urls, _data_dir

    try:
        older_than_s = parse_duration(args.older_than, "--older-than")
        _check_urls(args.db, args.blobs, create=False)
        config = ServerConfig(_data_dir(args.data, create=False, own_db=args.db is None), db=args.db, blobs=args.blobs)
    except (ValueError, ArgumentError) as exc:
        print(f"ml-dash archive: {exc}", file=sys.stderr)
        return 2
    from ..server.blobs.errors import BlobConfigError, BlobError
    from ..server.storage.errors import StorageError, StorageOpenError

    try:
        report = asyncio.run(_archive(config, older_than_s))
    except StorageOpenError as exc:
        print(f"ml-dash archive: --db: {exc}", file=sys.stderr)
        return 2
    except BlobConfigError as exc:  # credentials or bucket refused: a setting to fix
        print(f"ml-dash archive: --blobs: {exc}", file=sys.stderr)
        return 2
    except (StorageError, BlobError, OSError) as exc:  # unreachable now: nothing half-done, run it again
        print(f"ml-dash archive: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


async def _archive(config: object, older_than_s: float) -> str:
    from ..server.blobs.factory import open_blobs
    from ..server.config import ServerConfig
    from ..server.storage.archive import ArchivePolicy, archive_all
    from ..server.storage.factory import open_storage

    assert isinstance(config, ServerConfig)
    storage = await open_storage(config.storage_url)
    try:
        blobs = await open_blobs(config.blob_url)
        try:
            return (await archive_all(storage.archive_tier(), blobs, ArchivePolicy(older_than_s))).line()
        finally:
            await blobs.close()
    finally:
        await storage.close()
