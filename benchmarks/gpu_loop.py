"""Training-loop overhead of metric logging on a GPU.

A width-4096, depth-8 ReLU MLP (batch 1024, AdamW, MSE against random targets that
live on the device, TF32 matmuls) is trained for a fixed number of steps under each
logging variant:

1. ``no logging``                 - the reference speed;
2. ``.item() per step``           - ``loss.item()`` every step: one host<->device sync per step;
3. ``ml-dash``                    - ``exp.metrics("train").log(loss=loss, step=i)`` with the CUDA loss
                                    tensor (not ``.item()``) inside ``with exp.run:``; the agent reads
                                    the tensors in batches off the training thread;
4. ``TensorBoard SummaryWriter``  - ``writer.add_scalar("loss", loss, i)`` (calls ``.item()`` inside),
                                    only if ``torch.utils.tensorboard`` imports.

Each variant run does ``--warmup`` untimed steps (logging to a separate stream/tag so that
one-off set-up costs do not land in the timed span), then ``--steps`` timed steps between two
``torch.cuda.synchronize()`` calls. Variants alternate within each of ``--repeats`` rounds and
the median steps/s is reported. The model and optimizer are shared by all runs (only speed is
measured). Closing the run / writer happens after the timed span and is reported separately.
The ml-dash run is checked afterwards: ``metrics/train/data.jsonl`` must hold exactly ``--steps``
rows with finite float losses and steps 0..steps-1.

Usage::

    python benchmarks/gpu_loop.py                       # CUDA, defaults (~1 min on an H100)
    python benchmarks/gpu_loop.py --device cpu --width 256 --batch 64 --steps 20 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None  # type: ignore[assignment]

VARIANTS = ("no logging", ".item() per step", "ml-dash", "TensorBoard SummaryWriter")
RUN_PREFIX = "bench/gpu/run"


# --------------------------------------------------------------------------- model


def build(width: int, depth: int, batch: int, device: str) -> tuple[Any, Any, Any, Any]:
    """MLP, AdamW, and one batch of random inputs/targets created on the device once."""
    layers: list[Any] = []
    for i in range(depth):
        layers.append(torch.nn.Linear(width, width))
        if i < depth - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, width, device=device, generator=gen)
    y = torch.randn(batch, width, device=device, generator=gen)
    return model, opt, x, y


def make_step(model: Any, opt: Any, x: Any, y: Any) -> Callable[[], Any]:
    loss_fn = torch.nn.MSELoss()

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- variants


def timed_loop(step: Callable[[], Any], device: str, steps: int, warmup: int,
               log: Callable[[Any, int], None] | None, warm_log: Callable[[Any, int], None] | None) -> float:
    """Run warm-up then ``steps`` timed steps; return the timed seconds."""
    for i in range(warmup):
        loss = step()
        if warm_log is not None:
            warm_log(loss, i)
    synchronize(device)
    t0 = time.perf_counter()
    if log is None:
        for _ in range(steps):
            step()
    else:
        for i in range(steps):
            log(step(), i)
    synchronize(device)
    return time.perf_counter() - t0


def run_plain(step: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    return {"seconds": timed_loop(step, args.device, args.steps, args.warmup, None, None)}


def run_item(step: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    sink: list[float] = [0.0]

    def log(loss: Any, i: int) -> None:
        sink[0] = loss.item()

    return {"seconds": timed_loop(step, args.device, args.steps, args.warmup, log, log), "last_loss": sink[0]}


def run_mldash(step: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    from ml_dash import Experiment

    root = tempfile.mkdtemp(prefix="mldash-gpu-")
    try:
        exp = Experiment(prefix=RUN_PREFIX, dash_root=root)
        with exp.run:
            warm = exp.metrics("warmup")
            train = exp.metrics("train")
            seconds = timed_loop(step, args.device, args.steps, args.warmup,
                                 lambda loss, i: train.log(loss=loss, step=i),
                                 lambda loss, i: warm.log(loss=loss, step=i))
            t_close = time.perf_counter()
        close_s = time.perf_counter() - t_close
        check = check_metric_file(Path(root) / RUN_PREFIX / "metrics" / "train" / "data.jsonl", args.steps)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"seconds": seconds, "close_s": close_s, "check": check}


def run_tensorboard(step: Callable[[], Any], args: argparse.Namespace) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    root = tempfile.mkdtemp(prefix="tb-gpu-")
    try:
        writer = SummaryWriter(log_dir=root)
        seconds = timed_loop(step, args.device, args.steps, args.warmup,
                             lambda loss, i: writer.add_scalar("loss", loss, i),
                             lambda loss, i: writer.add_scalar("warmup/loss", loss, i))
        t_close = time.perf_counter()
        writer.close()
        close_s = time.perf_counter() - t_close
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"seconds": seconds, "close_s": close_s}


RUNNERS: dict[str, Callable[[Callable[[], Any], argparse.Namespace], dict[str, Any]]] = {
    "no logging": run_plain,
    ".item() per step": run_item,
    "ml-dash": run_mldash,
    "TensorBoard SummaryWriter": run_tensorboard,
}


def check_metric_file(path: Path, steps: int) -> dict[str, Any]:
    """The ml-dash run must have written ``steps`` rows of finite float losses, steps 0..steps-1."""
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return {"ok": False, "rows": 0, "problems": [f"{path} missing"]}
    with path.open("rb") as f:
        for n, line in enumerate(f):
            if n >= steps + 10:  # bounded: enough to prove there are too many
                problems.append("more rows than steps")
                break
            rows.append(json.loads(line))
    if len(rows) != steps:
        problems.append(f"{len(rows)} rows, expected {steps}")
    for row in rows:
        loss = row.get("data", {}).get("loss")
        if not (isinstance(loss, float) and math.isfinite(loss)):
            problems.append(f"row {row.get('index')}: loss={loss!r} is not a finite float")
            break
    if [row.get("data", {}).get("step") for row in rows] != list(range(len(rows))):
        problems.append("steps are not 0..N-1 in order")
    return {"ok": not problems, "rows": len(rows), "problems": problems,
            "first_loss": rows[0]["data"].get("loss") if rows else None,
            "last_loss": rows[-1]["data"].get("loss") if rows else None}


# --------------------------------------------------------------------------- main


def available_variants() -> tuple[list[str], dict[str, str]]:
    skipped: dict[str, str] = {}
    try:
        import ml_dash  # noqa: F401
    except Exception as exc:  # noqa: BLE001  # report, do not hide: this variant is the point of the benchmark
        skipped["ml-dash"] = f"import ml_dash failed: {exc!r}"
    try:
        import torch.utils.tensorboard  # noqa: F401
    except Exception as exc:  # noqa: BLE001  # any failure means the variant is skipped, said in the table
        skipped["TensorBoard SummaryWriter"] = f"not importable: {exc!r}"
    return [v for v in VARIANTS if v not in skipped], skipped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=300, help="timed steps per variant run")
    ap.add_argument("--warmup", type=int, default=30, help="untimed steps before each variant run")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; variants alternate within a round")
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--json", metavar="PATH", help="dump the configuration and every run here")
    return ap.parse_args(argv)


def print_table(medians: dict[str, float], runs: dict[str, list[dict[str, Any]]]) -> None:
    base = medians.get("no logging")
    print("| variant | steps/s | ratio to no logging | overhead % |")
    print("|---|---:|---:|---:|")
    for variant, sps in medians.items():
        ratio = sps / base if base else float("nan")
        print(f"| {variant} | {sps:,.1f} | {ratio:.3f} | {(1 / ratio - 1) * 100:+.1f} |")
    for variant, vruns in runs.items():
        closes = [r["close_s"] for r in vruns if "close_s" in r]
        if closes:
            print(f"close after the timed span, {variant}: median {statistics.median(closes):.3f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if torch is None or (args.device.startswith("cuda") and not torch.cuda.is_available()):
        print("gpu_loop: no CUDA device, skipped")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}  torch {torch.__version__}  python {sys.version.split()[0]}")
    print(f"MLP width {args.width} depth {args.depth} batch {args.batch}, AdamW, MSE; "
          f"{args.steps} timed steps after {args.warmup} warm-up, {args.repeats} alternating rounds")

    variants, skipped = available_variants()
    for variant, why in skipped.items():
        print(f"skipping {variant}: {why}")
    model, opt, x, y = build(args.width, args.depth, args.batch, args.device)
    step = make_step(model, opt, x, y)

    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for round_no in range(args.repeats):
        order = variants if round_no % 2 == 0 else variants[::-1]
        for variant in order:
            result = RUNNERS[variant](step, args)
            result["steps_per_s"] = args.steps / result["seconds"]
            runs[variant].append(result)
            print(f"  round {round_no + 1}/{args.repeats} {variant:<26} {result['steps_per_s']:10.1f} steps/s",
                  flush=True)

    medians = {v: statistics.median(r["steps_per_s"] for r in runs[v]) for v in variants}
    print()
    print_table(medians, runs)
    checks = [r["check"] for r in runs.get("ml-dash", [])]
    failed = [c for c in checks if not c["ok"]]
    for i, c in enumerate(checks):
        print(f"ml-dash metric file check, round {i + 1}: rows={c['rows']} (expected {args.steps}), "
              f"first loss={c['first_loss']}, last loss={c['last_loss']} -> {'OK' if c['ok'] else 'FAILED'}")
        if not c["ok"]:
            print(f"!!! ml-dash metric file check FAILED: {c['problems']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "config": vars(args),
                                               "skipped": skipped, "medians_steps_per_s": medians, "runs": runs},
                                              indent=2))
        print(f"raw results written to {args.json}")
    return 1 if failed or "ml-dash" in skipped else 0


if __name__ == "__main__":
    sys.exit(main())
