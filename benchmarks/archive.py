"""Archival benchmark (issue 17): a run of N rows, 90% of it archived, on SQLite + a blob directory,
PostgreSQL + a blob directory and PostgreSQL + S3 (SeaweedFS), in one run on this machine.

* archive     seconds and rows/s of archiving the oldest 90% of the run's chunks (one ``archive_all``)
* db bytes    the metric chunks' bytes in the database before and after
* after VACUUM  every byte the database gives the metric tables (chunks, summaries, latest values, the
              archive's index; their indexes and TOAST), each side VACUUMed (PostgreSQL: ``VACUUM FULL``,
              which returns the space; SQLite: ``VACUUM``, counted with ``dbstat``), after archival as a
              share of before: the issue's bound is 20%; and of those the summaries' (all widths)
* page        a 1,000-row page at random places of the archived range and of the database's range: median
              and p95 milliseconds over 40 pages each, through the Storage API (as a request's handler)
* buckets     1,000 min/max buckets of the whole series, and of a zoomed range of 256,000 rows in each
              tier (buckets 256 rows wide: made of width-64 summaries, or of the archived rows where
              archival dropped them): median and p95 milliseconds over 10 reads each

``--reads`` is the issue's point "a 10,000,000-row run, 90% archived: a 1,000-row page anywhere <= 50
ms, 1,000 min/max buckets of the whole series <= 150 ms, through either instance": SQLite + a
directory and PostgreSQL + S3 only, with a second storage opened on the same database and blobs (a
second server instance's pool) and the reads alternating between the two.

PostgreSQL runs as a cluster of its own (tests/services/postgres.py) with fsync on, as in production;
S3 is SeaweedFS's ``weed mini`` on loopback (tests/services/s3.py), skipped where ``weed`` is missing.

Usage:  python benchmarks/archive.py [--rows 2000000] [--reads]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/services/postgres.py starts the cluster; benchmarks/storage.py cuts batches

ARCHIVED = 0.9
PAGES, BUCKET_READS = 40, 10
#: Rows a zoomed chart spans: 1,000 buckets of it are 256 rows wide, made of width-64 summaries.
ZOOM_ROWS = 256_000


async def measure(url: str, blob_url: str, prepared: list[Any], rows: int, instances: int) -> dict[str, float]:
    from ml_dash.server.blobs import open_blobs
    from ml_dash.server.storage import open_storage
    from ml_dash.server.storage.archive import ArchivePolicy, archive_all

    storage = await open_storage(url)
    blobs = await open_blobs(blob_url)
    storage.read_archive_from(blobs)
    out: dict[str, float] = {}
    others: list[Any] = []
    try:
        edge_batch = int(len(prepared) * ARCHIVED)
        for number, batch in enumerate(prepared):
            if number == edge_batch:
                await asyncio.sleep(0.05)
                edge = time.time()
                await asyncio.sleep(0.05)
            await storage.ingest(batch)
        exp = await storage.experiment("bench", "storage", "run")
        assert exp is not None
        out["db_bytes_before"] = await chunk_bytes(storage)
        out["vacuumed_before"], out["summaries_before"] = await metric_table_bytes(url)
        began = time.perf_counter()
        report = await archive_all(storage.archive_tier(), blobs, ArchivePolicy(0.0, clock=lambda: edge))
        out["archive_s"] = time.perf_counter() - began
        out["archived_rows"] = report.rows
        out["objects"] = report.objects
        out["object_bytes"] = report.object_bytes
        out["db_bytes_after"] = await chunk_bytes(storage)
        out["vacuumed_after"], out["summaries_after"] = await metric_table_bytes(url)
        for _ in range(instances - 1):  # another server instance: its own pool on the same database and bucket
            others.append((await open_storage(url), await open_blobs(blob_url)))
            others[-1][0].read_archive_from(others[-1][1])
        out.update(await timed_reads([storage, *(other for other, _ in others)], exp["id"], report.rows, rows))
    finally:
        for other, other_blobs in others:
            await other_blobs.close()
            await other.close()
        await blobs.close()
        await storage.close()
    return out


async def timed_reads(readers: list[Any], eid: int, split: int, rows: int) -> dict[str, float]:
    """Pages at random places of each tier, the whole series' buckets and buckets of a zoomed range of
    each tier (fine enough to need the finest summaries, archive.py), each read through the next of
    ``readers`` in turn (server instances on one database): median and p95 milliseconds."""
    out: dict[str, float] = {}
    rng = random.Random(7)
    turn = iter(range(10**9))
    zoom = min(ZOOM_ROWS, split // 2, (rows - split) // 2)

    async def page(low: int, high: int) -> None:  # a page somewhere in low:high
        start = rng.randrange(low, high - 1000)
        found, _ = await readers[next(turn) % len(readers)].metric_rows(eid, "train", start, 1000)
        assert len(found) == 1000 and found[0]["index"] == start

    async def buckets(low: int, high: int, span: int | None) -> None:  # of span rows somewhere in low:high, or all
        start = 0 if span is None else rng.randrange(low, high - span)
        end = None if span is None else start + span
        _width, found = await readers[next(turn) % len(readers)].metric_buckets(eid, "train", start, end, 1000)
        assert sum(b["count"] for b in found) == (rows if end is None else end) - start

    for name, low, high in (("archived", 0, split), ("database", split, rows)):
        out.update(await timings(f"page_{name}", PAGES, partial(page, low, high)))
        out.update(await timings(f"zoom_{name}", BUCKET_READS, partial(buckets, low, high, zoom)))
    out.update(await timings("buckets", BUCKET_READS, partial(buckets, 0, rows, None)))
    out["zoom_rows"] = zoom
    return out


async def timings(name: str, count: int, read: Any) -> dict[str, float]:
    took = []
    for _ in range(count):
        began = time.perf_counter()
        await read()
        took.append(time.perf_counter() - began)
    return {f"{name}_median_ms": statistics.median(took) * 1000,
            f"{name}_p95_ms": sorted(took)[min(len(took) - 1, int(len(took) * 0.95))] * 1000}


async def chunk_bytes(storage: Any) -> float:
    """The metric chunks' bytes in the database (their blocks, as stored before any page compression)."""
    from ml_dash.server.storage.archive import ArchiveTier

    tier: ArchiveTier = storage.archive_tier()
    return float(sum(key.size for key in await tier.candidates(time.time() + 3600, 10**7)))


