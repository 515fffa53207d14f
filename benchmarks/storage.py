"""Storage benchmark: SQLite and PostgreSQL side by side, in one run on this machine (issue 17's first figure).

* storage   1,000,000 metric rows (step + 2 floats) of one run through the Storage API (``open_storage`` then
            ``ingest``), in batches of 100,000 rows: rows/s of the storage alone. The batches are decoded and
            cut into chunks beforehand (the server's decode workers do that, whatever the backend), so the
            figure is the database's part of ingest.
* sync      ``ml-dash sync`` of a local run of 1,000,000 such rows to an ``ml-dash server`` on 127.0.0.1
            started with ``--db sqlite:///...`` and with ``--db postgresql://...``: seconds, end to end
            (client reading its files, HTTP, decode workers, the database), as a user sees it.

* live      one remote SDK run (its own interpreter) logging ``--rows`` rows of 4 scalars + step as fast as it
            can, to one instance on each backend: rows/s from its first call until ``complete()`` returned
            with every row acknowledged (benchmarks/remote.py's "live upload").
* runs      ``--runs`` (20) remote SDK runs at once, each in its own interpreter, each ``--run-rows`` (100,000)
            rows of 4 scalars + step: to one SQLite instance, to one PostgreSQL instance, and to two
            PostgreSQL instances behind haproxy (tests/services/haproxy.py: round robin per request).
            Aggregate rows/s from the moment every client was told to go (interpreters started and
            ml_dash imported beforehand) until the last run's ``complete()`` returned, every row
            acknowledged; and the ingest route's latency from the instances' own
            ``ml_dash_request_seconds`` histograms (``/metrics``, summed over instances): p50/p99
            interpolated within the histogram's buckets as Prometheus' ``histogram_quantile`` does, and
            the exact share of requests answered within 250 ms (a bucket bound); and the CPU-seconds every
            process of the machine used per 100,000 rows (/proc/stat), which rows/s follow when every core
            is busy, as here. The clients share the
            machine's cores with the servers and the database, at a lower priority (``--clients-nice``,
            default 19): in a deployment the runs are on other machines, and here twenty busy interpreters
            at equal priority take 20 of every 23 time slices, so a request's time was the clients'
            queue for the CPU, not the server's work (``--clients-nice 0`` measures that: see
            docs/benchmarks.md). The throughput still counts every process's CPU: the clients get what the
            servers leave. Each instance has the machine's cores shared out as ingest workers (2 for one
            instance, 1 each for two), as a deployment gives an instance workers for the cores it has.
* mlflow    MLflow's tracking server on the same PostgreSQL cluster (``--backend-store-uri
            postgresql+psycopg2://...``, one worker), ``mlflow.log_metrics`` of the same 4 scalars + step,
            synchronous and not (benchmarks/_mlflow_scenario.py), when MLflow's interpreter is found
            (``--mlflow-python``, default benchmarks/.peer-venv-mlflow/bin/python: ``python -m venv
            benchmarks/.peer-venv-mlflow && benchmarks/.peer-venv-mlflow/bin/pip install mlflow==3.17.2
            psycopg2-binary``); the ratio to the live ml-dash run on PostgreSQL.

PostgreSQL is a cluster of its own started by this script (tests/services/postgres.py) with fsync and
synchronous commits on, as in production, so that both backends make each commit durable (SQLite runs
with synchronous=FULL). Both on the same disk. Every server, client and haproxy is a process of this
script on 127.0.0.1, stopped by its PID at the end.

Usage:  python benchmarks/storage.py [--rows 1000000] [--runs 20] [--run-rows 100000] [--quick]
                                     [--skip-sync] [--skip-runs] [--skip-mlflow] [--mlflow-python PATH]
                                     [--clients-nice 0..19] [--json PATH]
        --quick: 100,000 rows, 20 runs x 10,000 rows, 200 MLflow calls (a check that it all works).
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/services/postgres.py starts the cluster

from _mlflow import run_json  # benchmarks/_mlflow.py: MLflow's server, from its own venv
from _mlflow import start_server as start_mlflow
from _mlflow import stop_server as stop_mlflow

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


def database_bytes(cluster: Any, url: str) -> tuple[int, int]:
    """(the database's size on disk, the cluster's write-ahead log position) in bytes."""
    name = url.rsplit("/", 1)[1]
    row = cluster.admin(f"SELECT pg_database_size('{name}') AS size, "
                        "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal")[0]
    return int(row["size"]), int(row["wal"])


def with_bytes(cluster: Any, db: str, case: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``case()``'s result, with the PostgreSQL database's growth and the WAL written per row stored when
    ``db`` is one (nothing else writes to the cluster meanwhile)."""
    if not db.startswith("postgresql://"):
        return case()
    before = database_bytes(cluster, db)
    out = case()
    after = database_bytes(cluster, db)
    out["bytes_per_row"] = (after[0] - before[0]) / out["rows"]
    out["wal_bytes_per_row"] = (after[1] - before[1]) / out["rows"]
    return out


