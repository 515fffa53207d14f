"""One measured scenario, run in a fresh interpreter by hot_path.py.

Usage: python _scenario.py MODE N DIR  (MODE: deque | latency | throughput | import)
Prints one JSON object. Works against ours and the public ml-dash package
(both accept ``Experiment(prefix=..., dash_root=...)``).
"""

import gc
import json
import os
import resource
import sys
import time
from array import array
from collections import deque


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This interpreter's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so
    a child started by a large parent would report at least the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarise(ns: array) -> dict:
    values = sorted(ns)
    n = len(values)
    return {
        "mean_us": sum(values) / n / 1000,
        "p50_us": values[n // 2] / 1000,
        "p99_us": values[int(n * 0.99)] / 1000,
        "max_us": values[-1] / 1000,
    }


def timed_log_calls(exp, n: int) -> array:
    """Nanoseconds of each of ``n`` calls of ``exp.metrics("train").log(4 scalars + step)``, timed around the call."""
    pc = time.perf_counter_ns
    ns = array("q", bytes(8 * n))
    for i in range(n):
        x = i * 1e-6
        t0 = pc()
        exp.metrics("train").log(loss=x, acc=0.9, lr=1e-3, grad=2.0, step=i)
        ns[i] = pc() - t0
    return ns


def main() -> None:
    mode, n, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    pc = time.perf_counter_ns
    if mode == "import":
        t0 = time.perf_counter()
        import ml_dash  # noqa: F401

        print(json.dumps({"import_ms": (time.perf_counter() - t0) * 1000, "torch_loaded": "torch" in sys.modules}))
        return
    if mode == "deque":
        q: deque = deque()
        ns = array("q", bytes(8 * n))
        for i in range(n):
            t0 = pc()
            q.append((i, 0.5, 0.9, 1e-3, 2.0))
            ns[i] = pc() - t0
            if len(q) > 8192:
                q.clear()
        print(json.dumps(summarise(ns)))
        return

    from ml_dash import Experiment

    baseline = rss_mb()
    exp = Experiment(prefix=f"bench/hot/{mode}", dash_root=root)
    exp.run.start()
    train = exp.metrics("train")
    if mode == "bigrows":  # rows of big distinct strings: the buffer is bounded in bytes, not rows
        gc.collect()
        t0 = time.perf_counter()
        for i in range(n):
            train.log(step=i, text=os.urandom(450_000).hex())  # 900,000 characters each
        exp.run.complete()
        stats = exp.stats()["streams"]["metrics/train"]
        out = {"total_s": time.perf_counter() - t0, "peak_rss_above_baseline_mb": peak_rss_mb() - baseline,
               "dropped": sum(stats["dropped"].values()), "waits": stats["waits"]}
    elif mode == "latency":
        ns = timed_log_calls(exp, n)
        t_close = time.perf_counter()
        exp.run.complete()
        close_s = time.perf_counter() - t_close
        out = summarise(ns)
        out["close_s"] = close_s
    else:
        gc.collect()
        t0 = time.perf_counter()
        for i in range(n):
            train.log(loss=i * 1e-6, acc=0.9, lr=1e-3, grad=2.0, step=i)
        t_loop = time.perf_counter() - t0
        t_close = time.perf_counter()
        exp.run.complete()
        end = time.perf_counter()
        out = {"loop_s": t_loop, "close_s": end - t_close, "total_s": end - t0,
               "rows_per_s": n / (end - t0), "peak_rss_above_baseline_mb": peak_rss_mb() - baseline}
    out["rows_on_disk"] = count_rows(root, f"bench/hot/{mode}")
    print(json.dumps(out))


def count_rows(root: str, prefix: str) -> int:
    for path in (os.path.join(root, prefix, "metrics", "train", "data.jsonl"),):
        if os.path.exists(path):
            with open(path, "rb") as f:
                return sum(1 for _ in f)
    return -1


if __name__ == "__main__":
    main()
