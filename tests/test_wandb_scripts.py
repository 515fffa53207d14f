"""A W&B training script, written as W&B users write it, run unchanged (but for its import) in a fresh
interpreter: offline (ml-dash's local mode) and online against a real ``ml-dash server`` on 127.0.0.1.
Then the run is read back: its params, metric rows, summary and status; and how the script's end
(an exception, ``sys.exit(n)``, ``finish(exit_code=)``) ends the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment

from .conftest import python_script, read_json, read_jsonl, start_script
from .server_process import Server

#: The typical W&B script: config at init, a loop logging "train/..." and "epoch", an evaluation logged in
#: two calls (commit=False), the best value in the summary, a checkpoint saved, finish. FAIL_AT (env) raises.
TRAINING_SCRIPT = """
import os, random
import ml_dash.wandb as wandb

run = wandb.init(entity="alice", project="mnist", name="baseline", tags=["cnn"], notes="first try",
                 config={"lr": 0.01, "epochs": 3, "batch_size": 32, "optimizer": {"name": "adam", "beta1": 0.9}})
config = wandb.config
random.seed(0)
best_acc = 0.0
for epoch in range(config.epochs):
    for batch in range(5):
        loss = 1.0 / (1 + epoch * 5 + batch)
        wandb.log({"train/loss": loss, "train/lr": config.lr, "epoch": epoch})
        if os.environ.get("FAIL_AT") == f"{epoch}/{batch}":
            wandb.log({"train/grad_norm": 9.5}, commit=False)
            raise RuntimeError("loss went NaN")
    acc = 0.5 + 0.1 * epoch
    wandb.log({"val/acc": acc}, commit=False)
    wandb.log({"val/loss": 1 - acc})
    if acc > best_acc:
        best_acc = acc
        wandb.run.summary["best_acc"] = best_acc
with open("model.txt", "w") as f:
    f.write("weights")
wandb.save("model.txt")
print("RUN", run.path, run.url)
wandb.finish()
"""


def _data(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r["data"].items() if k != "_ts"} for r in rows]


def _check_the_training_run(params: dict[str, Any], train: list[dict[str, Any]], val: list[dict[str, Any]],
                            default: list[dict[str, Any]], summary_rows: list[dict[str, Any]],
                            summary: dict[str, Any]) -> None:
    """What the script above records, wherever it is read from."""
    assert params == {"lr": 0.01, "epochs": 3, "batch_size": 32, "optimizer.name": "adam", "optimizer.beta1": 0.9}
    # 5 train steps per epoch, then one validation step (two calls, one row): steps 0-4, 5 (val), 6-10, 11, ...
    train_steps = [epoch * 6 + batch for epoch in range(3) for batch in range(5)]
    assert train == [{"loss": 1.0 / (1 + i), "lr": 0.01, "_step": step} for i, step in enumerate(train_steps)]
    assert default == [{"epoch": step // 6, "_step": step} for step in train_steps]
    assert val == [{"acc": 0.5 + 0.1 * e, "loss": 1 - (0.5 + 0.1 * e), "_step": e * 6 + 5} for e in range(3)]
    assert summary_rows == [{"best_acc": 0.5 + 0.1 * e} for e in range(3)]
    assert summary["best_acc"] == 0.5 + 0.1 * 2 and summary["train/loss"] == 1.0 / 15 and summary["_step"] == 17
    assert summary["val/acc"] == 0.5 + 0.1 * 2 and summary["epoch"] == 2


def _check_on_the_server(server: Server, key: str, tmp_path: Path) -> None:
    """The script's run, read from the server by an Experiment never started here."""
    reader = Experiment(prefix="alice/mnist/baseline", remote=server.url, api_key=key,
                        local_path=tmp_path / "elsewhere")
    summary_file = reader.files("").download("wandb-summary.json", tmp_path / "summary.json")
    _check_the_training_run(
        reader.params.get(), _data(reader.metrics("train").read(limit=None)),
        _data(reader.metrics("val").read(limit=None)), _data(reader.metrics("default").read(limit=None)),
        _data(reader.metrics("summary").read(limit=None)), json.loads(summary_file.read_text()))
    assert reader.files("").download("model.txt", tmp_path / "model.txt").read_text() == "weights"


def test_a_wandb_training_script_runs_offline_and_reads_back(tmp_path: Path) -> None:
    done = python_script(TRAINING_SCRIPT, cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr
    assert "RUN alice/mnist/baseline None" in done.stdout
    run = tmp_path / ".dash" / "alice" / "mnist" / "baseline"
    metrics = run / "metrics"
    _check_the_training_run(
        read_json(run / "parameters.json")["data"], _data(read_jsonl(metrics / "train" / "data.jsonl")),
        _data(read_jsonl(metrics / "val" / "data.jsonl")), _data(read_jsonl(metrics / "default" / "data.jsonl")),
        _data(read_jsonl(metrics / "summary" / "data.jsonl")), read_json(run / "files" / "wandb-summary.json"))
    document = read_json(run / "experiment.json")
    assert (document["status"], document["tags"], document["description"]) == ("COMPLETED", ["cnn"], "first try")
    assert (run / "files" / "model.txt").read_text() == "weights"


def test_a_wandb_training_script_runs_online_against_a_real_server_and_reads_back(tmp_path: Path,
                                                                                  server: Server) -> None:
    key = server.key("alice")
    done = python_script(TRAINING_SCRIPT, cwd=tmp_path, env={"ML_DASH_API_URL": server.url, "ML_DASH_API_KEY": key})
    assert done.returncode == 0, done.stderr
    assert f"RUN alice/mnist/baseline {server.url}/?run=alice/mnist/baseline" in done.stdout
    status, remote = server.request("GET", "/api/v1/experiments/alice/mnist/baseline", key=key)
    assert status == 200 and remote["status"] == "COMPLETED" and remote["tags"] == ["cnn"]

    _check_on_the_server(server, key, tmp_path)


def test_an_offline_wandb_run_is_uploaded_later_by_ml_dash_sync_as_wandb_sync_would(tmp_path: Path,
                                                                                     server: Server) -> None:
    done = python_script(TRAINING_SCRIPT, cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr
    key = server.key("alice")
    synced = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "ML_DASH_API_URL": server.url,
                                                         "ML_DASH_API_KEY": key})
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert server.request("GET", "/api/v1/experiments/alice/mnist/baseline", key=key)[1]["status"] == "COMPLETED"
    _check_on_the_server(server, key, tmp_path)


