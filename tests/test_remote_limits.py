"""The SDK against the server's limits on what one request and one run may carry: it never trips the
first (it splits its batches), and a refusal of the second holds back only the refused streams."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.format.wire import LIMITS

from .fault_proxy import FaultProxy
from .server_process import Server
from .waiting import wait_for

pytestmark = pytest.mark.timeout(600)
USER = {"X-ML-Dash-User": "alice"}


def _streams(srv: Server, prefix: str) -> dict[str, int]:
    status, exp = srv.document(prefix, headers=USER)  # every page of the run's streams
    return exp["streams"] if status == 200 else {}


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
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


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_streams_past_the_runs_metric_limit_are_held_back_and_the_others_go_on(
        workdir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name", "--max-metrics-per-run", "50")
    proxy = FaultProxy(srv.port)
    try:
        exp = Experiment(prefix="alice/many/run", remote=proxy.url, user_name="alice", upload_timeout_s=10)
        exp.run.start()
        for m in range(60):
            exp.metrics(f"m{m:02d}").log(v=0)
        wait_for(lambda: len(_streams(srv, "alice/many/run")) == 50, "the first 50 metrics on the server")
        refusals = proxy.statuses.count(422)
        assert 1 <= refusals <= 10  # at most one per refused stream
        for step in range(1, 4):  # the run goes on for several upload passes (every 0.5 s)
            time.sleep(0.6)
            exp.metrics("m00").log(v=step)
            exp.metrics("m59").log(v=step)
        with caplog.at_level(logging.WARNING, logger="ml_dash"):
            assert exp.run.complete() is False  # rows are pending: the run says so, and how to send them
        assert proxy.statuses.count(422) == refusals  # held back: not offered again, never in a loop
        streams = _streams(srv, "alice/many/run")
        assert streams == {"metrics/m00": 4, **{f"metrics/m{m:02d}": 1 for m in range(1, 50)}}
        refused = exp.stats()["streams"]["metrics/m59"]
        assert refused["pending_upload"] == 4 and refused["acknowledged"] == 0  # on disk, counted as pending
        assert "refused to start 10 stream(s)" in caplog.text and "a run holds at most 50 metrics" in caplog.text
    finally:
        proxy.close()
        srv.stop()


def test_a_run_of_thousands_of_long_names_is_acknowledged_in_a_reply_of_the_request_s_size(tmp_path: Path) -> None:
    """An ingest reply listed every stream of the run: 10,000 metrics of 120 characters made a reply of about
    1.4 MB for one row (the SDK stopped reading at 1 MiB: 'HTTP 200 without an acknowledgement'; it reads
    32 MiB now). It names the request's streams."""
    import asyncio

    from ml_dash.agent.upload.transport import HttpTransport
    from ml_dash.format.wire import encode_body, metric_blocks

    srv = Server(tmp_path / "data")
    try:
        key = srv.key("alice")
        identity = {"run_id": "r", "writer_id": "w"}
        row = [{"data": {"v": 1.0, "_ts": 1000.0}, "createdAt": "2026-11-26T00:00:00.000000Z"}]
        names = [f"metrics/{'n' * 110}{i:06d}" for i in range(10_000)]
        for first in range(0, len(names), LIMITS.max_streams):
            streams = {name: {"start": 0, "blocks": metric_blocks(row)} for name in names[first:first + LIMITS.max_streams]}
            status, _ = srv.ingest("alice/p/wide", {"v": 2, "identity": identity, "reply": "named", "streams": streams},
                                   key)
            assert status == 200

        async def one_more_row() -> tuple[int, dict]:
            transport = HttpTransport(srv.url, {"Authorization": f"Bearer {key}"})
            try:
                body = encode_body({"v": 2, "identity": identity, "reply": "named",
                                    "streams": {names[0]: {"start": 1, "blocks": metric_blocks(row)}}})
                outcome = await transport.post_events("alice/p/wide", body, 30.0, None)
                return outcome.status, outcome.body or {}
            finally:
                await transport.close()

        status, reply = asyncio.run(one_more_row())
        assert status == 200 and reply == {"acked": {names[0]: 2}, "run_streams": 10_000, "run_rows": 10_001}, status
    finally:
        srv.stop()
