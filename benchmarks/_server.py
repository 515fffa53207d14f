"""An ``ml-dash server`` subprocess for the benchmarks: 127.0.0.1, port 0, --allow-user-name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def start_server(data: Path, source: Path | None = None, extra: tuple[str, ...] = (),
                 env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The server process and its URL; with ``source``, the server of another checkout (PYTHONPATH);
    ``extra`` flags (``--blobs s3://...``) and variables (``AWS_*``) added."""
    env = {**os.environ, **(env_extra or {})}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen([sys.executable, "-m", "ml_dash.cli", "server", "--host", "127.0.0.1", "--port", "0",
                             "--data", str(data), "--allow-user-name", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env,
                            cwd=str(source) if source is not None else None)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split()[4]
