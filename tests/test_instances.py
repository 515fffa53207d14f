"""Several server instances on one store behind a load balancer (haproxy, round robin per request):
the server keeps no state of its own, so any instance answers any request. A key made once works
through every instance; a browser session signed in through one is honoured by the other; a kill -9
of one instance while a run uploads leaves the client to finish through the other, every stream
exactly once; afterwards every read is identical through each instance."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment

from .metrics_page import get, sample
from .server_process import Server, direct
from .services.haproxy import Haproxy
from .waiting import wait_for

TOKEN = "operator-token-0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> list[str]:
    """The instances' metadata store, as their extra arguments: SQLite under their shared --data, or one
    PostgreSQL database (tests/services/postgres.py)."""
    return [] if request.param == "sqlite" else ["--db", request.getfixturevalue("postgres_url")]


def _local_rows(directory: Path, metric: str) -> list[dict[str, Any]]:
    path = directory / "metrics" / metric / "data.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _reads(srv: Server, prefix: str, key: str) -> dict[str, Any]:
    """Everything a reader sees of a run through one instance."""
    status, document = srv.document(prefix, key=key)
    assert status == 200, document
    document.pop("latest_at", None)
    logs = srv.request("GET", f"/api/v1/experiments/{prefix}/logs?limit=1000", key=key)
    files = srv.request("GET", f"/api/v1/experiments/{prefix}/files", key=key)
    return {"document": document, "train": srv.metric_rows(prefix, "train", key=key),
            "eval": srv.metric_rows(prefix, "eval", key=key), "logs": logs, "files": files}


def test_a_kill_9_of_one_instance_mid_upload_the_run_finishes_through_the_other(workdir: Path, tmp_path: Path,
                                                                              store: list[str]) -> None:
    data = tmp_path / "srv"
    first, second = Server(data, *store), Server(data, *store)  # one database and one blob directory, two processes
    balancer = Haproxy(tmp_path, [first.port, second.port])
    restarted: Server | None = None
    try:
        key = first.key("alice")  # made in the shared database: every instance knows it
        wait_for(lambda: second.request("GET", "/api/v1/owners", key=key)[0] == 200, "the key works at the other")
        exp = Experiment(prefix="alice/multi/r1", remote=balancer.url, api_key=key, upload_timeout_s=120)
        exp.run.start()
        exp.params.set(lr=0.1, layers=[64, 64])
        exp.files("models").save(b"weights" * 50_000, "w.bin")
        for i in range(100_000):
            exp.metrics("train").log(step=i, loss=1 / (i + 1))
        exp.log("half way")
        wait_for(lambda: _stored(second, key) > 0, "rows stored before the kill")
        first.proc.kill()  # mid-upload: the balancer finds it gone (refused connections, then its checks)
        for i in range(100_000, 200_000):
            exp.metrics("train").log(step=i, loss=1 / (i + 1))
            if i % 1000 == 0:
                exp.metrics("eval").log(step=i, acc=i / 200_000)
        exp.log("done")
        assert exp.run.complete() is True
        local = _local_rows(exp.directory, "train")
        stored = second.metric_rows("alice/multi/r1", "train", key=key)
        assert [r["index"] for r in stored] == list(range(200_000))  # no gap, no duplicate
        assert [r["data"] for r in stored] == [r["data"] for r in local]
        restarted = Server(data, *store)  # the killed instance, back on the same store
        through_restarted = _reads(restarted, "alice/multi/r1", key)
        through_second = _reads(second, "alice/multi/r1", key)
        assert through_restarted == through_second
        assert through_second["document"]["status"] == "COMPLETED"
        assert through_second["document"]["streams"]["metrics/eval"] == 100
        assert [f["path"] for f in through_second["files"][1]["files"]] == ["models/w.bin"]
    finally:
        balancer.stop()
        first.proc.kill()
        first.proc.communicate(timeout=10)
        second.stop()
        if restarted is not None:
            restarted.stop()


def _stored(srv: Server, key: str) -> int:
    """Rows of the run's train metric stored so far (0 before the run exists)."""
    status, document = srv.request("GET", "/api/v1/experiments/alice/multi/r1", key=key)
    return int(document["streams"].get("metrics/train", 0)) if status == 200 else 0


def test_a_session_signed_in_through_one_instance_is_honoured_by_the_other(tmp_path: Path, store: list[str]) -> None:
    """Through the balancer (the browser's Host, so one cookie name): round robin sends the sign-in to
    one instance and the next requests to each in turn; every one knows the session."""
    data = tmp_path / "srv"
    token_file = tmp_path / "metrics-token"
    token_file.write_text(TOKEN)
    first, second = (Server(data, "--metrics-token-file", str(token_file), *store) for _ in range(2))
    balancer = Haproxy(tmp_path, [first.port, second.port])
    try:
        key = first.key("alice")
        req = urllib.request.Request(balancer.url + "/api/v1/session", data=json.dumps({"api_key": key}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with direct.open(req, timeout=30) as resp:
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        for _ in range(4):  # two rounds of the two instances
            req = urllib.request.Request(balancer.url + "/api/v1/projects?owner=alice", headers={"Cookie": cookie})
            with direct.open(req, timeout=30) as resp:
                assert json.loads(resp.read())["owner"] == "alice"
        for srv in (first, second):  # each instance answered two of them
            text = get(srv.url + "/metrics", TOKEN)[2]
            assert sample(text, "ml_dash_requests_total", method="GET", route="/api/v1/projects", status="200") == 2
    finally:
        balancer.stop()
        first.stop()
        second.stop()
