"""The specification's examples (shared/reference/local-vs-remote.md), run as written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ml_dash import Experiment, RunStatus

from .conftest import read_json, read_jsonl


def test_local_example_produces_the_specified_layout(workdir: Path) -> None:
    exp = Experiment(
        prefix="owner/my-project/my-experiment",
        local_path=".dash/owner/my-project/my-experiment"
    )

    with exp.run:
        from torch import nn

        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

        exp.log("Running in local mode")
        exp.params.set(batch_size=32)
        exp.metrics("train").log(loss=0.5)
        exp.files("models").save(net, "model.pth")

    root = workdir / ".dash/owner/my-project/my-experiment"
    assert (root / "logs.jsonl").is_file()
    assert read_jsonl(root / "logs.jsonl")[0]["message"] == "Running in local mode"
    assert read_json(root / "parameters.json")["data"] == {"batch_size": 32}
    rows = read_jsonl(root / "metrics/train/data.jsonl")
    assert [r["data"]["loss"] for r in rows] == [0.5]
    assert read_json(root / "metrics/train/metadata.json")["totalDataPoints"] == 1
    assert (root / "files/models/model.pth").is_file()
    assert read_json(root / "experiment.json")["status"] == "COMPLETED"


@pytest.mark.parametrize("stores", ["embedded", "postgresql+s3"])
def test_remote_examples_against_a_local_server(workdir: Path, tmp_path: Path, stores: str,
                                                request: pytest.FixtureRequest) -> None:
    """The specification's two remote examples, with the server's URL pointed at 127.0.0.1: on the
    embedded default (SQLite and a blob directory), and unchanged on PostgreSQL and S3."""
    from .server_process import Server

    (workdir / "model.pth").write_bytes(b"weights")
    if stores == "embedded":
        dev = Server(tmp_path / "dev-server", "--allow-user-name")
    else:
        s3 = request.getfixturevalue("s3_service")
        dev = Server(tmp_path / "dev-server", "--allow-user-name", "--db", request.getfixturevalue("postgres_url"),
                     "--blobs", s3.fresh_url(), env={**os.environ, **s3.env()})
    try:
        # With username (simpler for development)
        exp = Experiment(
            prefix="owner/my-project/my-experiment",
            remote=dev.url,     # API endpoint
            user_name="owner"            # Authentication
        )

        with exp.run:
            exp.log("Running in remote mode")
            exp.params.set(batch_size=32)
            exp.metrics("train").log(loss=0.5)
            exp.files("model.pth", prefix="/models")

        # Or with API key (advanced)
        key = dev.key("owner")
        exp = Experiment(
            prefix="owner/my-project/my-experiment-2",
            remote=dev.url,     # API endpoint
            api_key=key          # Authentication
        )

        with exp.run:
            exp.log("Running in remote mode")
            exp.params.set(batch_size=32)
            exp.metrics("train").log(loss=0.5)
            exp.files("model.pth", prefix="/models")

        for name in ("my-experiment", "my-experiment-2"):
            status, remote = dev.request("GET", f"/api/v1/experiments/owner/my-project/{name}", key=key)
            assert status == 200 and remote["status"] == "COMPLETED" and remote["params"] == {"batch_size": 32}
            assert remote["streams"] == {"metrics/train": 1, "logs": 1}
            _, files = dev.request("GET", f"/api/v1/experiments/owner/my-project/{name}/files", key=key)
            assert [(f["path"], f["sizeBytes"]) for f in files["files"]] == [("models/model.pth", 7)]
    finally:
        dev.stop()


def test_environment_example_with_local_path_set(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "./experiments")
    exp = Experiment(
        prefix="owner/my-project/experiment",
        local_path=os.getenv("DREAMLAKE_LOCAL_PATH"),
        remote=os.getenv("DREAMLAKE_API_URL"),
        api_key=os.getenv("DREAMLAKE_API_KEY")
    )

    with exp.run:
        pass

    # a root: each prefix gets its own directory under it
    assert read_json(workdir / "experiments/owner/my-project/experiment/experiment.json")["prefix"] == \
        "owner/my-project/experiment"


def test_hybrid_example_in_development(workdir: Path) -> None:
    is_production = os.getenv("ENVIRONMENT") == "production"
    assert not is_production
    experiment_config = {"local_path": "./experiments"}

    exp = Experiment(prefix="owner/ml/experiment", **experiment_config)

    with exp.run:
        exp.log("Starting training")

    assert read_jsonl(workdir / "experiments/owner/ml/experiment/logs.jsonl")[0]["message"] == "Starting training"


def test_start_local_example(workdir: Path) -> None:
    exp = Experiment(prefix="owner/dev/experiment", local_path=".dash/owner/dev/experiment")

    with exp.run:
        pass

    assert exp.status is RunStatus.COMPLETED
    assert read_json(workdir / ".dash/owner/dev/experiment/experiment.json")["status"] == "COMPLETED"
