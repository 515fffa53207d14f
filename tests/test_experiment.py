"""Experiment construction, run lifecycle and experiment.json."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ml_dash import ConfigurationError, Experiment, RunStateError, RunStatus

from .conftest import read_json


@pytest.mark.parametrize(
    "prefix, problem",
    [
        ("owner/project", "exactly"),
        ("owner/project/name/extra", "exactly"),
        ("/owner/project/name", "relative"),
        ("owner/../name", "'..'"),
        ("owner/project/..", "'..'"),
        ("owner//name", "empty"),
        ("owner/pro ject/name", "letters"),
        ("owner/project/.hidden", "letters"),
        ("own\x00er/p/n", "relative"),
    ],
)
def test_invalid_prefix_is_rejected_with_the_reason(workdir: Path, prefix: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Experiment(prefix=prefix)


def test_prefix_must_be_a_string(workdir: Path) -> None:
    with pytest.raises(TypeError, match="prefix must be a str"):
        Experiment(prefix=42)  # type: ignore[arg-type]


def test_default_directory_is_dash_prefix_under_cwd(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/run-1")
    assert exp.directory == workdir / ".dash/alice/proj/run-1"
    with exp.run:
        pass
    assert (workdir / ".dash/alice/proj/run-1/experiment.json").is_file()


def test_dash_root_alias_appends_the_prefix(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/run-1", dash_root="roots")
    assert exp.directory == workdir / "roots/alice/proj/run-1"


def test_local_path_and_dash_root_together_is_an_error(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="either local_path"):
        Experiment(prefix="a/b/c", local_path="x", dash_root="y")


def test_credentials_without_a_server_are_rejected(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="no remote server"):
        Experiment(prefix="a/b/c", api_key="secret")


def test_experiment_json_records_metadata_and_status(workdir: Path) -> None:
    exp = Experiment(prefix="alice/proj/run-1", description="baseline", tags=["a", "b"], metadata={"gpu": "h100"})
    exp.run.start()
    doc = read_json(exp.directory / "experiment.json")
    assert doc["status"] == "RUNNING"
    assert (doc["name"], doc["project"], doc["owner"]) == ("run-1", "proj", "alice")
    assert doc["description"] == "baseline" and doc["tags"] == ["a", "b"] and doc["metadata"] == {"gpu": "h100"}
    exp.run.complete()
    doc = read_json(exp.directory / "experiment.json")
    assert doc["status"] == "COMPLETED" and doc["ended_at"] is not None


def test_readme_is_the_upstream_spelling_of_description(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c", readme="notes")
    assert exp.description == "notes"


def test_exception_in_with_block_marks_failed_and_propagates(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with pytest.raises(ZeroDivisionError), exp.run:
        exp.log("before")
        _ = 1 / 0
    doc = read_json(exp.directory / "experiment.json")
    assert doc["status"] == "FAILED"
    assert "ZeroDivisionError" in doc["status_reason"]


def test_keyboard_interrupt_in_with_block_marks_cancelled(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with pytest.raises(KeyboardInterrupt), exp.run:
        raise KeyboardInterrupt
    assert read_json(exp.directory / "experiment.json")["status"] == "CANCELLED"


@pytest.mark.parametrize("end, status", [("complete", "COMPLETED"), ("fail", "FAILED"), ("cancel", "CANCELLED")])
def test_explicit_lifecycle_calls_record_their_status(workdir: Path, end: str, status: str) -> None:
    exp = Experiment(prefix="a/b/c")
    assert exp.run.start() is exp
    assert exp.status is RunStatus.RUNNING
    assert getattr(exp.run, end)() is True
    assert exp.status.value == status
    assert read_json(exp.directory / "experiment.json")["status"] == status


def test_using_an_experiment_before_start_is_a_clear_error(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    train = exp.metrics("train")  # getting the logger early is fine
    with pytest.raises(RunStateError, match="not started"):
        train.log(loss=1.0)
    with pytest.raises(RunStateError, match="not started"):
        exp.log("hello")
    with pytest.raises(RunStateError, match="not started"):
        exp.params.set(lr=0.1)
    with pytest.raises(RunStateError, match="not started"):
        exp.files("models").save(b"x", "x.bin")
    with exp.run:
        train.log(loss=1.0)  # the early logger works once the run started
    assert [r["data"]["loss"] for r in train.read()] == [1.0]


def test_logger_obtained_before_start_writes_after_start(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    train = exp.metrics("train")
    with exp.run:
        train.log(loss=1.0)
        assert [r["data"]["loss"] for r in train.read()] == [1.0]


def test_logging_after_the_run_ended_is_a_clear_error(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        train = exp.metrics("train")
        train.log(loss=1.0)
    with pytest.raises(RunStateError, match="has ended"):
        train.log(loss=2.0)
    with pytest.raises(RunStateError, match="has ended"):
        exp.log("late")
    with pytest.raises(RunStateError, match="has ended"):
        exp.run.complete()
    with pytest.raises(RunStateError, match="has ended"):
        exp.run.start()
    assert [r["data"]["loss"] for r in train.read()] == [1.0]


def test_starting_twice_is_an_error(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    with pytest.raises(RunStateError, match="already running"):
        exp.run.start()
    exp.run.complete()


def test_a_new_experiment_on_the_same_prefix_continues_the_run_directory(workdir: Path) -> None:
    first = Experiment(prefix="a/b/c")
    with first.run:
        first.metrics("train").log(loss=1.0)
        first.log("one")
        first.params.set(lr=0.1)
    created = read_json(first.directory / "experiment.json")["created_at"]
    second = Experiment(prefix="a/b/c")
    with second.run:
        second.metrics("train").log(loss=2.0)
        second.log("two")
        second.params.set(batch=8)
        assert second.params.get() == {"lr": 0.1, "batch": 8}
    rows = second.metrics("train").read()
    assert [(r["index"], r["data"]["loss"]) for r in rows] == [(0, 1.0), (1, 2.0)]
    assert [r["sequenceNumber"] for r in second.logs.read()] == [0, 1]
    assert read_json(second.directory / "experiment.json")["created_at"] == created
    assert read_json(second.directory / "metrics/train/metadata.json")["nextIndex"] == 2


@pytest.mark.parametrize(("code", "status"), [(None, "COMPLETED"), (0, "COMPLETED"), (1, "FAILED"), ("bye", "FAILED")])
def test_sys_exit_in_the_with_block_ends_the_run_by_its_code(workdir: Path, code: object, status: str) -> None:
    exp = Experiment(prefix="a/b/c")
    with pytest.raises(SystemExit), exp.run:
        sys.exit(code)
    assert read_json(exp.directory / "experiment.json")["status"] == status


@pytest.mark.parametrize("arg", ["local_path", "dash_root"])
def test_an_empty_directory_argument_is_refused(workdir: Path, arg: str) -> None:
    with pytest.raises(ValueError, match=f"{arg} is empty"):
        Experiment(prefix="a/b/c", **{arg: ""})
