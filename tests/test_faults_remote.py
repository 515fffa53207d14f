"""The fault matrix of RELIABILITY.md for remote mode (rows 1-6, 9, 12), through a fault-injecting
proxy and real server processes on 127.0.0.1. Every test checks the accounting identity: what the
server stores equals the complete lines on disk, each index once, nothing missing, nothing changed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from ml_dash import Experiment

from .conftest import local_run, start_script
from .fault_proxy import FaultProxy
from .server_process import Server
from .waiting import wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server(tmp_path: Path):
    srv = Server(tmp_path / "server-data", "--allow-user-name")
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server: Server):
    port = int(server.url.rsplit(":", 1)[1])
    fp = FaultProxy(port)
    yield fp
    fp.close()


USER = {"X-ML-Dash-User": "alice"}


def _local_lines(directory: Path, metric: str = "train") -> list[dict]:
    path = directory / "metrics" / metric / "data.jsonl"
    if not path.exists():  # killed before its first write: nothing was written, nothing is owed
        return []
    text = path.read_bytes()
    complete = text[: text.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def _server_rows(server: Server, prefix: str, metric: str = "train") -> list[dict]:
    return server.metric_rows(prefix, metric, headers=USER)


def _assert_identical(server: Server, prefix: str, directory: Path, metric: str = "train") -> int:
    """Accounting identity with nothing pending: stored == on disk, index by index, value by value."""
    local = _local_lines(directory, metric)
    stored = _server_rows(server, prefix, metric)
    assert [r["index"] for r in stored] == list(range(len(local)))  # no gap, no duplicate
    assert [r["data"] for r in stored] == [r["data"] for r in local]  # nothing corrupted
    return len(local)


def _sync(cwd: Path, url: str, timeout_s: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", url, "--user-name", "alice",
                           "--timeout", str(timeout_s)], cwd=cwd, capture_output=True, text=True, timeout=timeout_s + 60,
                          env={**os.environ, **(env or {})})


def test_row1_server_down_at_start_then_up_drains_in_order(workdir: Path, server: Server, proxy: FaultProxy,
                                                           caller_connects: list) -> None:
    proxy.set(mode="down")
    exp = Experiment(prefix="alice/f/r1", remote=proxy.url, user_name="alice")
    exp.run.start()
    for i in range(20_000):
        exp.metrics("train").log(step=i)
    assert caller_connects == []  # log() never waits on the network: the dead server is the agent's business
    exp.flush()
    wait_for(lambda: proxy.faults > 0, "the agent tried, and met the dead server", proxy)
    assert _server_rows(server, "alice/f/r1") == []
    proxy.set(mode="pass")
    wait_for(lambda: len(_server_rows(server, "alice/f/r1")) == 20_000, "every row on the server", proxy)
    exp.run.complete()
    assert _assert_identical(server, "alice/f/r1", exp.directory) == 20_000


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
@pytest.mark.parametrize("mode", ["reset_before", "reset_after"])
def test_row2_half_the_connections_reset_nothing_missing_nothing_twice(workdir: Path, server: Server,
                                                                      proxy: FaultProxy, mode: str) -> None:
    directory = local_run("alice/f/r2", 30_000)
    proxy.set(mode=mode, rate=0.5)
    env = {"ML_DASH_REQUEST_TIMEOUT_S": "5", "ML_DASH_UPLOAD_BATCH_ROWS": "1000"}  # ~30 requests
    out = _sync(workdir, proxy.url, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert proxy.faults >= 5
    assert _assert_identical(server, "alice/f/r2", directory) == 30_000


def _http_date(offset_s: float) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=offset_s), usegmt=True)


@pytest.mark.parametrize("status_line, retry_after, min_wait_s", [
    ("503 Service Unavailable", "1", 1.0),
    ("429 Too Many Requests", "1", 1.0),
    ("503 Service Unavailable", None, 0.0),
    ("503 Service Unavailable", "malformed", 0.0),
    ("503 Service Unavailable", "PAST", 0.0),
    ("503 Service Unavailable", "DATE+2", 1.0),
])
def test_row3_retry_after_is_honoured_and_nothing_is_lost(workdir: Path, server: Server, proxy: FaultProxy,
                                                         status_line: str, retry_after: str | None, min_wait_s: float) -> None:
    directory = local_run("alice/f/r3", 2000)
    if retry_after == "PAST":
        retry_after = _http_date(-3600)
    elif retry_after == "DATE+2":
        retry_after = _http_date(2)
    proxy.set(mode="status", rate=1.0, status_line=status_line, retry_after=retry_after)
    started = time.monotonic()
    first = _sync(workdir, proxy.url, timeout_s=3)  # every answer is the status: nothing acknowledged
    assert first.returncode == 1 and "2000 rows and 0 files still pending" in first.stdout
    assert proxy.faults >= 1 and time.monotonic() - started >= min_wait_s
    assert proxy.faults <= 12  # it waited (as told, or backing off) instead of hammering
    proxy.set(mode="status", rate=0.5)
    out = _sync(workdir, proxy.url)
    assert out.returncode == 0, out.stdout
    assert _assert_identical(server, "alice/f/r3", directory) == 2000


def test_row4_slow_server_and_short_client_timeouts_store_each_row_once(workdir: Path, server: Server,
                                                                       proxy: FaultProxy) -> None:
    directory = local_run("alice/f/r4", 5000)
    proxy.set(mode="latency", rate=1.0, latency_s=1.5)
    slow = _sync(workdir, proxy.url, timeout_s=4, env={"ML_DASH_REQUEST_TIMEOUT_S": "0.5"})
    assert slow.returncode == 1  # it never heard an answer...
    wait_for(lambda: len(_server_rows(server, "alice/f/r4")) == 5000, "the server committed")  # ...but it did
    proxy.set(mode="pass")
    out = _sync(workdir, proxy.url)
    assert out.returncode == 0 and "5000/5000 rows" in out.stdout  # resent: deduplicated by the server
    assert _assert_identical(server, "alice/f/r4", directory) == 5000


def test_a_request_given_up_at_the_run_end_and_stored_late_does_not_undo_the_end(workdir: Path, server: Server,
                                                                                 proxy: FaultProxy) -> None:
    """The run's first upload is still unanswered when it ends (a cold or busy server): the end gives it
    up and sends everything again, and the request given up reaches the server after that. Its rows are
    a resend; its documents (RUNNING, the params of then) must not replace the end's."""
    proxy.set(mode="hold", latency_s=2.0, only="/events", limit=1)
    exp = Experiment(prefix="alice/f/late", remote=proxy.url, user_name="alice")
    with exp.run:
        exp.params.set(lr=0.1)
        exp.metrics("train").log(loss=1.0, step=0)
        wait_for(lambda: proxy.faults == 1, "the first upload held on its way", lambda: proxy.request_lines)
        exp.params.set(lr=0.2)
        exp.metrics("train").log(loss=0.5, step=1)
    assert proxy.held_forwarded == 0  # still held: it reaches the server after the end's request
    wait_for(lambda: proxy.held_forwarded == 1, "the request given up reached the server")
    status, doc = server.document("alice/f/late", headers=USER)
    assert status == 200 and (doc["status"], doc["params"]) == ("COMPLETED", {"lr": 0.2}), doc
    assert _assert_identical(server, "alice/f/late", exp.directory) == 2


