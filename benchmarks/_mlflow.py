"""MLflow's tracking server for the benchmarks that compare against it (remote.py, analysis.py,
storage.py, _mlflow_ui.py): started from MLflow's own venv on a free loopback port, waited for on
``/health``, stopped by its process group; and a script of MLflow's run to its JSON answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

#: MLflow's interpreter: ``python -m venv benchmarks/.peer-venv-mlflow`` and ``pip install mlflow==3.17.2
#: psycopg2-binary`` there (kept apart: its dependencies are not ours).
MLFLOW_PYTHON = Path(__file__).resolve().parent / ".peer-venv-mlflow" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend_uri: str, workdir: Path, extra: tuple[str, ...] = (), python: Path = MLFLOW_PYTHON,
                 timeout_s: float = 180) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` (one worker) on ``backend_uri`` and a free loopback port; waits for /health.

    Job execution is switched off: by default the server also starts seven huey consumer processes
    (GenAI jobs: judges, trace rollups...) that none of these benchmarks use, on a 2-core machine.
    Telemetry is off too (no internet here). Its output goes to ``workdir/server.log``.
    """
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(workdir / "server.log", "wb") as log:  # the child keeps its own copy of the fd
        proc = subprocess.Popen(
            [str(python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", backend_uri, *extra, "--workers", "1"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {workdir / 'server.log'}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError(f"mlflow server not healthy after {timeout_s} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server we started: its own process group (uvicorn and its worker), by its PID."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass


def run_json(args: list[str], cwd: Path, python: Path = MLFLOW_PYTHON, timeout_s: float = 1800) -> Any:
    """Run ``python ARGS`` (a script of MLflow's) and return the JSON of its last line of output."""
    out = subprocess.run([str(python), *args], capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])
