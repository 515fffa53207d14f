"""Analysis benchmark: ml_dash.history and ml_dash.search_runs, locally and from a server on loopback, beside
pandas.read_json of the same file and MLflow's search_runs on the same runs.

* history      one run of N rows (4 scalars + step, the hot path's row) written by the SDK:
               ml_dash.history from the run directory, from an ``ml-dash server`` subprocess (127.0.0.1, the run
               uploaded with ``ml-dash sync``; the columnar read), and pandas.read_json(lines=True) of the same
               data.jsonl. Wall time and this process's CPU time (the machine is small and shared: the CPU time
               says what a quiet machine's wall time would be, within its threads)
* search_runs  R runs (3 params, a "train" stream of 100 rows of 2 fields): ml_dash.search_runs locally and from
               the server, unfiltered and with a filter; and, if benchmarks/.peer-venv-mlflow exists (pip install
               mlflow there), MLflow's tracking server (SQLite) holding the same runs, mlflow.search_runs
               unfiltered and with the same filter, timed in MLflow's venv

Each figure is the best of --repeat calls. Usage:  python benchmarks/analysis.py [--n 1000000] [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _mlflow import MLFLOW_PYTHON, run_json  # benchmarks/_mlflow.py: MLflow's server, from its own venv
from _mlflow import start_server as start_mlflow
from _mlflow import stop_server as stop_mlflow
from _server import start_server  # benchmarks/_server.py: the script's folder is on sys.path

HERE = Path(__file__).resolve()
FILTER = "opt = adam, train/loss < 0.5"
MLFLOW_FILTER = "params.opt = 'adam' and metrics.loss < 0.5"  # MLflow's params take = and != only


def make_runs(root: Path, n: int, runs: int) -> None:
    """In a fresh interpreter: the big run, and ``runs`` small ones, under ``root/.dash``."""
    code = f"""
import os
os.chdir({str(root)!r})
from ml_dash import Experiment
exp = Experiment(prefix="alice/bench/big")
with exp.run:
    train = exp.metrics("train")
    for i in range({n}):
        train.log(loss=1.0 / (i + 1), acc=0.9, lr=1e-3, grad=2.0, step=i)
