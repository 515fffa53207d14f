"""A run says once, on stderr, where it goes and how to view it (ml_dash/_run/announce.py), as W&B and
trackio do; ``quiet=True`` or ``ML_DASH_QUIET=1`` silences it. Real interpreters, real runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import sys
    from ml_dash import Experiment
    exp = Experiment(prefix="alice/my-project/first-run", {args})
    with exp.run:
        for step in range(3):
            exp.metrics("train").log(loss=1.0 / (step + 1), step=step)
    print("script done")
""")


def _run(cwd: Path, args: str = "", **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "ML_DASH_QUIET"}
    return subprocess.run([sys.executable, "-c", SCRIPT.format(args=args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**clean, **env})


def test_a_local_run_says_once_on_stderr_where_it_went_and_the_command_that_shows_it(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("ml-dash:")]
    assert lines == [("ml-dash: logging alice/my-project/first-run to .dash/alice/my-project/first-run "
                      "(view it: ml-dash ui)")], out.stderr
    assert out.stdout == "script done\n"  # stdout stays the script's


def test_the_view_command_names_the_root_when_it_is_not_the_default(tmp_path: Path) -> None:
    out = _run(tmp_path, 'local_path="my runs"')
    assert "to 'my runs/alice/my-project/first-run'" not in out.stderr  # the path as it is, the command quoted
    assert ("logging alice/my-project/first-run to my runs/alice/my-project/first-run (view it: ml-dash ui "
            "'my runs')") in out.stderr, out.stderr


@pytest.mark.parametrize(("args", "env"), [("quiet=True", {}), ("", {"ML_DASH_QUIET": "1"}),
                                           ("", {"ML_DASH_QUIET": "true"})])
def test_quiet_or_ml_dash_quiet_silences_it(tmp_path: Path, args: str, env: dict[str, str]) -> None:
    out = _run(tmp_path, args, **env)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_quiet_false_wins_over_the_variable(tmp_path: Path) -> None:
    out = _run(tmp_path, "quiet=False", ML_DASH_QUIET="1")
    assert "ml-dash: logging alice/my-project/first-run" in out.stderr


def test_a_remote_run_names_its_page_on_the_server(tmp_path: Path, server) -> None:
    key = server.key("alice")
    out = _run(tmp_path, f'remote="{server.url}", api_key="{key}"')
    assert out.returncode == 0, out.stderr
    assert (f"ml-dash: logging alice/my-project/first-run to {server.url}/?run=alice/my-project/first-run "
            "(a copy in .dash/alice/my-project/first-run)") in out.stderr, out.stderr


@pytest.mark.parametrize("stderr", ["None", "closed"])
def test_a_run_starts_without_a_usable_stderr(tmp_path: Path, stderr: str) -> None:
    lose = "sys.stderr = None" if stderr == "None" else "sys.stderr.close()"
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{lose}\n" + SCRIPT.format(args="")], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "ML_DASH_QUIET"})
    assert out.returncode == 0 and out.stdout == "script done\n", out.stderr
    assert (tmp_path / ".dash/alice/my-project/first-run/metrics/train/data.jsonl").is_file()
