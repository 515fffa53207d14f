"""Remote mode: Experiment(remote=...) writes locally and uploads live to a real server."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_dash import Experiment

from .fault_proxy import FaultProxy
from .server_process import Server
from .waiting import wait_for


def test_rows_reach_the_server_while_the_run_is_still_going(workdir: Path, server: Server) -> None:
    key = server.key("alice")
    exp = Experiment(prefix="alice/proj/live", remote=server.url, api_key=key)
    with exp.run:
        for i in range(2000):
            exp.metrics("train").log(step=i)
        def stored() -> int:
            status, remote = server.request("GET", "/api/v1/experiments/alice/proj/live", key=key)
            return remote.get("streams", {}).get("metrics/train", 0) if status == 200 else 0

        wait_for(lambda: stored() == 2000, "every row on the server while the run goes on")
        assert server.request("GET", "/api/v1/experiments/alice/proj/live", key=key)[1]["status"] == "RUNNING"
    _, remote = server.request("GET", "/api/v1/experiments/alice/proj/live", key=key)
    assert remote["status"] == "COMPLETED"
    assert (workdir / ".dash/alice/proj/live/metrics/train/data.jsonl").is_file()  # the local record too


def test_an_unreachable_server_never_blocks_and_sync_finishes_later(workdir: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture,
                                                                    stable_url: FaultProxy,
                                                                    caller_connects: list) -> None:
    url = stable_url.url
    exp = Experiment(prefix="alice/proj/offline", remote=url, user_name="alice", upload_timeout_s=1.0)
    exp.run.start()
    for i in range(500):
        exp.metrics("train").log(step=i)
    assert caller_connects == []  # start-up and log() never touch the network on the caller's thread
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        assert exp.run.complete() is False  # it returns: the wait is bounded by upload_timeout_s
    assert "500 event(s) of alice/proj/offline are not on" in caplog.text
    assert "cannot upload alice/proj/offline" in caplog.text
    assert f"ml-dash sync {exp.directory} --remote {url} --user-name alice" in caplog.text
    late = Server(tmp_path / "late", "--allow-user-name")
    stable_url.attach(late.port)
    try:
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", url, "--user-name", "alice"],
                             cwd=workdir, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        _status, remote = late.request("GET", "/api/v1/experiments/alice/proj/offline", headers={"X-ML-Dash-User": "alice"})
        assert remote["streams"]["metrics/train"] == 500 and remote["status"] == "COMPLETED"
    finally:
        late.stop()


def test_a_killed_training_process_shows_as_crashed_once_silent(workdir: Path, tmp_path: Path) -> None:
    import os
    import signal

    from .conftest import start_script

    srv = Server(tmp_path / "crash", "--allow-user-name", "--crashed-after-s", "2")
    try:
        proc = start_script(f"""
            import time
            from ml_dash import Experiment
            exp = Experiment(prefix="alice/proj/doomed", remote="{srv.url}", user_name="alice")
            exp.run.start()
            i = 0
            while True:
                exp.metrics("train").log(step=i)
                i += 1
                if i % 1000 == 0:
                    time.sleep(0.05)
                    print("alive", flush=True)
        """, workdir)
        headers = {"X-ML-Dash-User": "alice"}
        deadline = time.monotonic() + 20
        status = 404
        while time.monotonic() < deadline and status != 200:
            status, remote = srv.request("GET", "/api/v1/experiments/alice/proj/doomed", headers=headers)
            time.sleep(0.2)
        assert status == 200 and remote["status"] == "RUNNING"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and remote["status"] != "CRASHED":
            time.sleep(0.5)
            _, remote = srv.request("GET", "/api/v1/experiments/alice/proj/doomed", headers=headers)
        assert remote["status"] == "CRASHED"
    finally:
        srv.stop()


@pytest.mark.parametrize("value", ["0", "-5", "abc", "2000000"])
def test_a_bad_upload_setting_fails_the_start_naming_the_variable(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   value: str, dead_url: str) -> None:
    from ml_dash import ConfigurationError

    monkeypatch.setenv("ML_DASH_UPLOAD_BATCH_ROWS", value)
    exp = Experiment(prefix="alice/proj/cfg", remote=dead_url, user_name="alice")
    with pytest.raises(ConfigurationError, match=f"ML_DASH_UPLOAD_BATCH_ROWS={value!r}"):
        exp.run.start()
    monkeypatch.setenv("ML_DASH_UPLOAD_BATCH_ROWS", "1000")
    fixed = Experiment(prefix="alice/proj/cfg", remote=dead_url, user_name="alice", upload_timeout_s=0)
    fixed.run.start()  # the refused start held nothing
    fixed.run.complete()


def test_a_bad_agent_setting_fails_the_first_start_naming_the_variable(tmp_path: Path) -> None:
    from .conftest import python_script

    result = python_script("""
        from ml_dash import ConfigurationError, Experiment
        try:
            Experiment(prefix="a/b/c").run.start()
        except ConfigurationError as exc:
            print("refused:", exc)
    """, tmp_path, env={"ML_DASH_MAX_BUFFER_MB": "lots"})
    assert "refused: environment variable ML_DASH_MAX_BUFFER_MB='lots' is not a number" in result.stdout, result.stderr