def test_a_sync_on_a_machine_whose_clock_is_behind_still_sends_the_runs_end(workdir: Path, server: Server) -> None:
    """The documents' stamps come from the wall clock. A run uploading live from a machine an hour ahead is
    killed; its directory, synced from a machine on time, must still get its end (CRASHED) to the server:
    the sync stamps above what the server acknowledged from that directory, not below."""
    ahead = _clock_shift(3600)
    proc = start_script(ahead + textwrap.dedent(f"""
        from ml_dash import Experiment
        exp = Experiment(prefix="alice/f/clock", remote="{server.url}", user_name="alice")
        exp.run.start()
        exp.metrics("train").log(loss=1.0, step=0)
        print("started", flush=True)
        import time
        for _ in range(600):  # until killed (short sleeps: see start_script)
            time.sleep(0.1)
    """), workdir)
    assert proc.stdout.readline().startswith("started")
    wait_for(lambda: len(_server_rows(server, "alice/f/clock")) == 1, "the live upload")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert server.document("alice/f/clock", headers=USER)[1]["status"] == "RUNNING"
    code = (_clock_shift(0) + "import runpy, sys\n"
            f"sys.argv = ['ml-dash', 'sync', '.dash', '--remote', {server.url!r}, '--user-name', 'alice']\n"
            "runpy.run_module('ml_dash.cli', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert server.document("alice/f/clock", headers=USER)[1]["status"] == "CRASHED"


def _clock_shift(offset_s: float) -> str:
    """Python lines that make the documents' stamps of the process see a wall clock ``offset_s`` ahead."""
    return ("import time as _t, types as _types\n"
            "import ml_dash.agent.upload.batches as _batches\n"
            f"_batches.time = _types.SimpleNamespace(time_ns=lambda: _t.time_ns() + {int(offset_s * 1e9)})\n")


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row5_kill_9_of_the_training_process_then_sync(workdir: Path, server: Server) -> None:
    rng = random.Random(5)
    for trial in range(20):
        prefix = f"alice/f/r5-{trial}"
        proc = start_script(f"""
            from ml_dash import Experiment
            exp = Experiment(prefix="{prefix}", remote="{server.url}", user_name="alice")
            exp.run.start()
            import time
            i = 0
            while True:
                exp.metrics("train").log(step=i, loss=i * 0.5)
                i += 1
                if i % 100 == 0:
                    time.sleep(0.002)  # ~50k rows/s: enough rows in flight, a sync that stays quick
                if i == 1000:
                    print("started", flush=True)
        """, workdir)
        assert proc.stdout.readline().startswith("started")
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    out = _sync(workdir, server.url)
    assert out.returncode == 0, out.stdout + out.stderr
    for trial in range(20):
        prefix = f"alice/f/r5-{trial}"
        directory = workdir / ".dash" / prefix
        count = _assert_identical(server, prefix, directory)
        assert [r["data"]["step"] for r in _local_lines(directory)] == list(range(count))  # losses are a suffix
        _status, remote = server.request("GET", f"/api/v1/experiments/{prefix}", headers=USER)
        assert remote["status"] == "CRASHED"  # sync saw the process gone


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row6_kill_9_of_the_server_during_ingest_then_restart(workdir: Path, tmp_path: Path,
                                                              stable_url: FaultProxy) -> None:
    data = tmp_path / "srv"
    first = Server(data, "--allow-user-name")
    stable_url.attach(first.port)
    exp = Experiment(prefix="alice/f/r6", remote=stable_url.url, user_name="alice", upload_timeout_s=60)
    exp.run.start()
    try:
        for i in range(200_000):
            exp.metrics("train").log(step=i)
            if i == 100_000:
                # ingest under way when the server dies: an upload past the start-up check has reached it
                wait_for(lambda: stable_url.requests >= 2, "an upload past the start-up check", stable_url)
                first.proc.kill()
    finally:  # killed here, or left behind by a failure above: never a server outliving the test
        first.proc.kill()
        first.proc.communicate(timeout=10)
    restarted = Server(data, "--allow-user-name")  # the same store, behind the same URL
    stable_url.attach(restarted.port)
    try:
        assert exp.run.complete() is True
        assert _assert_identical(restarted, "alice/f/r6", exp.directory) == 200_000
        _status, remote = restarted.request("GET", "/api/v1/experiments/alice/f/r6", headers=USER)
        assert remote["streams"]["metrics/train"] == 200_000  # the cursor counts only whole batches
    finally:
        restarted.stop()


def test_row9_sigterm_to_a_remote_training_process_uploads_within_the_deadline(workdir: Path, server: Server) -> None:
    proc = start_script(f"""
        import time
        from ml_dash import Experiment
        exp = Experiment(prefix="alice/f/r9", remote="{server.url}", user_name="alice")
        exp.run.start()
        for i in range(10000):
            exp.metrics("train").log(step=i)
        print("logged", flush=True)
        for _ in range(600):  # short sleeps: see start_script in conftest.py
            time.sleep(0.1)
    """, workdir)
    assert proc.stdout.readline().startswith("logged")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)  # the upload deadline (10 s) bounds it; this only stops a hang
    assert proc.returncode == -signal.SIGTERM, err
    assert _assert_identical(server, "alice/f/r9", workdir / ".dash/alice/f/r9") == 10000
    _status, remote = server.request("GET", "/api/v1/experiments/alice/f/r9", headers=USER)
    assert remote["status"] == "CANCELLED"