def local_run(where: Path, rows: int) -> Path:
    """A completed local run of ``rows`` rows (step, loss, acc), logged by the SDK."""
    code = (f"from ml_dash import Experiment\nexp = Experiment(prefix='bench/sync/run', local_path={str(where)!r})\n"
            f"with exp.run:\n    m = exp.metrics('train')\n    for i in range({rows}):\n"
            "        m.log(step=i, loss=1.0 / (i + 1), acc=i * 1e-6)\nprint(exp.directory)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def start_server(db: str, data: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """An ``ml-dash server`` on 127.0.0.1 (a free port) over ``db``: the process and its URL. Its log goes to
    ``data``/server.log (a pipe nobody reads could fill and stall it)."""
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / "server.log", "w")  # noqa: SIM115 - the child holds it; closed with the process's end
    server = subprocess.Popen([sys.executable, "-m", "ml_dash.cli", "server", "--host", "127.0.0.1", "--port", "0",
                               "--data", str(data), "--db", db, "--allow-user-name", *extra],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening on" not in line:
        stop(server)
        raise RuntimeError(f"server did not start: {line!r} {(data / 'server.log').read_text()[-2000:]}")
    return server, line.split()[4]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to this process (by its PID), SIGKILL if it is still there after 60 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)


def sync_to(db: str, run_dir: Path, data: Path) -> float:
    """Seconds of ``ml-dash sync`` of ``run_dir`` to a server on ``db``."""
    server, url = start_server(db, data)
    try:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(run_dir), "--remote", url,
                               "--user-name", "bench", "--timeout", "600"], capture_output=True, text=True, timeout=900,
                              env={**os.environ, "ML_DASH_API_KEY": ""})
        took = time.perf_counter() - began
        if done.returncode != 0:
            raise RuntimeError(f"sync failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
        return took
    finally:
        stop(server)


# -- remote SDK runs at once ----------------------------------------------------------------------
#: Rows in a body of a live run logging 100 rows/s: its uploader sends what was written every 0.5 s.
SMALL_BODY_ROWS = 50
#: The ingest route, as the server's /metrics labels it.
INGEST_ROUTE = "/api/v1/runs/{owner}/{project}/{name}/events"


def child_run(url: str, prefix: str, rows: str, local: str, nice: str = "0") -> None:
    """One remote run in this interpreter: ready once imported and built, then (on a line on stdin) start,
    log ``rows`` rows of 4 scalars + step as fast as it can, complete. Prints the wall-clock times."""
    os.nice(int(nice))  # every thread of this interpreter from here on (its agent's too)
    from ml_dash import Experiment

    n = int(rows)
    exp = Experiment(prefix=prefix, remote=url, user_name="bench", local_path=local, upload_timeout_s=600,
                     close_timeout_s=600)
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.time()
    exp.run.start()
    train = exp.metrics("train")
    for i in range(n):
        train.log(loss=1.0 / (i + 1), acc=0.9, lr=1e-3, grad=2.0, step=i)
    acknowledged = exp.run.complete()
    print(json.dumps({"began": began, "ended": time.time(), "acknowledged": acknowledged}), flush=True)


def remote_runs(url: str, runs: int, rows: int, work: Path, label: str, nice: int = 0) -> dict[str, Any]:
    """``runs`` remote SDK runs of ``rows`` rows at once against ``url``: seconds from "go" until the last
    ``complete()`` returned, every row acknowledged."""
    children = []
    # The SDK gives up its start-up lookup after 2 s and then ends a run whose server never answered in time
    # with one short last attempt, leaving its rows for `ml-dash sync`: right for a training job, but here the
    # machine is loaded on purpose and the figure is of rows stored, so the lookup may take a minute.
    env = {**os.environ, "ML_DASH_START_TIMEOUT_S": "60"}
    try:
        for k in range(runs):
            children.append(subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child-run", url, f"bench/{label}/run-{k}", str(rows),
                 str(work / f"clients-{label}"), str(nice)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
        for child in children:  # each interpreter started and ml_dash imported before the clock starts
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a client did not start: {line!r}")
        go, busy_before = time.time(), machine_busy_s()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()  # communicate() closes it
        results = []
        for child in children:
            out, _ = child.communicate(timeout=1800)
            if child.returncode != 0:
                raise RuntimeError(f"a client failed ({child.returncode}): {out[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        seconds = max(r["ended"] for r in results) - go
        busy = machine_busy_s() - busy_before  # a little past the last run's end: its interpreter's exit
        # a run whose close gave up (the SDK says why on stderr) left rows for `ml-dash sync`: counted, shown
        short = sum(1 for r in results if not r["acknowledged"])
        return {"runs": runs, "rows": runs * rows, "seconds": seconds, "rows_s": runs * rows / seconds,
                "runs_not_acknowledged": short, "cpu_s_per_100k_rows": busy / (runs * rows) * 100_000}
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=30)


def scrape(url: str, token: str) -> dict[str, Any]:
    """The ingest route's latency histogram and request counts, and the rows stored, from one instance."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        text = reply.read().decode()
    buckets: dict[float, float] = {}
    statuses: dict[str, float] = {}
    rows = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ml_dash_request_seconds_bucket" and sample.labels.get("route") == INGEST_ROUTE:
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "ml_dash_requests_total" and sample.labels.get("route") == INGEST_ROUTE:
                statuses[sample.labels["status"]] = statuses.get(sample.labels["status"], 0) + sample.value
            elif sample.name == "ml_dash_ingest_rows_total":
                rows += sample.value
    return {"buckets": buckets, "statuses": statuses, "rows_stored": rows}


def merged(scrapes: list[dict[str, Any]]) -> dict[str, Any]:
    """Several instances' scrapes as one (histogram buckets and counts add up)."""
    out: dict[str, Any] = {"buckets": {}, "statuses": {}, "rows_stored": 0.0}
    for one in scrapes:
        for key in ("buckets", "statuses"):
            for name, value in one[key].items():
                out[key][name] = out[key].get(name, 0) + value
        out["rows_stored"] += one["rows_stored"]
    return out


def quantile(buckets: dict[float, float], q: float) -> float:
    """Seconds at quantile ``q`` of a cumulative histogram, interpolated linearly within the bucket it falls
    in (Prometheus' ``histogram_quantile``); the last finite bound where it falls in the +Inf bucket."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return float("nan")
    rank, below, lower = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        below, lower = count, bound
    return lower


def latency(scraped: dict[str, Any]) -> dict[str, Any]:
    buckets = scraped["buckets"]
    total = buckets.get(float("inf"), 0.0)
    return {"requests": total, "p50_ms": quantile(buckets, 0.5) * 1e3, "p99_ms": quantile(buckets, 0.99) * 1e3,
            "within_250ms": buckets.get(0.25, 0.0) / total if total else float("nan"),
            "statuses": scraped["statuses"], "rows_stored": scraped["rows_stored"]}


def instances_case(cluster: Any, dbs: list[str], work: Path, label: str, drive: Callable[[str], dict[str, Any]],
                   token_file: Path, token: str, balanced: bool) -> dict[str, Any]:
    """Start one instance per URL of ``dbs`` (behind haproxy when ``balanced``), ``drive`` the load through
    them (given the URL to send to), scrape each instance, stop everything; on PostgreSQL, what the
    database grew by and the WAL written, per row."""
    return with_bytes(cluster, dbs[0], partial(_instances, dbs, work, label, drive, token_file, token, balanced))


def _instances(dbs: list[str], work: Path, label: str, drive: Callable[[str], dict[str, Any]], token_file: Path,
               token: str, balanced: bool) -> dict[str, Any]:
    servers: list[tuple[subprocess.Popen, str]] = []
    proxy = None
    workers = max(1, (os.cpu_count() or 1) // len(dbs))  # the machine's cores shared out among the instances
    try:
        for k, db in enumerate(dbs):
            servers.append(start_server(db, work / f"data-{label}-{k}", "--blobs", str(work / f"blobs-{label}"),
                                        "--metrics-token-file", str(token_file), "--ingest-workers", str(workers)))
        url = servers[0][1]
        if balanced:
            from tests.services.haproxy import Haproxy

            proxy = Haproxy(work / f"data-{label}-0", [int(u.rsplit(":", 1)[1]) for _, u in servers])
            url = proxy.url
            _wait_ready(url)
        out = drive(url)
        out["latency"] = latency(merged([scrape(u, token) for _, u in servers]))
        out["instances"] = len(servers)
        return out
    finally:
        if proxy is not None:
            proxy.stop()
        for server, _ in servers:
            stop(server)


def small_bodies(url: str, runs: int, rows: int, batch: int) -> dict[str, Any]:
    """``runs`` runs at once, each ``rows`` rows in bodies of ``batch`` rows, from one client process
    (benchmarks/server.py's writer: bodies encoded before the clock starts, each run's requests one after
    another): what a live run sends, a body every 0.5 s, with many runs, costs the server per request."""
    names = ",".join(f"small-{k}" for k in range(runs))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "server.py"), "--child", "write", url, names,
                           str(rows), str(batch)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the writer failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    requests = runs * -(-rows // batch)
    return {"runs": runs, "rows": out["rows"], "seconds": out["seconds"], "rows_s": out["rows_s"],
            "requests": requests, "requests_s": requests / out["seconds"], "runs_not_acknowledged": 0}


def _wait_ready(url: str, within_s: float = 30) -> None:
    """Until ``url``/ready answers 200 (haproxy marks its instances up after a health check)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}/ready did not answer 200 within {within_s} s")
        time.sleep(0.2)


