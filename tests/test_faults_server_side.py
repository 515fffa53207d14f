"""Fault matrix rows 8, 15, 21 and 22, against real server processes on 127.0.0.1.

8: the server's disk fills up; 15: a producer ten times faster than the uploader for a minute;
21: the server loses its data and comes back at the same URL; 22: a backlog of gigabytes with the
server down while the training loop logs fast.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.agent.streams import memory_bound_mb
from ml_dash.format.cursor import UploadCursor

from .conftest import local_run, python_script
from .fault_proxy import FaultProxy
from .server_process import Server

pytestmark = pytest.mark.timeout(600)
USER = {"X-ML-Dash-User": "alice"}


def _sync(path: Path, url: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(path), "--remote", url, "--user-name", "alice",
                           *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def _steps(server: Server, prefix: str) -> list[int]:
    return [r["data"]["step"] for r in server.metric_rows(prefix, headers=USER)]


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row8_a_full_server_disk_is_a_507_never_a_2xx_and_the_rows_get_in_once_space_returns(
        workdir: Path, tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv", "--allow-user-name")
    try:
        small = local_run("alice/full/warm", 10)
        assert _sync(small, srv.url).returncode == 0  # the database exists now
        used = max(p.stat().st_size for p in (tmp_path / "srv").glob("ml-dash.sqlite3*"))
        soft, hard = resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE, (used + 64 * 1024, hard))  # the disk is nearly full
        big = local_run("alice/full/run", 200_000)
        full = _sync(big, srv.url, "--timeout", "5", env={"ML_DASH_UPLOAD_BATCH_ROWS": "20000"})
        assert full.returncode == 1 and "HTTP 507" in full.stdout, full.stdout + full.stderr
        stored = _steps(srv, "alice/full/run")
        cursor = UploadCursor.load(big, srv.url, "alice/full/run")
        assert cursor.at("metrics/train").acked == len(stored) < 200_000  # acknowledged == stored, nothing more
        assert stored == list(range(len(stored)))
        assert srv.request("GET", "/health")[0] == 200
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))  # space returns
        again = _sync(big, srv.url)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _steps(srv, "alice/full/run") == list(range(200_000))
    finally:
        srv.stop()


def test_row21_a_server_that_lost_its_data_gets_everything_again_from_sync_and_from_a_live_run(
        workdir: Path, tmp_path: Path, stable_url: FaultProxy) -> None:
    first = Server(tmp_path / "first", "--allow-user-name")
    stable_url.attach(first.port)
    directory = local_run("alice/lost/run", 5000)
    assert _sync(directory, stable_url.url).returncode == 0
    live = Experiment(prefix="alice/lost/live", remote=stable_url.url, user_name="alice", upload_timeout_s=60)
    live.run.start()
    for i in range(3000):
        live.metrics("train").log(step=i)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_steps(first, "alice/lost/live")) < 3000:
        time.sleep(0.1)
    first.stop()
    fresh = Server(tmp_path / "fresh", "--allow-user-name")  # same URL, empty store
    stable_url.attach(fresh.port)
    try:
        out = _sync(directory, stable_url.url)
        assert out.returncode == 0 and "5000 rows (5000 again: the server held fewer" in out.stdout, out.stdout
        assert _steps(fresh, "alice/lost/run") == list(range(5000))
        for i in range(3000, 3500):
            live.metrics("train").log(step=i)
        assert live.run.complete() is True
        assert _steps(fresh, "alice/lost/live") == list(range(3500))
    finally:
        fresh.stop()


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row22_a_backlog_of_gigabytes_with_the_server_down_costs_the_training_loop_nothing(
        workdir: Path, tmp_path: Path, dead_url: str) -> None:
    directory = local_run("alice/backlog/run", 1)
    data = directory / "metrics/train/data.jsonl"
    line = b'{"index":%d,"data":{"step":%d,"loss":0.5,"_ts":1795663131.888},"createdAt":"2026-11-26T03:18:51.882186Z"}\n'
    rows, target = 1, 2 * 1024**3  # 2 GiB never sent
    with open(data, "ab") as f:
        while f.tell() < target:
            f.write(b"".join(line % (i, i) for i in range(rows, rows + 200_000)))
            rows += 200_000
        os.fsync(f.fileno())  # written over hours in real life: no 2 GiB of dirty pages for the run's first fsync
    result = python_script(f"""
        import json, time
        from ml_dash import Experiment
        from ml_dash.agent.upload import live_upload
        live_upload.PASS_DEADLINE_S = 4.0  # 30 s by default: passes of 4 s in the 12 s below
        exp = Experiment(prefix="alice/backlog/run", remote={dead_url!r}, user_name="alice",
                         upload_timeout_s=2)
        exp.run.start()
        started = time.monotonic()
        i = {rows}
        while time.monotonic() - started < 12:  # 100,000 rows/s for 12 s (longer than a pass), in steps of 1,000
            for _ in range(1000):
                exp.metrics("train").log(step=i, loss=0.5)
                i += 1
            time.sleep(max(0.0, (i - {rows}) / 100_000 - (time.monotonic() - started)))
        exp.run.complete()
        print(json.dumps(exp.stats()["streams"]["metrics/train"]))
    """, workdir, timeout=240, env={"ML_DASH_MAX_BUFFER_MB": "8"})  # a stall of a fifth of a second fills 8 MiB
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    # 1.2 million rows paced over 12 s: a stall of seconds is caught up (a wait is up to the machine's load),
    # one for the whole window, as a read of the backlog on the training thread took (30 s), is not
    assert stats["dropped"] == {} and stats["written"] >= 900_000, stats
    assert stats["pending_upload"] >= rows  # the backlog waits on disk


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row15_a_producer_ten_times_faster_than_the_uploader_for_a_minute(workdir: Path, tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv", "--allow-user-name")
    proxy = FaultProxy(int(srv.url.rsplit(":", 1)[1]))
    proxy.set(mode="latency", rate=1.0, latency_s=0.25)  # one request in flight, 4 a second, 500 rows each
    try:
        result = python_script(f"""
            import json, time
            from ml_dash import Experiment

            def rss(field):
                for line in open("/proc/self/status"):
                    if line.startswith(field):
                        return int(line.split()[1]) / 1024

            exp = Experiment(prefix="alice/fast/run", remote="{proxy.url}", user_name="alice", upload_timeout_s=1)
            exp.run.start()
            start_rss = rss("VmRSS:")
            started = time.monotonic()
            i = 0
            while time.monotonic() - started < 60:  # 20,000 rows/s: ten times what the upload takes
                for _ in range(200):
                    exp.metrics("train").log(step=i, loss=0.5, acc=0.25)
                    i += 1
                time.sleep(max(0.0, i / 20_000 - (time.monotonic() - started)))
            exp.run.complete()
            print(json.dumps({{"stats": exp.stats()["streams"]["metrics/train"], "rows": i,
                               "peak_mb": rss("VmHWM:") - start_rss}}))
        """, workdir, env={"ML_DASH_UPLOAD_BATCH_ROWS": "500"}, timeout=300)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        stats = out["stats"]
        assert stats["dropped"] == {} and stats["waits"] == 0 and stats["written"] == out["rows"]  # never blocked
        assert 0 < stats["acknowledged"] < out["rows"] and stats["pending_upload"] > 0  # the uploader fell behind
        assert out["peak_mb"] <= memory_bound_mb(64, remote=True), out
        synced = _sync(workdir / ".dash/alice/fast/run", srv.url)  # the rest goes straight to the server
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert _steps(srv, "alice/fast/run") == list(range(out["rows"]))
    finally:
        proxy.close()
        srv.stop()