METRIC_TABLES = ("metric_chunks", "metric_summaries", "metric_latest", "metric_archive")


async def metric_table_bytes(url: str) -> tuple[float, float]:
    """The metric tables' bytes in the database after VACUUM (with their indexes, and TOAST on PostgreSQL),
    and of those the summaries' (``metric_summaries``)."""
    if url.startswith("sqlite://"):
        return await asyncio.to_thread(_sqlite_table_bytes, Path(url.removeprefix("sqlite://")))
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"VACUUM FULL {', '.join(METRIC_TABLES)}")
        sizes = {t: await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", t) for t in METRIC_TABLES}
        return float(sum(sizes.values())), float(sizes["metric_summaries"])
    finally:
        await conn.close()


def _sqlite_table_bytes(path: Path) -> tuple[float, float]:
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("VACUUM")
        names = db.execute(f"SELECT name, tbl_name FROM sqlite_master WHERE tbl_name IN "
                           f"({', '.join('?' * len(METRIC_TABLES))})", METRIC_TABLES).fetchall()
        sizes = {name: float(db.execute("SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = ?", (name,)).fetchone()[0])
                 for name, _table in names}
        return sum(sizes.values()), sum(size for (name, table), size in zip(names, sizes.values()) if table == "metric_summaries")
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--reads", action="store_true",
                        help="the issue's read point (with --rows 10000000): SQLite+dir and PG+S3 only, each read "
                             "through two instances in turn")
    args = parser.parse_args()

    from benchmarks.storage import batches
    from tests.services import s3
    from tests.services.postgres import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="ml-dash-bench-archive-"))
    cluster = PostgresCluster.start(durable=True)
    weed = s3.weed_binary()
    s3_proc = None
    results: dict[str, dict[str, float]] = {}
    try:
        prepared = batches(args.rows)
        setups = [("SQLite+dir", f"sqlite://{work / 'bench.sqlite3'}", f"file://{work / 'blobs-sqlite'}")]
        if not args.reads:
            setups.append(("PG+dir", cluster.new_database(), f"file://{work / 'blobs-pg'}"))
        if weed is not None:
            (work / "s3").mkdir()
            s3_proc, service = s3.start(weed, work / "s3", random.Random())
            os.environ.update(service.env())
            setups.append(("PG+S3", cluster.new_database(), service.fresh_url()))
        for name, url, blob_url in setups:
            results[name] = asyncio.run(measure(url, blob_url, prepared, args.rows, 2 if args.reads else 1))
    finally:
        if s3_proc is not None:
            s3.stop(s3_proc)
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    names = list(results)
    print(f"{args.rows:,} rows (step + 2 floats), {ARCHIVED:.0%} archived"
          + (", reads through 2 instances in turn" if args.reads else ""))
    print(f"{'':38}" + "".join(f"{name:>14}" for name in names))
    lines = [("rows archived, % (edge at a batch)", None, "{:.0f}%"),
             ("archive, s", "archive_s", "{:.2f}"), ("archive, rows/s", None, "{:,.0f}"),
             ("objects", "objects", "{:.0f}"), ("object MiB", None, "{:.1f}"),
             ("chunk MiB in db before", "db_bytes_before", "{:.1f}"), ("chunk MiB in db after", "db_bytes_after", "{:.1f}"),
             ("metric MiB in db, VACUUMed, before", "vacuumed_before", "{:.1f}"),
             ("metric MiB in db, VACUUMed, after", "vacuumed_after", "{:.1f}"),
             ("  after as % of before (bound: 20%)", None, "{:.1f}%"),
             ("  summaries, MiB (all widths, after)", "summaries_after", "{:.1f}"),
             ("  summaries, % of before", None, "{:.1f}%"),
             ("1,000-row page archived, ms (median)", "page_archived_median_ms", "{:.1f}"),
             ("1,000-row page archived, ms (p95)", "page_archived_p95_ms", "{:.1f}"),
             ("1,000-row page database, ms (median)", "page_database_median_ms", "{:.1f}"),
             ("1,000-row page database, ms (p95)", "page_database_p95_ms", "{:.1f}"),
             ("1,000 buckets whole series, ms (median)", "buckets_median_ms", "{:.1f}"),
             ("1,000 buckets whole series, ms (p95)", "buckets_p95_ms", "{:.1f}"),
             ("zoomed range, rows", "zoom_rows", "{:,.0f}"),
             ("1,000 buckets of it archived, ms (med)", "zoom_archived_median_ms", "{:.1f}"),
             ("1,000 buckets of it archived, ms (p95)", "zoom_archived_p95_ms", "{:.1f}"),
             ("1,000 buckets of it database, ms (med)", "zoom_database_median_ms", "{:.1f}"),
             ("1,000 buckets of it database, ms (p95)", "zoom_database_p95_ms", "{:.1f}")]
    for label, key, form in lines:
        cells = []
        for name in names:
            got = results[name]
            if label.startswith("rows archived"):  # batches of BATCH_ROWS: a small run cannot cut at 90%
                value = 100 * got["archived_rows"] / args.rows
            elif label == "archive, rows/s":
                value = got["archived_rows"] / got["archive_s"]
            elif label.startswith("  summaries, %"):
                value = 100 * got["summaries_after"] / got["vacuumed_before"]
            elif label.startswith("  after as %"):
                value = 100 * got["vacuumed_after"] / got["vacuumed_before"]
            elif label == "object MiB":
                value = got["object_bytes"] / 2**20
            else:
                value = got[key] / (2**20 if "MiB" in label else 1)  # type: ignore[index]
            cells.append(form.format(value))
        print(f"{label:38}" + "".join(f"{cell:>14}" for cell in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
