"""MLflow's tracking server on loopback, timed like ml-dash's remote mode (run in MLflow's own venv).

Usage: python _mlflow_scenario.py TRACKING_URL N sync|async
Logs N rows of 4 scalars with mlflow.log_metrics(..., step=i), timed around each call, then ends
the run (which waits for asynchronous logging); prints one JSON object.
"""

import json
import sys
import time
from array import array

import mlflow


def main() -> None:
    url, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("ml-dash-bench")
    pc = time.perf_counter_ns
    ns = array("q", bytes(8 * n))
    t0 = time.perf_counter()
    with mlflow.start_run():
        for i in range(n):
            t = pc()
            mlflow.log_metrics({"loss": 1.0 / (i + 1), "acc": 0.9, "lr": 1e-3, "grad": 2.0}, step=i,
                               synchronous=(mode == "sync"))
            ns[i] = pc() - t
    total = time.perf_counter() - t0
    values = sorted(ns)
    print(json.dumps({"mean_us": sum(values) / n / 1000, "p50_us": values[n // 2] / 1000,
                      "p99_us": values[int(n * 0.99)] / 1000, "rows_per_s": n / total, "n": n}))


if __name__ == "__main__":
    main()
