"""One name validator, anchored at both ends, for the SDK, the server and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.format.naming import is_identity, validate_metric_name, validate_prefix

from .server_process import Server

# "$" matches before a trailing newline: each of these passed a match(r"^...$") check
TRAILING = ["alice/p/run\n", "alice/p\n/run", "alice\n/p/run"]


@pytest.mark.parametrize("prefix", TRAILING)
def test_row28_a_name_ending_in_a_newline_is_refused_by_the_sdk(workdir: Path, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        validate_prefix(prefix)
    with pytest.raises(ValueError, match="invalid prefix"):
        Experiment(prefix=prefix)


def test_row28_metric_names_and_identities_are_anchored_too() -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        validate_metric_name("train\n")
    assert is_identity("abc-_1") and not is_identity("abc\n") and not is_identity("a" * 65) and not is_identity(5)


def test_row28_the_server_refuses_a_run_name_ending_in_a_newline(server: Server) -> None:
    status, body = server.request("GET", "/api/v1/experiments/alice/p/run%0A",
                                  headers={"X-ML-Dash-User": "alice"})
    assert status == 400 and "invalid prefix" in body["error"], body
    status, body = server.ingest("alice/p/run%0A", {"identity": {"run_id": "r", "writer_id": "w"}, "streams": {}},
                                 None, raw=b"")
    assert status == 400, body


def test_row28_the_cli_refuses_a_prefix_ending_in_a_newline(workdir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", "--remote", "http://127.0.0.1:1",
                          "--user-name", "alice", "--prefix", "alice/p/run\n"], cwd=workdir, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "invalid prefix" in out.stderr