for r in range({runs}):
    exp = Experiment(prefix=f"alice/sweep/run-{{r:04d}}")
    with exp.run:
        exp.params.set(lr=10 ** -(1 + r % 4), depth=2 + r % 5, opt="adam" if r % 2 else "sgd")
        for s in range(100):
            exp.metrics("train").log(loss=1.0 / (s + 1) + r / {runs}, acc=s / 100)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(best wall s, that call's CPU s, its result)."""
    found: tuple[float, float, Any] | None = None
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        if found is None or wall < found[0]:
            found = (wall, cpu, out)
    assert found is not None
    return found


def mlflow_search(work: Path, runs: int, repeat: int) -> dict[str, Any]:
    """MLflow's server (SQLite) with the same runs, and its search_runs timed in MLflow's venv."""
    server, url = start_mlflow(f"sqlite:///{work}/mlflow.db", work)
    script = f"""
import json, sys, time
import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
mlflow.set_tracking_uri({url!r})
client = MlflowClient()
exp_id = client.create_experiment("sweep")
for r in range({runs}):
    run = client.create_run(exp_id, run_name=f"run-{{r:04d}}")
    params = [Param("lr", str(10 ** -(1 + r % 4))), Param("depth", str(2 + r % 5)), Param("opt", "adam" if r % 2 else "sgd")]
    metrics = [Metric(k, v, 0, s) for s in range(100) for k, v in (("loss", 1.0 / (s + 1) + r / {runs}), ("acc", s / 100))]
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    client.set_terminated(run.info.run_id)
out = {{}}
for label, flt in (("all", ""), ("filtered", {MLFLOW_FILTER!r})):
    walls = []
    for _ in range({repeat}):
        t0 = time.perf_counter()
        frame = mlflow.search_runs(experiment_names=["sweep"], filter_string=flt, max_results=100000)
        walls.append(time.perf_counter() - t0)
    out[label] = {{"s": min(walls), "rows": len(frame)}}
print(json.dumps(out))
"""
    try:
        return run_json(["-c", script], work)
    finally:
        stop_mlflow(server)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import pandas as pd

    import ml_dash

    work = Path(tempfile.mkdtemp(prefix="ml-dash-analysis-bench-"))
    server, url = start_server(work / "server")
    os.environ["ML_DASH_USER_NAME"] = "alice"  # the development server takes a user name (--allow-user-name)
    results: dict[str, Any] = {}
    try:
        make_runs(work, args.n, args.runs)
        root = work / ".dash"
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", url, "--user-name",
                              "alice"], cwd=work, capture_output=True, text=True, timeout=1800)
        assert out.returncode == 0, out.stdout + out.stderr
        data = root / "alice" / "bench" / "big" / "metrics" / "train" / "data.jsonl"
        results["history local"] = best(lambda: ml_dash.history(root, "alice/bench/big", "train"), args.repeat)
        results["history server"] = best(lambda: ml_dash.history(url, "alice/bench/big", "train"), args.repeat)
        results["pandas.read_json"] = best(lambda: pd.read_json(data, lines=True), args.repeat)
        assert len(results["history local"][2]) == len(results["history server"][2]) == args.n
        for where, source in (("local", root), ("server", url)):
            for label, flt in (("all", None), ("filtered", FILTER)):
                results[f"search {where} {label}"] = best(
                    lambda s=source, f=flt: ml_dash.search_runs(s, project="alice/sweep", filter=f), args.repeat)
        if MLFLOW_PYTHON.exists():
            results["mlflow"] = mlflow_search(work, args.runs, args.repeat)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print_table(args, results, data.stat().st_size if data.exists() else None)
    return 0


def print_table(args: argparse.Namespace, r: dict[str, Any], size: int | None) -> None:
    print(f"machine: nproc={os.cpu_count()} python={sys.version.split()[0]} load={os.getloadavg()[0]:.1f}; "
          f"N={args.n:,}; R={args.runs}; best of {args.repeat}; server on 127.0.0.1\n")
    print(f"| history of a {args.n:,}-row run (4 scalars + step) | wall s | CPU s | target |")
    print("|---|---:|---:|---|")
    print(f"| `ml_dash.history` local (Arrow JSON reader) | {r['history local'][0]:.2f} | {r['history local'][1]:.2f} | < 1 s |")
    print(f"| `ml_dash.history` from the server (columnar read) | {r['history server'][0]:.2f} | "
          f"{r['history server'][1]:.2f} (client) | < 3 s |")
    print(f"| `pandas.read_json(lines=True)` of the same file | {r['pandas.read_json'][0]:.2f} | "
          f"{r['pandas.read_json'][1]:.2f} | – |")
    print()
    print(f"| search_runs over {args.runs} runs (3 params, 2 metric fields) | all, s | filtered, s | rows filtered |")
    print("|---|---:|---:|---:|")
    for where in ("local", "server"):
        a, f = r[f"search {where} all"], r[f"search {where} filtered"]
        print(f"| `ml_dash.search_runs` {where} | {a[0]:.3f} | {f[0]:.3f} | {len(f[2])} |")
    if "mlflow" in r:
        m = r["mlflow"]
        print(f"| MLflow `search_runs` (tracking server, SQLite) | {m['all']['s']:.3f} | {m['filtered']['s']:.3f} | "
              f"{m['filtered']['rows']} |")
    else:
        print("| MLflow `search_runs` | not run: benchmarks/.peer-venv-mlflow is missing | | |")
    print(f"\nfilter: ml-dash `{FILTER}`; MLflow `{MLFLOW_FILTER}`" + (f"; file {size / 1e6:.0f} MB" if size else ""))


if __name__ == "__main__":
    sys.exit(main())
