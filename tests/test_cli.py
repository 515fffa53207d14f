"""The ml-dash command line, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ml_dash import Experiment


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _make_run(workdir: Path) -> Experiment:
    exp = Experiment(prefix="alice/proj/run-1")
    with exp.run:
        exp.params.set(lr=0.1)
        for i in range(5):
            exp.metrics("train").log(step=i)
        exp.log("hello")
        exp.files("m").save(b"x", "x.bin")
    return exp


def test_ls_lists_runs_with_status_and_counts(workdir: Path) -> None:
    _make_run(workdir)
    out = _cli("ls", cwd=workdir)
    assert out.returncode == 0
    assert "alice/proj/run-1" in out.stdout and "COMPLETED" in out.stdout and "5 rows" in out.stdout


def test_ls_and_show_call_a_running_run_without_a_writer_crashed_and_a_live_one_running(workdir: Path) -> None:
    from .conftest import start_script

    live = start_script("""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="alice/proj/live")
        exp.run.start()
        print("started", flush=True)
        for _ in range(600):
            time.sleep(0.1)
    """, workdir)
    try:
        assert live.stdout.readline().startswith("started")
        dead = _make_run(workdir).directory / "experiment.json"
        doc = json.loads(dead.read_text())
        doc["status"] = "RUNNING"  # as a kill -9 leaves it
        dead.write_text(json.dumps(doc))
        pulled = workdir / ".dash/alice/proj/pulled"
        pulled.mkdir(parents=True)
        (pulled / "experiment.json").write_text(json.dumps({"prefix": "alice/proj/pulled", "status": "RUNNING"}))
        listing = _cli("ls", cwd=workdir).stdout
        lines = {line.split()[0]: line.split()[1] for line in listing.splitlines()}
        assert lines == {"alice/proj/live": "RUNNING", "alice/proj/run-1": "CRASHED",
                         "alice/proj/pulled": "RUNNING"}, listing  # a pulled run's status is the server's
        assert "[CRASHED]" in _cli("show", str(dead.parent), cwd=workdir).stdout
    finally:
        live.kill()
        live.wait(30)


def test_show_and_check_report_damage(workdir: Path) -> None:
    exp = _make_run(workdir)
    assert _cli("check", cwd=workdir).stdout.strip() == "ok"
    with open(exp.directory / "metrics/train/data.jsonl", "ab") as f:
        f.write(b'{"index":5,"da')
    check = _cli("check", cwd=workdir)
    assert check.returncode == 1 and "torn last line" in check.stdout
    show = _cli("show", str(exp.directory), cwd=workdir)
    assert "metric train: 5 rows" in show.stdout and "damaged" in show.stdout and '"lr": 0.1' in show.stdout


def test_console_script_is_installed(workdir: Path) -> None:
    script = Path(sys.executable).parent / "ml-dash"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("ml-dash ")
