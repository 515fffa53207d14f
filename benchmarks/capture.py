"""What capture (docs/capture.md) costs: a ``print()`` with the console captured against plain stdout,
and the CPU the system-metrics sampler takes.

Rows (each measured in a fresh interpreter, stdout to a file in a temp directory, as a job's log is):

* ``print``: ``print(<60 characters>)`` N times in a running run with the console off and with it on
  (system metrics and provenance off in both): the training thread's CPU time per print (the tee's own
  cost), the process's (the drainer turning writes into log lines and the agent writing them
  included), and the loop's wall time (which also pays for sharing the GIL with those threads; noisy
  on a loaded machine).
* ``sampler``: the CPU time of one ``SystemSampler.sample()`` (psutil, and NVML when a GPU is there),
  median of 200, as a share of one core at the default interval (10 s); and the CPU time an idle run
  with everything capture does at its defaults takes over ``--idle-s`` seconds against an idle run
  with capture off (the console drainer's wake-ups included), as a share of one core.
  Target: under 0.1% of a core.

Usage::

    python benchmarks/capture.py [--n 200000] [--idle-s 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

DEFAULT_INTERVAL_S = 10.0
CORE_SHARE_TARGET_PERCENT = 0.1

_PRINT = """
import json, os, sys, time
from ml_dash import Experiment
n, console = int(sys.argv[1]), sys.argv[2] == "on"
exp = Experiment("bench/capture/print-" + sys.argv[2], console=console, system_metrics=False, provenance=False)
text = "epoch 1 step 123 loss 0.123456 acc 0.987654 lr 0.000100 ok"
with exp.run:
    for i in range(1000):
        print(text)  # warm up: the tee and the drainer started, the file open
    cpu0, thread0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    for i in range(n):
        print(text)
    wall, thread = time.perf_counter() - t0, time.thread_time() - thread0
    exp.flush()  # the lines queued by then are written too: their whole cost is counted
    cpu = time.process_time() - cpu0
captured = exp.stats().get("capture", {}).get("console", {}).get("lines", 0)
os.write(2, json.dumps({"print_ns": wall / n * 1e9, "thread_ns": thread / n * 1e9, "cpu_ns": cpu / n * 1e9,
                        "lines": captured}).encode())
"""

_SAMPLE = """
import json, os, pathlib, statistics, time
from ml_dash.capture.gpu import open_gpus
from ml_dash.capture.system import open_sampler
sampler = open_sampler(pathlib.Path("."), open_gpus())
costs = []
for _ in range(200):
    t0 = time.thread_time()
    fields = sampler.sample()
    costs.append(time.thread_time() - t0)
print(json.dumps({"sample_us": statistics.median(costs) * 1e6, "fields": len(fields),
                  "gpu": any(k.startswith("gpu") for k in fields)}))
"""

_IDLE = """
import json, sys, time
from ml_dash import Experiment
idle_s, on = float(sys.argv[1]), sys.argv[2] == "on"
exp = Experiment("bench/capture/idle-" + sys.argv[2], console=on, system_metrics=on, provenance=on)
with exp.run:
    time.sleep(2.0)  # the start's one-off work (provenance, opening NVML) is not the steady cost
    cpu0 = time.process_time()
    time.sleep(idle_s)
    cpu = time.process_time() - cpu0
print(json.dumps({"cpu_s": cpu, "idle_s": idle_s}))
"""


def _run(code: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    with tempfile.TemporaryDirectory(prefix="mldash-bench-capture-") as root, \
            open(os.path.join(root, "stdout.log"), "w") as out:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=root, env=env, stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"scenario failed: {proc.stderr[-2000:]}")
        if code is _PRINT:
            return json.loads(proc.stderr.strip().splitlines()[-1])
        with open(os.path.join(root, "stdout.log")) as f:
            return json.loads(f.read().strip().splitlines()[-1])


def measure(n: int = 200_000, idle_s: float = 20.0) -> list[tuple[str, str, str]]:
    """(what, figure, verdict) rows."""
    off, on = _run(_PRINT, str(n), "off"), _run(_PRINT, str(n), "on")
    sample = _run(_SAMPLE)
    idle_off, idle_on = _run(_IDLE, str(idle_s), "off"), _run(_IDLE, str(idle_s), "on")
    per_sample_share = sample["sample_us"] / 1e6 / DEFAULT_INTERVAL_S * 100
    idle_share = (idle_on["cpu_s"] - idle_off["cpu_s"]) / idle_s * 100
    return [
        ("print(), the training thread's CPU", (f"{on['thread_ns'] / 1000:.2f} µs captured, "
         f"{off['thread_ns'] / 1000:.2f} µs console off"), f"+{(on['thread_ns'] - off['thread_ns']) / 1000:.2f} µs (the tee)"),
        ("print(), the process's CPU (drainer and log writing too)", (f"{on['cpu_ns'] / 1000:.2f} µs captured, "
         f"{off['cpu_ns'] / 1000:.2f} µs off ({on['lines']:,} lines kept)"),
         f"+{(on['cpu_ns'] - off['cpu_ns']) / 1000:.2f} µs"),
        ("print(), wall time of the loop", f"{on['print_ns'] / 1000:.2f} µs captured, {off['print_ns'] / 1000:.2f} µs off",
         f"+{(on['print_ns'] - off['print_ns']) / 1000:.2f} µs (GIL shared with the drainer)"),
        (f"one system sample ({sample['fields']} fields{', GPUs' if sample['gpu'] else ', no GPU'})",
         f"{sample['sample_us']:.0f} µs CPU = {per_sample_share:.4f}% of a core at {DEFAULT_INTERVAL_S:.0f} s",
         "PASS" if per_sample_share < CORE_SHARE_TARGET_PERCENT else "FAIL"),
        (f"idle run, all capture at its defaults vs off, {idle_s:.0f} s",
         f"{(idle_on['cpu_s'] - idle_off['cpu_s']) * 1000:.1f} ms CPU = {idle_share:.3f}% of a core",
         "PASS" if idle_share < CORE_SHARE_TARGET_PERCENT else "FAIL"),
    ]


def print_table(rows: list[tuple[str, str, str]]) -> None:
    print(f"| capture (target: sampler under {CORE_SHARE_TARGET_PERCENT}% of a core) | measured | vs off / verdict |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="print() calls per scenario")
    ap.add_argument("--idle-s", type=float, default=20.0, help="seconds of each idle run")
    args = ap.parse_args(argv)
    print_table(measure(args.n, args.idle_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