def test_row12_a_refused_key_keeps_data_local_and_does_not_spin(workdir: Path, server: Server, proxy: FaultProxy) -> None:
    exp = Experiment(prefix="alice/f/r12", remote=proxy.url, api_key="mld_000000000000_wrong", upload_timeout_s=2)
    exp.run.start()
    for i in range(5000):
        exp.metrics("train").log(step=i)
        if i % 1000 == 0:
            time.sleep(0.5)  # a training loop's pace: upload passes run between the steps
    wait_for(lambda: 401 in proxy.statuses, "a request met the 401", proxy)
    requests = proxy.requests
    time.sleep(3)  # a window in which a loop would show; a slow machine makes fewer requests, never more
    assert proxy.requests - requests <= 1  # paused after the 401, probing rarely (requests: keep-alive hides a loop)
    assert exp.run.complete() is False
    assert len(_local_lines(exp.directory)) == 5000


def test_row12_a_key_revoked_mid_run_stops_the_upload_and_sync_resumes_with_a_new_key(
        workdir: Path, server: Server, proxy: FaultProxy) -> None:
    old_key = server.key("alice")
    exp = Experiment(prefix="alice/f/r12b", remote=proxy.url, api_key=old_key, upload_timeout_s=2)
    exp.run.start()
    for i in range(1000):
        exp.metrics("train").log(step=i)
    wait_for(lambda: len(_server_rows(server, "alice/f/r12b")) == 1000, "the first 1000 rows on the server", proxy)
    revoked = subprocess.run([sys.executable, "-m", "ml_dash.cli", "keys", "revoke", old_key, "--data", str(server.data)],
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    for i in range(1000, 3000):
        exp.metrics("train").log(step=i)
    wait_for(lambda: 401 in proxy.statuses, "passes ran and met the 401", proxy)
    requests = proxy.requests
    time.sleep(3)  # a window in which a loop would show; a slow machine makes fewer requests, never more
    assert proxy.requests - requests <= 1  # paused after the 401, probing rarely (requests: keep-alive hides a loop)
    assert exp.run.complete() is False
    assert len(_local_lines(exp.directory)) == 3000  # everything stays on disk
    assert len(_server_rows(server, "alice/f/r12b")) == 1000  # nothing more got in with the revoked key
    new_key = server.key("alice")
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(exp.directory), "--remote", server.url,
                          "--api-key", new_key], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _assert_identical(server, "alice/f/r12b", exp.directory) == 3000
