"""``ml-dash show``: each metric's last and best value at its step, the run's duration and status reason
(ml_dash/cli/show.py, ml_dash/_run/metric_summary.py), run as a real subprocess on real runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash._run.metric_summary import MetricSummary, describe, lower_is_better


def _show(run: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "show", str(run)], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_show_gives_each_metrics_last_and_best_value_at_its_step(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/run-1")
    losses = [2.0, 1.0, 0.25, 0.5]
    accs = [0.1, 0.9, 0.7, 0.8]
    with exp.run:
        for i, (loss, acc) in enumerate(zip(losses, accs)):
            exp.metrics("train").log(loss=loss, acc=acc, step=10 * i)
        exp.metrics("val").log(loss=0.75)  # no step: the row's index stands for it
    out = _show(exp.directory)
    assert "metric train: 4 rows" in out
    assert "    loss  last 0.5 at step 30  best (min) 0.25 at step 20  max 2 at step 0" in out, out
    assert "    acc  last 0.8 at step 30  best (max) 0.9 at step 10  min 0.1 at step 0" in out, out
    assert "    loss  last 0.75 at index 0  best (min) 0.75 at index 0" in out, out
    assert "step  last" not in out  # the step is where a value was logged, not a metric of its own


def test_show_gives_the_duration_and_the_status_reason(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/failed")
    with pytest.raises(ValueError), exp.run:
        exp.metrics("train").log(loss=1.0, step=0)
        raise ValueError("diverged at step 0")
    doc = json.loads((exp.directory / "experiment.json").read_text())
    doc.update(started_at="2026-12-07T08:00:00.000000Z", ended_at="2026-12-07T08:01:23.500000Z")
    (exp.directory / "experiment.json").write_text(json.dumps(doc))
    out = _show(exp.directory)
    assert "[FAILED]" in out
    assert "started 2026-12-07T08:00:00.000000Z, ended 2026-12-07T08:01:23.500000Z (ran 1 min 23 s)" in out, out
    assert "status reason: ValueError: diverged at step 0" in out, out


def test_a_run_without_an_end_says_so(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/live")
    with exp.run:
        exp.metrics("train").log(loss=1.0)
        assert "running for " in _show(exp.directory)
    doc = json.loads((exp.directory / "experiment.json").read_text())
    doc.update(status="RUNNING", ended_at=None, pid=2**22 + 7)  # a writer that is gone: CRASHED
    (exp.directory / "experiment.json").write_text(json.dumps(doc))
    assert "no end recorded" in _show(exp.directory)


def test_best_is_the_minimum_for_names_that_say_lower_is_better() -> None:
    for name in ("loss", "train/loss", "val_error", "err", "perplexity", "ppl", "mse", "rmse", "mae", "wer", "cer"):
        assert lower_is_better(name), name
    for name in ("acc", "accuracy", "f1", "reward", "auc", "bleu", "lr"):
        assert not lower_is_better(name), name


def test_nan_is_never_best_but_may_be_the_last_value() -> None:
    folded = MetricSummary()
    for index, value in enumerate([1.0, 0.5, "NaN"]):
        record = {"index": index, "data": {"loss": value}}
        if value == "NaN":
            record["nonFinite"] = ["loss"]
        folded.see(record)
    summary = folded.fields["loss"]
    assert math.isnan(summary.last) and summary.low == 0.5
    assert describe("loss", summary, None).startswith("loss  last nan at index 2  best (min) 0.5 at index 1")


def test_show_takes_a_runs_prefix_under_dash_as_the_run_printed_it(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/by-name")
    with exp.run:
        exp.metrics("train").log(loss=0.5, step=3)
    out = _show(Path("alice/proj/by-name"))
    assert out.startswith("alice/proj/by-name  [COMPLETED]") and "loss  last 0.5 at step 3" in out, out


def test_the_machines_readings_come_last_as_ranges_not_best_values(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/system")
    with exp.run:
        for i, used in enumerate([900.0, 1200.0, 1000.0]):
            exp.metrics("system").log(mem_used_mib=used)  # what capture's sampler logs (off in the tests)
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    out = _show(exp.directory)
    assert out.index("metric train:") < out.index("metric system:"), out
    assert "    mem_used_mib  last 1000 at index 2  min 900 at index 0  max 1200 at index 1" in out, out
    assert "    loss  last 0.333333 at step 2  best (min) 0.333333 at step 2  max 1 at step 0" in out, out
