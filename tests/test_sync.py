"""``ml-dash sync``: local runs to a real server, exactly once, resuming, CRASHED detection."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

from ml_dash import Experiment

from .app_server import AppServer
from .fault_proxy import FaultProxy
from .server_process import Server


def _sync(cwd: Path, server_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", server_url, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def _local_run(prefix: str, rows: int) -> Experiment:
    exp = Experiment(prefix=prefix)
    with exp.run:
        exp.params.set(lr=0.1, model={"depth": 8})
        for i in range(rows):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.metrics("val").log(acc=math.nan)
        exp.log("done", level="warn", epoch=3)
    return exp


def test_sync_uploads_a_local_run_and_a_second_sync_stores_nothing_new(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    _local_run("alice/proj/run-1", 5000)
    first = _sync(workdir, app_server.url, "--api-key", key)
    assert first.returncode == 0, first.stderr
    assert "5002/5002 rows and 0 files sent" in first.stdout
    _status, exp = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1", key=key)
    assert exp["streams"] == {"metrics/train": 5000, "metrics/val": 1, "logs": 1}
    assert exp["params"] == {"lr": 0.1, "model.depth": 8} and exp["status"] == "COMPLETED"
    _, metric = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1/metrics/train?limit=100000", key=key)
    assert [r["data"]["step"] for r in metric["rows"]] == list(range(5000))
    _, val = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1/metrics/val", key=key)
    assert val["rows"][0]["data"]["acc"] == "NaN" and val["rows"][0]["nonFinite"] == ["acc"]
    _, logs = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1/logs", key=key)
    assert logs["logs"][0]["message"] == "done" and logs["logs"][0]["metadata"] == {"epoch": 3}

    second = _sync(workdir, app_server.url, "--api-key", key)
    assert second.returncode == 0 and "0/0 rows and 0 files sent" in second.stdout
    _, again = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1", key=key)
    assert again["streams"] == exp["streams"]


def test_sync_draws_a_progress_bar_on_a_terminal_and_none_in_a_pipe(workdir: Path, app_server: AppServer) -> None:
    import os
    import pty

    key = app_server.key("alice")
    _local_run("alice/proj/bar", 300_000)  # three batches
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", app_server.url,
                               "--api-key", key], cwd=workdir, stdout=subprocess.PIPE, stderr=follower,
                              text=True, timeout=120, env={**os.environ, "ML_DASH_UPLOAD_BATCH_ROWS": "100000"})
        os.close(follower)
        follower = -1
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0, terminal
    text = terminal.decode()
    assert "[1/1] alice/proj/bar" in text and "300,002/300,002 rows 100%" in text and text.endswith("\n")
    assert "rows" in proc.stdout and "\u2588" not in proc.stdout  # the summary line; no bar in the pipe


def test_sync_resumes_a_run_that_grew_since_the_last_sync(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    _local_run("alice/proj/run-1", 100)
    assert _sync(workdir, app_server.url, "--api-key", key).returncode == 0
    more = Experiment(prefix="alice/proj/run-1")
    with more.run:
        for i in range(100, 150):
            more.metrics("train").log(loss=0.0, step=i)
    out = _sync(workdir, app_server.url, "--api-key", key)
    assert out.returncode == 0 and "50/50 rows and 0 files sent" in out.stdout
    _, metric = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1/metrics/train?limit=1000", key=key)
    assert [r["data"]["step"] for r in metric["rows"]] == list(range(150))


def test_a_run_whose_process_died_is_synced_as_crashed(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    exp = _local_run("alice/proj/run-1", 10)
    doc = json.loads((exp.directory / "experiment.json").read_text())
    doc.update(status="RUNNING", pid=2**22 + 12345, hostname=socket.gethostname())  # a pid that does not exist
    (exp.directory / "experiment.json").write_text(json.dumps(doc))
    out = _sync(workdir, app_server.url, "--api-key", key)
    assert "marked CRASHED" in out.stdout
    _, remote = app_server.request("GET", "/api/v1/experiments/alice/proj/run-1", key=key)
    assert remote["status"] == "CRASHED"


def test_wrong_key_keeps_the_data_local_and_fails(workdir: Path, app_server: AppServer) -> None:
    app_server.key("alice")
    _local_run("alice/proj/run-1", 10)
    out = _sync(workdir, app_server.url, "--api-key", "mld_000000000000_nope")
    assert out.returncode == 1 and "the server refused the credentials: HTTP 401" in out.stdout
    assert (workdir / ".dash/alice/proj/run-1/metrics/train/data.jsonl").is_file()


def test_server_down_then_up(workdir: Path, tmp_path: Path, stable_url: FaultProxy) -> None:
    _local_run("alice/proj/run-1", 20)
    down = _sync(workdir, stable_url.url, "--user-name", "alice", "--timeout", "2")
    assert down.returncode == 1 and "22 rows and 0 files still pending" in down.stdout
    srv = Server(tmp_path / "late", "--allow-user-name")
    stable_url.attach(srv.port)
    try:
        up = _sync(workdir, stable_url.url, "--user-name", "alice")
        assert up.returncode == 0 and "22/22 rows and 0 files sent" in up.stdout
    finally:
        srv.stop()


def test_pull_writes_the_local_layout_and_the_local_readers_read_it(workdir: Path, app_server: AppServer, tmp_path: Path) -> None:
    from ml_dash._run.reading import summarise
    from ml_dash.metrics import read_metric_rows

    key = app_server.key("alice")
    _local_run("alice/proj/run-1", 300)
    with Experiment(prefix="alice/proj/run-1").run as more:
        more.files("m").save(b"payload", "x.bin")
    assert _sync(workdir, app_server.url, "--api-key", key).returncode == 0
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/proj/run-1", "--remote", app_server.url,
                          "--api-key", key, "--to", str(tmp_path / "pulled")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pulled = tmp_path / "pulled/alice/proj/run-1"
    local = workdir / ".dash/alice/proj/run-1"
    assert read_metric_rows(pulled / "metrics/train/data.jsonl") == read_metric_rows(local / "metrics/train/data.jsonl")
    val = read_metric_rows(pulled / "metrics/val/data.jsonl")
    assert math.isnan(val[0]["data"]["acc"])
    summary = summarise(pulled)
    assert summary.metrics == {"train": 300, "val": 1} and summary.log_lines == 1 and summary.files == 1
    assert summary.params == {"lr": 0.1, "model.depth": 8} and summary.status == "COMPLETED"
    assert (pulled / "files/m/x.bin").read_bytes() == b"payload"


def test_row29_pull_into_an_existing_run_refuses_and_keeps_every_local_row(workdir: Path, server: Server) -> None:
    key = server.key("alice")
    _local_run("alice/proj/run-1", 100)
    assert _sync(workdir, server.url, "--api-key", key).returncode == 0
    with Experiment(prefix="alice/proj/run-1", resume=True).run as more:  # rows the server does not hold
        for i in range(100, 250):
            more.metrics("train").log(step=i)
    data = workdir / ".dash/alice/proj/run-1/metrics/train/data.jsonl"
    before = data.read_bytes()
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/proj/run-1", "--remote", server.url,
                          "--api-key", key, "--to", ".dash"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "already holds a run" in out.stderr, out.stderr
    assert data.read_bytes() == before and len(before.splitlines()) == 250


def test_pull_of_a_run_the_server_lacks_fails_with_a_clear_message(workdir: Path, app_server: AppServer, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/proj/none", "--remote", app_server.url,
                          "--api-key", app_server.key("alice"), "--to", str(tmp_path / "pulled")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and f"{app_server.url} has no run alice/proj/none" in out.stderr
    assert not (tmp_path / "pulled/alice/proj/none").exists()


def test_sync_says_why_rows_are_pending(workdir: Path, app_server: AppServer) -> None:
    from .fault_proxy import FaultProxy

    _local_run("alice/proj/why", 10)
    bob = app_server.key("bob")
    forbidden = _sync(workdir, app_server.url, "--api-key", bob)
    assert forbidden.returncode == 1
    assert "the key may not write there (owner mismatch): HTTP 403" in forbidden.stdout  # not "bad credentials"
    down = _sync(workdir, "http://127.0.0.1:9", "--user-name", "alice", "--timeout", "1")
    assert down.returncode == 1 and "the server is unreachable since 20" in down.stdout
    proxy = FaultProxy(int(app_server.url.rsplit(":", 1)[1]))
    try:
        proxy.set(mode="status", rate=1.0, status_line="422 Unprocessable Entity", retry_after=None)
        refused = _sync(workdir, proxy.url, "--api-key", app_server.key("alice"))
    finally:
        proxy.close()
    assert refused.returncode == 1 and "the server rejected the upload: HTTP 422" in refused.stdout


def test_sync_with_a_bad_setting_fails_with_one_line_naming_it(workdir: Path, app_server: AppServer) -> None:
    import os

    _local_run("alice/proj/cfg", 3)
    for value in ("0", "-5", "abc"):
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", app_server.url, "--api-key",
                              app_server.key("alice")], cwd=workdir, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "ML_DASH_UPLOAD_BATCH_ROWS": value})
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert f"ML_DASH_UPLOAD_BATCH_ROWS={value!r}" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_row29_pull_from_a_server_that_names_paths_outside_the_run_writes_nothing(workdir: Path, tmp_path: Path) -> None:
    from .evil_server import EvilServer

    base = "/api/v1/experiments/alice/p/r"
    cases = [
        {base: {"run_id": "r", "streams": {"metrics/../x": 1}}},
        {base: {"run_id": "r", "streams": {"metrics/train": 1}}, base + "/files": {"files": [{"path": "../../etc/x"}]}},
        {base: {"run_id": "r", "streams": ["logs"]}},
        {base: {"run_id": "r", "streams": {}}, base + "/files": {"files": [{"path": "a/b"}, {"path": "a"}]}},
    ]
    for number, routes in enumerate(cases):
        evil = EvilServer({**routes, base + "/metrics/train": {"rows": [{"index": 0, "data": {"x": 1}}]}})
        target = tmp_path / f"pulled-{number}"
        try:
            out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/p/r", "--remote", evil.url,
                                  "--user-name", "alice", "--to", str(target)], capture_output=True, text=True,
                                 timeout=60)
        finally:
            evil.close()
        assert out.returncode == 1 and out.stderr.startswith("ml-dash pull: ") and "Traceback" not in out.stderr
        assert not target.exists() or not any(target.rglob("*.json*")), list(target.rglob("*"))
        assert not (tmp_path / "etc").exists()


def test_a_pulled_run_ending_in_rows_set_aside_continues_after_them_and_syncs(workdir: Path, app_server: AppServer,
                                                                            tmp_path: Path) -> None:
    from ml_dash.format.wire import encode_body, metric_blocks

    key = app_server.key("alice")
    blocks = metric_blocks([{"data": {"step": i}, "createdAt": "c"} for i in range(9)])
    for streams in ({"metrics/train": {"start": 0, "blocks": blocks}},
                    {"metrics/train": {"start": 9, "void": 1, "reason": "unencodable"}}):
        status, _ = app_server.request("POST", "/api/v1/runs/alice/p/voided/events",
                                   encode_body({"v": 2, "identity": {"run_id": "r", "writer_id": "w"}, "streams": streams}),
                                   {"Content-Encoding": "zstd"}, key)
        assert status == 200
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/p/voided", "--remote", app_server.url,
                          "--api-key", key, "--to", str(tmp_path / "pulled")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    more = Experiment(prefix="alice/p/voided", local_path=tmp_path / "pulled/alice/p/voided")
    with more.run:  # local mode: it must not reuse index 9, which the server holds as set aside
        more.metrics("train").log(step=10)
    assert more.metrics("train").read()[-1]["index"] == 10
    synced = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(more.directory), "--remote", app_server.url,
                             "--api-key", key], capture_output=True, text=True, timeout=60)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    _, body = app_server.request("GET", "/api/v1/experiments/alice/p/voided/metrics/train?limit=100", key=key)
    assert [(r["index"], r["data"]["step"]) for r in body["rows"]][-1] == (10, 10)


def test_sync_of_a_pulled_run_that_is_still_running_does_not_mark_it_crashed(workdir: Path, app_server: AppServer,
                                                                              tmp_path: Path) -> None:
    """A pulled run's RUNNING is the server's (its writer is elsewhere): sync must not end it CRASHED."""
    key = app_server.key("alice")
    live = Experiment(prefix="alice/proj/live", remote=app_server.url, api_key=key)
    live.run.start()
    try:
        live.metrics("train").log(step=0)
        assert live.flush() is True
        for _ in range(200):
            _, remote = app_server.request("GET", "/api/v1/experiments/alice/proj/live", key=key)
            if remote.get("streams", {}).get("metrics/train") == 1:
                break
            time.sleep(0.05)
        pulled = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/proj/live", "--remote",
                                 app_server.url, "--api-key", key, "--to", str(tmp_path / "pulled")],
                                capture_output=True, text=True, timeout=60)
        assert pulled.returncode == 0, pulled.stderr
        synced = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(tmp_path / "pulled"), "--remote",
                                 app_server.url, "--api-key", key], capture_output=True, text=True, timeout=60)
        assert synced.returncode == 0 and "CRASHED" not in synced.stdout, synced.stdout + synced.stderr
        _, remote = app_server.request("GET", "/api/v1/experiments/alice/proj/live", key=key)
        assert remote["status"] == "RUNNING"
    finally:
        live.run.complete()


def test_sync_carries_metric_keys_of_any_characters(workdir: Path, app_server: AppServer) -> None:
    """Any str is a metric key; the disk path decoded lines into a Struct renamed to the keys, and
    msgspec refuses '"', '\\' and control characters there: the upload stopped with a ValueError."""
    keys = ['quote"d', "back\\slash", "tab\tkey", "new\nline", "<img src=x>", "é/ü"]
    exp = Experiment(prefix="alice/proj/keys")
    with exp.run:
        for i in range(300):
            exp.metrics("train").log(**{k: i for k in keys})
    key = app_server.key("alice")
    out = _sync(workdir, app_server.url, "--api-key", key)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = app_server.metric_rows("alice/proj/keys", key=key)
    assert len(rows) == 300 and all(r["data"] == {k: r["index"] for k in keys} | {"_ts": r["data"]["_ts"]}
                                    for r in rows)
