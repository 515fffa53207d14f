"""The ml-dash command line, run as a real subprocess."""

from __future__ import annotations

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
