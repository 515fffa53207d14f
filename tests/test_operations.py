"""What a load balancer and a monitoring system ask of a real server (server/routes/operations.py):
``/health`` (alive), ``/ready`` (its stores answer; 503 naming which does not, and nothing secret),
``/metrics`` (Prometheus' format, only with the operator's token; labels bounded whatever the client
sends; ingest rows and refusals counted)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ml_dash.format.wire import encode_body

from .metrics_page import get, sample
from .server_process import Server

TOKEN = "s3cret-metrics-token-0123456789"


def _get(srv: Server, path: str, token: str | None = None) -> tuple[int, str, str]:
    return get(srv.url + path, token)


def _rows_body(run: str, rows: int) -> bytes:
    block = {"keys": ["loss"], "cols": [list(range(rows))], "created": [["2026-12-01T00:00:00Z", rows]]}
    return encode_body({"v": 2, "identity": {"run_id": run, "writer_id": run},
                        "streams": {"metrics/train": {"start": 0, "blocks": [block]}}})


def test_ready_says_which_store_does_not_answer_and_recovers(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name")
    try:
        assert _get(srv, "/health")[0] == 200
        status, _, body = _get(srv, "/ready")
        assert status == 200 and '"ready"' in body, body
        staging = tmp_path / "data" / "blobs" / "tmp"
        shutil.rmtree(staging)  # the blob store's upload directory is gone (a lost mount, say)
        status, _, body = _get(srv, "/ready")
        assert status == 503 and '"failing":["blobs"]' in body.replace(" ", ""), body
        assert str(tmp_path) not in body  # where the data lives is the log's, not the reply's
        assert _get(srv, "/health")[0] == 200  # alive all the same: a balancer must not restart it
        staging.mkdir()
        assert _get(srv, "/ready")[0] == 200
    finally:
        srv.stop()
    assert "not ready: the blobs did not answer" in srv.stderr


def test_metrics_are_the_operators_only_and_count_rows_and_refusals(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text(TOKEN + "\n")
    srv = Server(tmp_path / "data", "--allow-user-name", "--metrics-token-file", str(token_file))
    try:
        assert _get(srv, "/metrics")[0] == 401
        assert _get(srv, "/metrics", "s3cret-metrics-token-0123456780")[0] == 401
        key = srv.key("alice")
        assert _get(srv, "/metrics", key)[0] == 401  # an API key is a user's, not the operator's
        status, _ = srv.request("POST", "/api/v1/runs/alice/p/r1/events", _rows_body("r1", 1234),
                                   {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"})
        assert status == 200
        # another owner's prefix: refused (403), counted by its reason
        status, _ = srv.request("POST", "/api/v1/runs/bob/p/r1/events", _rows_body("r1", 5),
                                {"X-ML-Dash-User": "alice", "Content-Encoding": "zstd"})
        assert status == 403
        for k in range(40):  # paths no route has: one series, not one per path
            assert _get(srv, f"/no/such/path-{k}")[0] == 404
        status, content_type, text = _get(srv, "/metrics", TOKEN)
        assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
        assert sample(text, "ml_dash_ingest_rows_total") == 1234
        assert (sample(text, "ml_dash_ingest_bytes_total") or 0) > 0
        assert sample(text, "ml_dash_rejections_total", reason="Forbidden") == 1
        assert sample(text, "ml_dash_rejections_total", reason="HTTPNotFound") == 40
        assert sample(text, "ml_dash_requests_total", method="GET", route="unmatched", status="404") == 40
        assert "path-1" not in text
        route = "/api/v1/runs/{owner}/{project}/{name}/events"
        assert sample(text, "ml_dash_requests_total", method="POST", route=route, status="200") == 1
        assert sample(text, "ml_dash_request_seconds_count", route=route) == 2
        assert sample(text, "ml_dash_body_budget_capacity_bytes") == 64 * 1024 * 1024
        assert sample(text, "ml_dash_body_budget_used_bytes") == 0  # every body given back
    finally:
        srv.stop()
    assert TOKEN not in srv.stdout + srv.stderr


def test_without_a_token_there_is_no_metrics_route_and_a_weak_token_is_refused(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "--allow-user-name")
    try:
        assert _get(srv, "/metrics", TOKEN)[0] == 404
    finally:
        srv.stop()
    env = {**os.environ, "ML_DASH_METRICS_TOKEN": "short"}
    proc = subprocess.run([sys.executable, "-m", "ml_dash.cli", "server", "--port", "0", "--data",
                           str(tmp_path / "weak")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "ML_DASH_METRICS_TOKEN: the metrics token must be at least 16 printable characters" in proc.stderr
    assert "short" not in proc.stderr.replace("the metrics token", "")
    missing = tmp_path / "nowhere" / "token"
    proc = subprocess.run([sys.executable, "-m", "ml_dash.cli", "server", "--port", "0", "--data",
                           str(tmp_path / "weak"), "--metrics-token-file", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"--metrics-token-file {missing}: cannot read it" in proc.stderr, proc.stderr


def test_the_metrics_token_may_come_from_the_environment(tmp_path: Path) -> None:
    os.environ["ML_DASH_METRICS_TOKEN"] = TOKEN  # the server process inherits it
    try:
        srv = Server(tmp_path / "data", "--allow-user-name")
    finally:
        del os.environ["ML_DASH_METRICS_TOKEN"]
    try:
        assert _get(srv, "/metrics")[0] == 401
        assert _get(srv, "/metrics", TOKEN)[0] == 200
    finally:
        srv.stop()