def test_an_exception_escaping_the_script_ends_the_run_failed_with_what_was_logged(tmp_path: Path) -> None:
    done = python_script(TRAINING_SCRIPT, cwd=tmp_path, env={"WANDB_MODE": "offline", "FAIL_AT": "1/2"})
    assert done.returncode == 1 and "RuntimeError: loss went NaN" in done.stderr
    run = tmp_path / ".dash" / "alice" / "mnist" / "baseline"
    document = read_json(run / "experiment.json")
    assert document["status"] == "FAILED" and "loss went NaN" in document["status_reason"]
    train = _data(read_jsonl(run / "metrics" / "train" / "data.jsonl"))
    assert len(train) == 5 + 3 + 1  # the last row is the pending one (commit=False), committed at the end
    assert train[-1] == {"grad_norm": 9.5, "_step": 9}
    summary = read_json(run / "files" / "wandb-summary.json")
    assert summary["best_acc"] == 0.5 and summary["_step"] == 9


@pytest.mark.parametrize("ending, status, reason, code", [
    ("sys.exit(3)", "FAILED", "exit code 3", 3),
    ("sys.exit(0)", "COMPLETED", None, 0),
    ("pass", "COMPLETED", None, 0),  # the script ends without finish(): the exit finishes the run
    ("wandb.finish(exit_code=2)", "FAILED", "exit code 2", 0),
])
def test_how_the_script_ends_decides_how_the_run_ends(tmp_path: Path, ending: str, status: str, reason: str | None,
                                                      code: int) -> None:
    script = f"""
import sys
import ml_dash.wandb as wandb
wandb.init(project="p", name="r", mode="offline")
wandb.log({{"train/loss": 1.0}}, commit=False)
wandb.summary["best"] = 1.0
{ending}
"""
    done = python_script(script, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    run = tmp_path / ".dash"
    (directory,) = [p.parent for p in run.glob("*/p/r/experiment.json")]
    document = read_json(directory / "experiment.json")
    assert (document["status"], document["status_reason"]) == (status, reason)
    assert _data(read_jsonl(directory / "metrics" / "train" / "data.jsonl")) == [{"loss": 1.0, "_step": 0}]
    assert read_json(directory / "files" / "wandb-summary.json")["best"] == 1.0


def test_sigterm_ends_the_run_cancelled_with_its_pending_row_and_summary_then_dies_by_the_signal(
        tmp_path: Path) -> None:
    proc = start_script("""
        import time
        import ml_dash.wandb as wandb
        wandb.init(project="p", name="r", mode="offline")
        wandb.log({"train/loss": 1.0})
        wandb.log({"train/loss": 0.5}, commit=False)
        wandb.summary["best"] = 0.5
        print("logged", flush=True)
        for _ in range(600):  # short sleeps: see start_script in conftest.py
            time.sleep(0.1)
    """, tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "logged"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM, err
    (directory,) = [p.parent for p in (tmp_path / ".dash").glob("*/p/r/experiment.json")]
    document = read_json(directory / "experiment.json")
    assert (document["status"], document["status_reason"]) == ("CANCELLED", "SIGTERM")
    assert _data(read_jsonl(directory / "metrics" / "train" / "data.jsonl")) == [{"loss": 1.0, "_step": 0},
                                                                                 {"loss": 0.5, "_step": 1}]
    assert read_json(directory / "files" / "wandb-summary.json")["best"] == 0.5


SILENT_SCRIPT = """
import ml_dash.wandb as wandb
wandb.init(entity="alice", project="p", name="quiet")
print("printed token-W1")
wandb.log({"loss": 0.5})
wandb.finish()
"""


@pytest.mark.parametrize("switches, start_line, console", [
    ({}, True, True),
    ({"WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}, False, False),
])
def test_wandbs_silent_and_console_switches_are_honoured(tmp_path: Path, switches: dict[str, str],
                                                         start_line: bool, console: bool) -> None:
    """A W&B script run with WANDB_SILENT=true prints no start line, and with WANDB_CONSOLE=off keeps no console;
    unset, ml-dash's defaults hold (the suite's own ML_DASH_QUIET / ML_DASH_CONSOLE are unset here)."""
    env = {"ML_DASH_QUIET": "", "ML_DASH_CONSOLE": "", **switches}
    done = python_script(SILENT_SCRIPT, tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert ("ml-dash: logging alice/p/quiet" in done.stderr) is start_line, done.stderr
    logs = read_jsonl(tmp_path / ".dash/alice/p/quiet/logs.jsonl") if (tmp_path / ".dash/alice/p/quiet/logs.jsonl").exists() else []
    assert any(row["message"] == "printed token-W1" for row in logs) is console, logs
