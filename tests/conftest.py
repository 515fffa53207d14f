"""Shared fixtures: a clean working directory and environment, and subprocess helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ENV_VARS = [
    "ML_DASH_LOCAL_PATH", "ML_DASH_API_URL", "ML_DASH_API_KEY", "ML_DASH_USER_NAME",
    "DREAMLAKE_LOCAL_PATH", "DREAMLAKE_API_URL", "DREAMLAKE_API_KEY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside an empty directory (so `.dash/` lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def exp(workdir: Path):
    """A running experiment ``a/b/c`` in the test's working directory, completed afterwards."""
    from ml_dash import Experiment

    experiment = Experiment(prefix="a/b/c")
    experiment.run.start()
    yield experiment
    if experiment.status.value == "RUNNING":
        experiment.run.complete()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Strict JSON-lines read: every line must be valid JSON (NaN tokens rejected)."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token} in {path}")

    lines = Path(path).read_text().splitlines()
    return [json.loads(line, parse_constant=reject) for line in lines]


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def python_script(code: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
                  **popen: Any) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the same venv) and wait for it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def start_script(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter without waiting (for signals)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