def live_run(db: str, work: Path, label: str, rows: int) -> float:
    """rows/s of one remote run of ``rows`` rows, first call to every row acknowledged, against one instance."""
    server, url = start_server(db, work / f"data-live-{label}", "--blobs", str(work / f"blobs-live-{label}"))
    try:
        return remote_runs(url, 1, rows, work, f"live-{label}")["rows_s"]
    finally:
        stop(server)


# -- MLflow on the same PostgreSQL ----------------------------------------------------------------
def mlflow_on_postgres(python: Path, cluster: Any, work: Path, calls: int) -> dict[str, Any]:
    """MLflow's tracking server (one worker) on a new database of ``cluster``, its client in MLflow's own
    interpreter: benchmarks/_mlflow_scenario.py, synchronous and not."""
    cluster.admin('CREATE DATABASE "mlflow" TEMPLATE template0')
    store = f"postgresql+psycopg2://postgres@127.0.0.1:{cluster.port}/mlflow"
    home = work / "mlflow"
    home.mkdir()
    began = time.perf_counter()
    server, url = start_mlflow(store, home, python=python)  # 16-18 s here on a fresh database (its schema)
    try:
        out: dict[str, Any] = {"ready_s": time.perf_counter() - began}
        for mode in ("sync", "async"):
            out[mode] = run_json([str(ROOT / "benchmarks" / "_mlflow_scenario.py"), url, str(calls), mode], home,
                                 python=python)
        return out
    finally:
        stop_mlflow(server)


