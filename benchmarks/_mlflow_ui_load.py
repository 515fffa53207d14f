"""Load benchmarks/ui.py's fixtures into MLflow's tracking server (run in MLflow's own venv).

Usage: python _mlflow_ui_load.py TRACKING_URL RUNS SPIKES_JSON
Creates RUNS runs x 20 params x 10 metrics in experiment "ml-dash-ui-bench", and one run "spiky"
whose metric "loss" has 100,000 points with spikes (value 100) at the steps of SPIKES_JSON; prints
one JSON object: the experiment id, the spiky run's id, and the seconds the load took.
"""

import json
import random
import sys
import time

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient


def main() -> None:
    url, runs, spikes = sys.argv[1], int(sys.argv[2]), set(json.loads(sys.argv[3]))
    client = MlflowClient(url)
    began = time.perf_counter()
    exp_id = client.create_experiment("ml-dash-ui-bench")
    rng = random.Random(2)
    now = int(time.time() * 1000)
    for k in range(runs):
        run = client.create_run(exp_id, run_name=f"mlrun-{k:05d}")
        params = [Param(f"p{j:02d}", str(rng.random())) for j in range(20)]
        metrics = [Metric(f"m{j}", rng.random(), now, 0) for j in range(10)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id)
    spiky = client.create_run(exp_id, run_name="spiky")
    for start in range(0, 100_000, 1000):
        client.log_batch(spiky.info.run_id, metrics=[
            Metric("loss", 100.0 if i in spikes else 1.0 + (i % 7) * 0.01, now + i, i) for i in range(start, start + 1000)])
    client.set_terminated(spiky.info.run_id)
    print(json.dumps({"experiment_id": exp_id, "spiky_run_id": spiky.info.run_id,
                      "load_s": time.perf_counter() - began}))


if __name__ == "__main__":
    main()
