"""Storage benchmark: SQLite and PostgreSQL side by side, in one run on this machine (issue 17's first figure).

* storage   1,000,000 metric rows (step + 2 floats) of one run through the Storage API (``open_storage`` then
            ``ingest``), in batches of 100,000 rows: rows/s of the storage alone. The batches are decoded and
            cut into chunks beforehand (the server's decode workers do that, whatever the backend), so the
            figure is the database's part of ingest.
* sync      ``ml-dash sync`` of a local run of 1,000,000 such rows to an ``ml-dash server`` on 127.0.0.1
            started with ``--db sqlite:///...`` and with ``--db postgresql://...``: seconds, end to end
            (client reading its files, HTTP, decode workers, the database), as a user sees it.

PostgreSQL is a cluster of its own started by this script (tests/services/postgres.py) with fsync and
synchronous commits on, as in production, so that both backends make each commit durable (SQLite runs
with synchronous=FULL). Both on the same disk.

Usage:  python benchmarks/storage.py [--rows 1000000] [--skip-sync] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/services/postgres.py starts the cluster

BATCH_ROWS = 100_000


def batches(rows: int) -> list[Any]:
    """The run's rows as the server hands them to its storage: validated batches, chunks and summaries cut."""
    import random

    from ml_dash.format.wire import columns_block
    from ml_dash.server.ingest.decode import build_batch

    out = []
    for start in range(0, rows, BATCH_ROWS):
        count = min(BATCH_ROWS, rows - start)
        steps = list(range(start, start + count))
        rng = random.Random(start)
        block = columns_block(["step", "loss", "acc"], [steps, [rng.random() for _ in steps],
                                                        [rng.random() for _ in steps]], ["2026-12-01T00:00:00Z"] * count)
        body = {"identity": {"run_id": "bench", "writer_id": "w"}, "reply": "named",
                "streams": {"metrics/train": {"start": start, "blocks": [block]}}}
        out.append(build_batch("bench", "storage", "run", body, max_events=10**7))
    return out


async def storage_ingest(url: str, prepared: list[Any]) -> float:
    """Seconds to ingest every batch into a fresh store at ``url``."""
    from ml_dash.server.storage import open_storage

    storage = await open_storage(url)
    try:
        began = time.perf_counter()
        for batch in prepared:
            await storage.ingest(batch)
        took = time.perf_counter() - began
        exp = await storage.experiment("bench", "storage", "run")
        assert exp is not None
        page, _ = await storage.metric_rows(exp["id"], "train", len(prepared) * BATCH_ROWS - 1, 10)
        assert page, "the last row is not there"
        return took
    finally:
        await storage.close()


def local_run(where: Path, rows: int) -> Path:
    """A completed local run of ``rows`` rows (step, loss, acc), logged by the SDK."""
    code = (f"from ml_dash import Experiment\nexp = Experiment(prefix='bench/sync/run', local_path={str(where)!r})\n"
            f"with exp.run:\n    m = exp.metrics('train')\n    for i in range({rows}):\n"
            "        m.log(step=i, loss=1.0 / (i + 1), acc=i * 1e-6)\nprint(exp.directory)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def sync_to(db: str, run_dir: Path, data: Path) -> float:
    """Seconds of ``ml-dash sync`` of ``run_dir`` to a server on ``db``."""
    server = subprocess.Popen([sys.executable, "-m", "ml_dash.cli", "server", "--host", "127.0.0.1", "--port", "0",
                               "--data", str(data), "--db", db, "--allow-user-name"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"server did not start: {line!r} {server.stderr.read() if server.stderr else ''}")
        url = line.split()[4]
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(run_dir), "--remote", url,
                               "--user-name", "bench", "--timeout", "600"], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "ML_DASH_API_KEY": ""})
        took = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"sync failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
        return took
    finally:
        server.terminate()
        server.communicate(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-sync", action="store_true", help="only the storage API figure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from tests.services.postgres import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="ml-dash-bench-storage-"))
    cluster = PostgresCluster.start(durable=True)
    results: dict[str, Any] = {"rows": args.rows}
    try:
        began = time.perf_counter()
        prepared = batches(args.rows)
        results["prepare_s"] = time.perf_counter() - began
        for name, url in (("sqlite", f"sqlite://{work / 'api.sqlite3'}"), ("postgresql", cluster.new_database())):
            results[f"storage_{name}_s"] = asyncio.run(storage_ingest(url, prepared))
        del prepared
        if not args.skip_sync:
            run_dir = local_run(work / "local", args.rows)
            for name, db in (("sqlite", f"sqlite://{work / 'sync.sqlite3'}"), ("postgresql", cluster.new_database())):
                results[f"sync_{name}_s"] = sync_to(db, run_dir, work / f"data-{name}")
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    rows = args.rows
    print(f"{'':28}{'SQLite':>14}{'PostgreSQL':>14}{'ratio':>8}")
    for what in ("storage", "sync"):
        lite, pg = results.get(f"{what}_sqlite_s"), results.get(f"{what}_postgresql_s")
        if lite is None or pg is None:
            continue
        label = f"{what} of {rows:,} rows"
        print(f"{label:28}{lite:>12.2f} s{pg:>12.2f} s{pg / lite:>7.2f}x")
        print(f"{'':28}{rows / lite:>10,.0f} r/s{rows / pg:>10,.0f} r/s")
    print(f"(decoding and cutting the batches beforehand: {results['prepare_s']:.2f} s, not counted)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