def mlflow_python(given: Path | None) -> Path | None:
    """MLflow's interpreter: ``--mlflow-python``, else benchmarks/.peer-venv-mlflow's, else none."""
    if given is not None:
        return given
    default = ROOT / "benchmarks" / ".peer-venv-mlflow" / "bin" / "python"
    return default if default.exists() else None


def machine_busy_s() -> float:
    """CPU-seconds every process of this machine has used since boot (Linux's /proc/stat: all but idle and
    I/O wait, and the time a hypervisor took). On a machine whose cores are all busy, rows/s follow CPU-s per
    row: this says why."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="remote runs at once (default 20)")
    parser.add_argument("--run-rows", type=int, default=100_000, help="rows of each of those runs (default 100,000)")
    parser.add_argument("--small-rows", type=int, default=5000,
                        help="rows of each run sent in bodies of 50 rows, as live runs at 100 rows/s send them "
                             "(default 5,000; 0: not measured)")
    parser.add_argument("--mlflow-calls", type=int, default=2000, help="log_metrics calls to MLflow (it is slow)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 20 runs x 10,000, 200 MLflow calls")
    parser.add_argument("--skip-sync", action="store_true", help="no ml-dash sync figure")
    parser.add_argument("--skip-runs", action="store_true", help="no live run, no runs at once")
    parser.add_argument("--skip-mlflow", action="store_true", help="no MLflow figure")
    parser.add_argument("--mlflow-python", type=Path, help="MLflow's interpreter (default: benchmarks/.peer-venv-mlflow's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--clients-nice", type=int, default=19, choices=range(20), metavar="0..19",
                        help="the runs-at-once clients' niceness (default 19: they get the CPU the servers leave)")
    parser.add_argument("--child-run", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_run:
        child_run(*args.child_run)
        return 0
    if args.quick:
        args.rows, args.run_rows, args.small_rows, args.mlflow_calls = 100_000, 10_000, 500, 200
    mlflow = None if args.skip_mlflow else mlflow_python(args.mlflow_python)
    if not args.skip_mlflow and mlflow is None:
        print("MLflow skipped: no benchmarks/.peer-venv-mlflow (python -m venv benchmarks/.peer-venv-mlflow && "
              "benchmarks/.peer-venv-mlflow/bin/pip install mlflow==3.17.2 psycopg2-binary), nor --mlflow-python",
              file=sys.stderr)

    from tests.services.postgres import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="ml-dash-bench-storage-"))
    work.chmod(0o755)
    cluster = PostgresCluster.start(durable=True)
    results: dict[str, Any] = {"rows": args.rows, "load_before": load_average()}
    try:
        began = time.perf_counter()
        prepared = batches(args.rows)
        results["prepare_s"] = time.perf_counter() - began
        for name, url in (("sqlite", f"sqlite://{work / 'api.sqlite3'}"), ("postgresql", cluster.new_database())):
            before = database_bytes(cluster, url) if name == "postgresql" else None
            results[f"storage_{name}_s"] = asyncio.run(storage_ingest(url, prepared))
            if before is not None:  # what a row costs the database and its write-ahead log (for docs/scaling.md)
                after = database_bytes(cluster, url)
                results["postgresql_bytes_per_row"] = (after[0] - before[0]) / args.rows
                results["postgresql_wal_bytes_per_row"] = (after[1] - before[1]) / args.rows
        del prepared
        if not args.skip_sync:
            run_dir = local_run(work / "local", args.rows)
            for name, db in (("sqlite", f"sqlite://{work / 'sync.sqlite3'}"), ("postgresql", cluster.new_database())):
                results[f"sync_{name}_s"] = sync_to(db, run_dir, work / f"data-{name}")
        if not args.skip_runs:
            token = "bench-metrics-token"
            token_file = work / "metrics-token"
            token_file.write_text(token)
            for name, db in (("sqlite", f"sqlite://{work / 'live.sqlite3'}"), ("postgresql", cluster.new_database())):
                results[f"live_{name}_rows_s"] = live_run(db, work, name, args.rows)
            shared = cluster.new_database()
            setups = (("sqlite", [f"sqlite://{work / 'runs.sqlite3'}"], False),
                      ("postgresql", [cluster.new_database()], False), ("postgresql-x2", [shared, shared], True))
            for label, dbs, balanced in setups:
                drive = partial(remote_runs, runs=args.runs, rows=args.run_rows, work=work, label=label,
                                nice=args.clients_nice)
                results[f"runs_{label}"] = instances_case(cluster, dbs, work, label, drive, token_file, token, balanced)
            if args.small_rows:
                drive = partial(small_bodies, runs=args.runs, rows=args.small_rows, batch=SMALL_BODY_ROWS)
                for label, dbs, balanced in setups:  # the same databases: these runs are new ones
                    results[f"small_{label}"] = instances_case(cluster, dbs, work, f"small-{label}", drive, token_file,
                                                               token, balanced)
        if mlflow is not None:
            results["mlflow"] = mlflow_on_postgres(mlflow, cluster, work, args.mlflow_calls)
    finally:
        results["load_after"] = load_average()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    rows = args.rows
    print(f"machine: {os.cpu_count()} cores, load average (1/5/15 min) {results['load_before']} before, "
          f"{results['load_after']} after")
    print(f"{'':44}{'SQLite':>16}{'PostgreSQL':>16}{'PG x2 + haproxy':>18}{'PG / SQLite':>13}")
    for what in ("storage", "sync"):
        lite, pg = results.get(f"{what}_sqlite_s"), results.get(f"{what}_postgresql_s")
        if lite is None or pg is None:
            continue
        label = f"{what} of {rows:,} rows"
        print(f"{label:44}{lite:>14.2f} s{pg:>14.2f} s{'':18}{pg / lite:>12.2f}x")
        print(f"{'':44}{rows / lite:>12,.0f} r/s{rows / pg:>12,.0f} r/s")
    if "postgresql_bytes_per_row" in results:
        print(f"{'  PostgreSQL: database / WAL bytes per row':44}{'':16}"
              f"{results['postgresql_bytes_per_row']:>8.1f} / {results['postgresql_wal_bytes_per_row']:.1f}")
    lite_live, pg_live = results.get("live_sqlite_rows_s"), results.get("live_postgresql_rows_s")
    if lite_live is not None and pg_live is not None:
        print(f"{f'live: 1 remote run of {rows:,} rows':44}{lite_live:>12,.0f} r/s{pg_live:>12,.0f} r/s{'':18}"
              f"{pg_live / lite_live:>12.2f}x")
    cases = [results.get(f"runs_{label}") for label in ("sqlite", "postgresql", "postgresql-x2")]
    if all(cases):
        one = cases[0]
        head = f"{one['runs']} runs x {args.run_rows:,} rows at once"
        print(f"{head:44}" + "".join(f"{c['rows_s']:>12,.0f} r/s" + ("  " if k == 2 else "") for k, c in enumerate(cases))
              + f"{cases[2]['rows_s'] / one['rows_s']:>12.2f}x")
        print(f"{'  ingest requests (all instances)':44}" + "".join(f"{c['latency']['requests']:>16,.0f}" for c in cases))
        for key, label in (("p50_ms", "  ingest request p50 (server histogram)"),
                           ("p99_ms", "  ingest request p99 (server histogram)")):
            print(f"{label:44}" + "".join(f"{c['latency'][key]:>13,.1f} ms" + ("  " if k == 2 else "")
                                         for k, c in enumerate(cases)))
        print(f"{'  ingest requests within 250 ms':44}" + "".join(f"{c['latency']['within_250ms']:>16.1%}" for c in cases))
        print(f"{'  replies by status':44}" + "".join(
            f"{' '.join(f'{s}:{n:.0f}' for s, n in sorted(c['latency']['statuses'].items())):>16}" for c in cases))
        print(f"{'  PostgreSQL: database / WAL bytes per row':44}{'':16}"
              + "".join(f"{c['bytes_per_row']:>8.1f} / {c['wal_bytes_per_row']:<6.1f}" for c in cases[1:]))
        print(f"{'  CPU-s per 100,000 rows (every process)':44}"
              + "".join(f"{c['cpu_s_per_100k_rows']:>16.3f}" for c in cases))
        print(f"{'  runs closed with rows not acknowledged':44}"
              + "".join(f"{c['runs_not_acknowledged']:>16}" for c in cases))
        balanced = cases[2]
        print(f"targets (PG x2 + haproxy): aggregate >= SQLite's: "
              f"{'met' if balanced['rows_s'] >= one['rows_s'] else 'NOT met'}; ingest p99 < 250 ms: "
              f"{'met' if balanced['latency']['p99_ms'] < 250 else 'NOT met'}")
    small = [results.get(f"small_{label}") for label in ("sqlite", "postgresql", "postgresql-x2")]
    if all(small):
        head = f"{small[0]['runs']} runs x {args.small_rows:,} rows, bodies of {SMALL_BODY_ROWS}"
        print(f"{head:44}" + "".join(f"{c['requests_s']:>10,.0f} req/s" + ("  " if k == 2 else "")
                                     for k, c in enumerate(small)) + f"{small[2]['requests_s'] / small[0]['requests_s']:>12.2f}x")
        print(f"{'':44}" + "".join(f"{c['rows_s']:>12,.0f} r/s" for c in small))
        print(f"{'  PostgreSQL: database / WAL bytes per row':44}{'':16}"
              + "".join(f"{c['bytes_per_row']:>8.1f} / {c['wal_bytes_per_row']:<6.1f}" for c in small[1:]))
        for key, label in (("p50_ms", "  small request p50 (server histogram)"),
                           ("p99_ms", "  small request p99 (server histogram)")):
            print(f"{label:44}" + "".join(f"{c['latency'][key]:>13,.1f} ms" + ("  " if k == 2 else "")
                                         for k, c in enumerate(small)))
    if "mlflow" in results and pg_live is not None:
        for mode in ("sync", "async"):
            m = results["mlflow"][mode]
            label = f"MLflow log_metrics {mode}, {m['n']:,} calls"
            print(f"{label:44}{'':16}{m['rows_per_s']:>12,.0f} r/s{'':18}  ml-dash live is {pg_live / m['rows_per_s']:,.0f}x")
        print(f"(MLflow's server ready in {results['mlflow']['ready_s']:.1f} s on a fresh database)")
    print(f"(decoding and cutting the batches beforehand: {results['prepare_s']:.2f} s, not counted; a row: "
          "step + 2 floats in storage/sync, step + 4 floats in live/runs/MLflow; the last column is PostgreSQL / "
          "SQLite, and for the runs at once PG x2 + haproxy / SQLite)")


if __name__ == "__main__":
    raise SystemExit(main())
