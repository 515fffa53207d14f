"""The SDK against the server's limits on what one request may carry: it never trips them (it splits
its batches)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.agent.wire import LIMITS

from .fault_proxy import FaultProxy
from .server_process import Server

pytestmark = pytest.mark.timeout(600)
USER = {"X-ML-Dash-User": "alice"}


def _streams(srv: Server, prefix: str) -> dict[str, int]:
    status, exp = srv.request("GET", f"/api/v1/experiments/{prefix}", headers=USER)
    return exp["streams"] if status == 200 else {}


def test_a_run_of_5000_metrics_is_delivered_whole_without_a_refused_request(workdir: Path, tmp_path: Path) -> None:
    # written first, then sent: every batch could hold all 5,000 streams (a live run's writer is
    # slower than its uploader, which then never sees more than a few hundred new streams at once)
    # (writing 5,000 stream files takes this machine more than the default 10 s to close)
    exp = Experiment(prefix="alice/wide/run", close_timeout_s=120)
    with exp.run:
        for step in range(3):
            for m in range(5000):
                exp.metrics(f"m{m:04d}").log(v=step, step=step)
    srv = Server(tmp_path / "data", "--allow-user-name")
    proxy = FaultProxy(srv.port)  # passes everything on, and records the statuses
    try:
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(exp.directory), "--remote", proxy.url,
                              "--user-name", "alice"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        streams = _streams(srv, "alice/wide/run")
        assert len(streams) == 5000 and set(streams.values()) == {3}
        assert set(proxy.statuses) == {200}, sorted(set(proxy.statuses))  # no 413: no batch had to be split
        assert len(proxy.statuses) >= 5000 // LIMITS.max_streams  # at most 1,000 streams a request
    finally:
        proxy.close()
        srv.stop()
