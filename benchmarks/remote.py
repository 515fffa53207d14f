"""Remote-mode benchmark: sync, live upload, wire bytes, hot path and memory, against a real server.

Everything runs on this machine over loopback: an ``ml-dash server`` subprocess
(port 0, --allow-user-name) and each client scenario in a fresh interpreter.

* sync        a local run of N rows (4 scalars + step) moved with ``ml-dash sync``; then a second sync
* wire        bytes per row of one batch: zstd columnar body vs JSON lines vs msgpack (columnar, and rows)
* live        a remote-mode run logging N rows as fast as it can: from the first call until close has
              returned with every row acknowledged by the server -> rows/s
* latency     per-call time of exp.metrics("train").log(...) in remote mode (N calls), as hot_path.py does
* memory      a remote run logging for --memory-s seconds at ~100k rows/s with the server up, and with it
              down (an unused port): peak RSS above the interpreter's baseline

* mlflow      if benchmarks/.peer-venv-mlflow exists (pip install mlflow there): MLflow's tracking
              server on loopback (SQLite backend), mlflow.log_metrics with the same 4 scalars + step,
              synchronous and asynchronous, from the first call until the run has ended

Usage:  python benchmarks/remote.py [--n 1000000] [--memory-s 20] [--mlflow-n 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _mlflow import MLFLOW_PYTHON, run_json  # benchmarks/_mlflow.py: MLflow's server, from its own venv
from _mlflow import start_server as start_mlflow
from _mlflow import stop_server as stop_mlflow
from _server import start_server  # benchmarks/_server.py: the script's folder is on sys.path

HERE = Path(__file__).resolve()


def child(mode: str, *args: str, timeout_s: float = 900) -> dict:
    out = subprocess.run([sys.executable, str(HERE), "--child", mode, *args], capture_output=True, text=True,
                         timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- child scenarios (fresh interpreter each) -------------------------------------------------
def child_make_local(root: str, n: int) -> dict:
    os.chdir(root)
    from ml_dash import Experiment

    exp = Experiment(prefix="alice/bench/sync")
    with exp.run:
        train = exp.metrics("train")
        for i in range(n):
            train.log(loss=1.0 / (i + 1), acc=0.9, lr=1e-3, grad=2.0, step=i)
    return {"rows": n}


def child_live(root: str, url: str, n: int) -> dict:
    os.chdir(root)
    from ml_dash import Experiment

    exp = Experiment(prefix="alice/bench/live", remote=url, user_name="alice", upload_timeout_s=300)
    t0 = time.perf_counter()
    exp.run.start()
    train = exp.metrics("train")
    for i in range(n):
        train.log(loss=1.0 / (i + 1), acc=0.9, lr=1e-3, grad=2.0, step=i)
    loop_s = time.perf_counter() - t0
    done = exp.run.complete()
    total = time.perf_counter() - t0
    return {"loop_s": loop_s, "total_s": total, "rows_per_s": n / total, "all_acknowledged": done}


def child_latency(root: str, url: str, n: int) -> dict:
    os.chdir(root)
    from _scenario import (  # the same timed loop as hot_path.py
        summarise,
        timed_log_calls,
    )

    from ml_dash import Experiment

    exp = Experiment(prefix="alice/bench/latency", remote=url, user_name="alice", upload_timeout_s=300)
    exp.run.start()
    ns = timed_log_calls(exp, n)
    exp.run.complete()
    return summarise(ns)


def child_memory(root: str, url: str, seconds: float, label: str) -> dict:
    os.chdir(root)
    from _scenario import peak_rss_mb, rss_mb

    from ml_dash import Experiment

    baseline = rss_mb()  # each case a fresh run of its own (not the other's directory resumed)
    exp = Experiment(prefix=f"alice/bench/memory-{label}", remote=url, user_name="alice", upload_timeout_s=1)
    exp.run.start()
    train = exp.metrics("train")
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        for _ in range(1000):
            train.log(loss=1.0 / (i + 1), acc=0.9, lr=1e-3, grad=2.0, step=i)
            i += 1
        time.sleep(0.01)  # ~100k rows/s
    exp.run.complete()
    peak = peak_rss_mb()
    return {"rows": i, "peak_rss_above_baseline_mb": peak - baseline}


def wire_sizes(root: str, rows: int = 50_000) -> dict:
    import msgpack

    from ml_dash.format.wire import encode_body, metric_blocks

    path = Path(root) / ".dash/alice/bench/sync/metrics/train/data.jsonl"
    with open(path, "rb") as f:
        lines = [f.readline() for _ in range(rows)]
    records = [json.loads(line) for line in lines]
    blocks = metric_blocks(records)
    body = {"v": 1, "streams": {"metrics/train": {"start": 0, "blocks": blocks}}}
    sizes = {"json_lines": sum(map(len, lines)), "msgpack_rows": len(msgpack.packb(records)),
             "msgpack_columnar": len(msgpack.packb(body)), "zstd_columnar (wire)": len(encode_body(body))}
    return {name: size / rows for name, size in sizes.items()}


def mlflow_compare(work: Path, n: int) -> dict:
    """MLflow's server and client, each in MLflow's venv, on a free loopback port."""
    server, url = start_mlflow(f"sqlite:///{work}/mlflow.db", work)
    try:
        return {mode: run_json([str(HERE.parent / "_mlflow_scenario.py"), url, str(n), mode], work)
                for mode in ("sync", "async")}
    finally:
        stop_mlflow(server)


# -- orchestration ----------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--memory-s", type=float, default=20.0)
    ap.add_argument("--mlflow-n", type=int, default=2000,
                    help="rows per MLflow scenario (it is slow); 0 leaves MLflow out")
    ap.add_argument("--json")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for name in ("n", "mlflow_n"):
        if getattr(args, name) < 0 or (name == "n" and args.n == 0):
            ap.error(f"--{name.replace('_', '-')} must be {'a positive' if name == 'n' else 'a non-negative'} count")
    if args.memory_s <= 0:
        ap.error("--memory-s must be a positive number of seconds")
    if args.child:
        mode, *rest = args.child
        fn = {"make_local": child_make_local, "live": child_live, "latency": child_latency, "memory": child_memory}[mode]
        converted = [int(x) if x.isdigit() else (float(x) if x.replace(".", "", 1).isdigit() else x) for x in rest]
        print(json.dumps(fn(*converted)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="ml-dash-remote-bench-"))
    server, url = start_server(work / "server")
    results: dict = {"n": args.n}
    try:
        child("make_local", str(work), str(args.n))
        for label in ("sync", "second sync"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", url,
                                  "--user-name", "alice"], cwd=work, capture_output=True, text=True, timeout=900)
            results[label + " s"] = time.perf_counter() - t0
            assert out.returncode == 0, out.stdout + out.stderr
        results["wire bytes/row"] = wire_sizes(str(work), min(50_000, args.n))  # one batch, or the whole run
        results["live"] = child("live", str(work), url, str(args.n))
        results["latency"] = child("latency", str(work), url, str(args.n))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        results["memory server up"] = child("memory", str(work), url, str(args.memory_s), "up")
        results["memory server down"] = child("memory", str(work), dead, str(args.memory_s), "down")
        if MLFLOW_PYTHON.exists() and args.mlflow_n:
            results["mlflow"] = mlflow_compare(work, args.mlflow_n)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(r: dict) -> None:
    n = r["n"]
    wire = r["wire bytes/row"]
    print(f"machine: nproc={os.cpu_count()} python={sys.version.split()[0]}; N={n:,}; server on 127.0.0.1\n")
    print("| measurement | value | target |")
    print("|---|---:|---|")
    print(f"| `ml-dash sync` of a {n:,}-row local run | {r['sync s']:.2f} s | ≤ 5 s |")
    print(f"| second `ml-dash sync` (nothing new) | {r['second sync s']:.2f} s | stores nothing |")
    print(f"| live upload, first call to every row acknowledged | {r['live']['rows_per_s']:,.0f} rows/s | ≥ 300,000 rows/s |")
    lat = r["latency"]
    print(f"| hot path in remote mode: mean / p50 / p99 | {lat['mean_us']:.2f} / {lat['p50_us']:.2f} / {lat['p99_us']:.2f} µs | as local (≤ 1.2 / 1.0 / 5) |")
    up, down = r["memory server up"], r["memory server down"]
    print(f"| peak RSS above baseline, server up / down ({up['rows']:,} / {down['rows']:,} rows) | "
          f"{up['peak_rss_above_baseline_mb']:.0f} / {down['peak_rss_above_baseline_mb']:.0f} MB | down within 100 MB of up |")
    print()
    if "mlflow" in r:
        live = r["live"]["rows_per_s"]
        print("| remote logging, 4 scalars + step per call | mean µs | p50 µs | rows/s first call to stored | ml-dash is |")
        print("|---|---:|---:|---:|---:|")
        print(f"| ml-dash (N={n:,}) | {lat['mean_us']:.2f} | {lat['p50_us']:.2f} | {live:,.0f} | – |")
        for mode, m in r["mlflow"].items():
            print(f"| MLflow log_metrics, {mode} (N={m['n']:,}) | {m['mean_us']:.1f} | {m['p50_us']:.1f} | "
                  f"{m['rows_per_s']:,.0f} | {live / m['rows_per_s']:,.0f}x faster |")
        print()
    print(f"| encoding of one {min(50_000, n):,}-row batch | bytes/row | vs JSON lines |")
    print("|---|---:|---:|")
    for name, size in wire.items():
        print(f"| {name} | {size:.1f} | {size / wire['json_lines']:.1%} |")


if __name__ == "__main__":
    sys.exit(main())
