"""Hot-path benchmark: cost of ``exp.metrics("train").log(...)`` on the caller's thread.

What is measured (by ``_scenario.py``, one scenario per process):

* ``deque``      - ``collections.deque.append`` of a 5-tuple, timed per call: the floor
                   any in-process buffer can hope for on this machine.
* ``latency``    - per-call wall time of ``exp.metrics("train").log(5 fields)`` for N calls
                   (mean/p50/p99/max), plus the time ``run.complete()`` takes to drain.
* ``throughput`` - N untimed calls, then ``run.complete()``: end-to-end rows/s (loop + drain),
                   close time, peak RSS above the post-import baseline, rows written to disk.
* ``import``     - wall time of ``import ml_dash`` in a cold interpreter.
* capture        - (benchmarks/capture.py) a ``print()`` with the console captured against console off,
                   and the sampler's CPU at the default interval. The scenarios above run with capture
                   as users get it: console, system metrics and provenance on.
* ``bigrows``    - 300 rows each holding a distinct 900,000-character string (270 MB through the
                   64 MiB buffer): peak RSS, against the memory bound docs/guarantees.md states.

Why subprocesses: every scenario runs in a FRESH interpreter with a fresh temporary
``dash_root`` so that one scenario's heap, GC generations, background threads and page
cache state cannot leak into the next, peak RSS (VmHWM) is per scenario, and the
import time is really cold. It is also the only way to compare against the public
``ml-dash==0.11.0`` package, which imports under the same name (``ml_dash``) and so must
live in its own virtualenv (``benchmarks/.peer-venv``, created by ``--setup-peers``).

Usage::

    python benchmarks/hot_path.py --setup-peers
    python benchmarks/hot_path.py [--n 1000000] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "_scenario.py"
PEER_VENV = HERE / ".peer-venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_SPEC = "ml-dash==0.11.0"

#: docs/guarantees.md "Memory": 1.5 x ML_DASH_MAX_BUFFER_MB (64) + 32 MB in local mode (agent/streams.py memory_bound_mb).
MEMORY_BOUND_MB = 1.5 * 64 + 32
BIG_ROWS = 300

OURS_TIMEOUT_S = 600.0
PEER_TIMEOUT_S = 300.0
IMPORT_TIMEOUT_S = 60.0
IMPORT_REPEATS = 5

# (label, metric key, comparison, threshold, unit) for our row.
TARGETS: list[tuple[str, str, str, float, str]] = [
    ("mean", "mean_us", "<=", 1.2, "µs"),
    ("p50", "p50_us", "<=", 1.0, "µs"),
    ("p99", "p99_us", "<=", 5.0, "µs"),
    ("rows/s end-to-end", "rows_per_s", ">=", 500_000, "rows/s"),
    ("close", "close_s", "<=", 1.5, "s"),
    ("peak RSS above baseline", "peak_rss_above_baseline_mb", "<=", MEMORY_BOUND_MB, "MB"),
    ("peak RSS, big rows", "bigrows_peak_rss_mb", "<=", MEMORY_BOUND_MB, "MB"),
    ("import", "import_ms", "<=", 150.0, "ms"),
]


class ScenarioError(RuntimeError):
    pass


class ScenarioTimeout(ScenarioError):
    pass


@dataclass
class Row:
    """One line of the table: medians over repeats, plus the raw runs."""

    label: str
    n: int
    metrics: dict[str, float] = field(default_factory=dict)
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- setup


def setup_peers() -> bool:
    """Create benchmarks/.peer-venv with the public package; True if it imports."""
    print(f"creating {PEER_VENV} with {PEER_SPEC} ...", flush=True)
    verify = "import ml_dash, importlib.metadata as m; print(m.version('ml-dash'), ml_dash.__file__)"
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(PEER_VENV)
        install = subprocess.run([str(PEER_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                  PEER_SPEC], capture_output=True, text=True, timeout=900)
        if install.returncode != 0:
            raise ScenarioError(f"pip install {PEER_SPEC} failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}")
        # cwd outside the repo, so that ./ml_dash (ours) cannot shadow the installed package
        out = subprocess.run([str(PEER_PYTHON), "-c", verify], cwd=tempfile.gettempdir(), timeout=120,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise ScenarioError(f"import ml_dash failed in the peer venv:\n{out.stderr[-3000:]}")
    except (OSError, subprocess.SubprocessError, ScenarioError) as exc:
        print(f"WARNING: could not set up {PEER_SPEC} in {PEER_VENV}: {exc}\ncontinuing without the peer")
        shutil.rmtree(PEER_VENV, ignore_errors=True)
        return False
    print(f"peer ready: ml-dash {out.stdout.strip()}")
    return True


# --------------------------------------------------------------------------- running


# Imports are timed as installed: with bytecode caches (pip compiles a wheel at install; an editable
# install writes them on first import), so a shell that sets PYTHONDONTWRITEBYTECODE is not obeyed here.
# Capture (docs/capture.md) runs as a user gets it: console, system metrics (every 10 s) and provenance
# on, whatever the calling shell or test suite set.
SCENARIO_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"
                and k not in ("ML_DASH_CONSOLE", "ML_DASH_SYSTEM_METRICS_INTERVAL_S", "ML_DASH_PROVENANCE")}


def run_scenario(python: Path | str, mode: str, n: int, timeout_s: float) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter with a fresh temp dash_root."""
    root = tempfile.mkdtemp(prefix=f"mldash-bench-{mode}-")
    cmd = [str(python), str(SCENARIO), mode, str(n), root]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=root, env=SCENARIO_ENV)
    except subprocess.TimeoutExpired as exc:
        raise ScenarioTimeout(f"{mode} N={n} timed out after {timeout_s:.0f}s") from exc
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if proc.returncode != 0:
        raise ScenarioError(f"{mode} N={n} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise ScenarioError(f"{mode} N={n} printed no JSON: {proc.stdout[-500:]!r} {proc.stderr[-500:]!r}")
    return json.loads(lines[-1])


def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = {k for run in runs for k, v in run.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: statistics.median(run[k] for run in runs if k in run) for k in sorted(keys)}


def repeat(python: Path | str, mode: str, n: int, times: int, timeout_s: float) -> list[dict[str, Any]]:
    runs = []
    for i in range(times):
        print(f"  {mode:<10} N={n:,} run {i + 1}/{times} ...", end="", flush=True)
        result = run_scenario(python, mode, n, timeout_s)
        print(" done", flush=True)
        runs.append(result)
    return runs


def measure_tracker(label: str, python: Path | str, n: int, repeats: int, timeout_s: float) -> Row:
    """latency + throughput (repeats each) + import (IMPORT_REPEATS) for one package."""
    row = Row(label=label, n=n)
    for mode in ("latency", "throughput"):
        row.raw[mode] = repeat(python, mode, n, repeats, timeout_s)
    run_scenario(python, "import", 0, IMPORT_TIMEOUT_S)  # uncounted: writes the bytecode, as pip does at install
    row.raw["import"] = repeat(python, "import", 0, IMPORT_REPEATS, IMPORT_TIMEOUT_S)
    lat, thr, imp = (median_of(row.raw[m]) for m in ("latency", "throughput", "import"))
    row.metrics = {k: lat[k] for k in ("mean_us", "p50_us", "p99_us", "max_us") if k in lat}
    row.metrics["latency_close_s"] = lat.get("close_s", float("nan"))
    for k in ("rows_per_s", "close_s", "peak_rss_above_baseline_mb", "loop_s", "total_s"):
        row.metrics[k] = thr.get(k, float("nan"))
    row.metrics["import_ms"] = imp.get("import_ms", float("nan"))
    if any(r.get("torch_loaded") for r in row.raw["import"]):
        row.notes.append("import pulled in torch")
    return row


def measure_peer(n: int, repeats: int) -> Row | None:
    """Upstream at N; on timeout, once more at N/10 (marked in the label)."""
    if not PEER_PYTHON.exists():
        print(f"(no {PEER_PYTHON}; run --setup-peers to compare against {PEER_SPEC})")
        return None
    label = "ml-dash 0.11.0 (PyPI)"
    for size in (n, max(1, n // 10)):
        try:
            row = measure_tracker(label if size == n else f"{label} (N={size:,})", PEER_PYTHON, size, repeats,
                                  PEER_TIMEOUT_S)
            return row
        except ScenarioTimeout as exc:
            print(f"\n  upstream: {exc}; retrying with N={max(1, size // 10):,}")
        except ScenarioError as exc:
            print(f"\n  upstream failed: {exc}")
            return None
    print("  upstream timed out at N/10 as well; no row")
    return None


def check_rows_on_disk(row: Row) -> None:
    for mode in ("latency", "throughput"):
        for run in row.raw.get(mode, []):
            on_disk = run.get("rows_on_disk")
            if on_disk != row.n:
                msg = f"{row.label} {mode}: rows_on_disk={on_disk} != N={row.n}"
                row.notes.append(msg)
                print("\n" + "!" * 78 + f"\n!!! WARNING: {msg} -- DATA LOSS OR INCOMPLETE DRAIN\n" + "!" * 78)


# --------------------------------------------------------------------------- report


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "python": platform.python_version(), "cpu": cpu,
            "platform": platform.platform()}


def fmt(value: float | None, spec: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    return format(value, spec)


def table_line(row: Row) -> str:
    m = row.metrics
    cells = [row.label, fmt(m.get("mean_us"), ".3f"), fmt(m.get("p50_us"), ".3f"), fmt(m.get("p99_us"), ".3f"),
             fmt(m["max_us"] / 1000 if "max_us" in m else None, ".2f"), fmt(m.get("rows_per_s"), ",.0f"),
             fmt(m.get("close_s"), ".3f"), fmt(m.get("peak_rss_above_baseline_mb"), ".1f"),
             fmt(m.get("import_ms"), ".1f")]
    return "| " + " | ".join(cells) + " |"


def evaluate_targets(row: Row) -> list[tuple[str, str, bool]]:
    results = []
    for label, key, op, limit, unit in TARGETS:
        value = row.metrics.get(key)
        ok = value is not None and not math.isnan(value) and (value <= limit if op == "<=" else value >= limit)
        shown = "–" if value is None else (f"{value:,.0f}" if key == "rows_per_s" else f"{value:.3g}")
        results.append((label, f"{shown} {op} {limit:,g} {unit}", ok))
    return results


def print_report(info: dict[str, str], rows: list[Row], n: int, repeats: int) -> list[tuple[str, str, bool]]:
    print()
    print(f"machine: nproc={info['nproc']}  python={info['python']}  cpu={info['cpu']}")
    print(f"N={n:,}, median of {repeats} fresh-process runs per metric (import: median of {IMPORT_REPEATS})")
    print()
    print("| tracker | mean µs | p50 µs | p99 µs | max ms | rows/s end-to-end | close s | "
          "peak RSS MB above baseline | import ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(table_line(row))
    print()
    ours = next(r for r in rows if r.label == "ml-dash (this repo)")
    big = ours.metrics.get("bigrows_peak_rss_mb")
    if big is not None:
        print("| memory (ml-dash, ML_DASH_MAX_BUFFER_MB=64) | peak RSS MB above the run's start | bound |")
        print("|---|---:|---:|")
        print(f"| {ours.n:,} rows of 4 scalars + step | {fmt(ours.metrics.get('peak_rss_above_baseline_mb'), '.1f')} "
              f"| {MEMORY_BOUND_MB:.0f} |")
        print(f"| {BIG_ROWS} rows of a distinct 900,000-character string | {fmt(big, '.1f')} | {MEMORY_BOUND_MB:.0f} |")
        print()
    print("targets (ml-dash, this repo): mean ≤ 1.2 µs, p50 ≤ 1.0 µs, p99 ≤ 5 µs, ≥ 500,000 rows/s, "
          f"close ≤ 1.5 s, peak RSS ≤ {MEMORY_BOUND_MB:.0f} MB (small and big rows), import ≤ 150 ms")
    verdicts = evaluate_targets(ours)
    for label, detail, ok in verdicts:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<24} {detail}")
    for row in rows:
        for note in row.notes:
            print(f"note: {row.label}: {note}")
    return verdicts


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setup-peers", action="store_true", help=f"create {PEER_VENV} with {PEER_SPEC} and exit")
    ap.add_argument("--n", type=int, default=1_000_000, help="calls per latency/throughput scenario")
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process runs per scenario (median)")
    ap.add_argument("--json", metavar="PATH", help="dump machine info, medians and raw runs here")
    ap.add_argument("--no-peer", action="store_true", help="skip the upstream comparison")
    ap.add_argument("--no-capture", action="store_true", help="skip capture's costs (benchmarks/capture.py)")
    args = ap.parse_args(argv)

    if args.setup_peers:
        setup_peers()
        return 0

    info = machine_info()
    ours_python = sys.executable
    print(f"benchmarking with {ours_python}")
    floor = Row(label="deque.append (floor)", n=args.n)
    floor.raw["deque"] = repeat(ours_python, "deque", args.n, args.repeats, OURS_TIMEOUT_S)
    floor.metrics = median_of(floor.raw["deque"])

    ours = measure_tracker("ml-dash (this repo)", ours_python, args.n, args.repeats, OURS_TIMEOUT_S)
    check_rows_on_disk(ours)
    ours.raw["bigrows"] = repeat(ours_python, "bigrows", BIG_ROWS, args.repeats, OURS_TIMEOUT_S)
    ours.metrics["bigrows_peak_rss_mb"] = median_of(ours.raw["bigrows"])["peak_rss_above_baseline_mb"]
    dropped = sum(run.get("dropped", 0) for run in ours.raw["bigrows"])
    if dropped:
        ours.notes.append(f"big rows: {dropped} dropped over {args.repeats} runs (buffer_full, counted in exp.stats())")
    rows = [floor, ours]
    if not args.no_peer:
        peer = measure_peer(args.n, args.repeats)
        if peer is not None:
            rows.append(peer)

    verdicts = print_report(info, rows, args.n, args.repeats)
    if not args.no_capture:  # what capture adds beside the hot path: a print(), the sampler's CPU
        from capture import measure, print_table

        print()
        print_table(measure())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": info, "n": args.n, "repeats": args.repeats,
                   "rows": [{"label": r.label, "n": r.n, "metrics": r.metrics, "notes": r.notes, "raw": r.raw}
                            for r in rows],
                   "targets": [{"target": t, "detail": d, "pass": ok} for t, d, ok in verdicts]}
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"raw results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
