"""The W&B-shaped API (``import ml_dash.wandb as wandb``) in this process: W&B's step and commit rules,
how keys become streams and fields, config, summary, save, the calls it refuses, disabled mode, and
how names, modes and resume map onto ml-dash runs. tests/test_wandb_scripts.py runs whole scripts."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ml_dash.wandb as wandb  # noqa: PLR0402  (the line W&B users write)
from ml_dash import Experiment
from ml_dash.errors import RunConflictError, RunStateError
from ml_dash.wandb._history import History
from ml_dash.wandb._keys import DEFAULT_STREAM, flatten_row, split_key

from .conftest import read_json, read_jsonl


@pytest.fixture(autouse=True)
def no_run_left() -> Iterator[None]:
    yield
    while wandb.run is not None:
        wandb.finish()


def rows(run: wandb.Run, stream: str) -> list[dict[str, Any]]:
    """The data of a stream's rows on disk, without the logging time."""
    assert run.experiment is not None
    path = run.experiment.directory / "metrics" / stream / "data.jsonl"
    return [{k: v for k, v in r["data"].items() if k != "_ts"} for r in read_jsonl(path)] if path.exists() else []


def history(calls: list[tuple[dict[str, Any], int | None, bool | None]]) -> list[tuple[int, dict[str, Any]]]:
    committed: list[tuple[int, dict[str, Any]]] = []
    h = History(lambda step, row: committed.append((step, row)))
    for row, step, commit in calls:
        h.log(row, step, commit)
    h.flush()
    return committed


# -- W&B's step and commit rules ------------------------------------------------------------------
def test_each_log_call_commits_one_step() -> None:
    assert history([({"a": 1}, None, None), ({"a": 2}, None, None)]) == [(0, {"a": 1}), (1, {"a": 2})]


def test_commit_false_accumulates_into_the_same_row_until_a_commit() -> None:
    assert history([({"a": 1}, None, False), ({"b": 2}, None, False), ({"c": 3}, None, None), ({"a": 4}, None, None)]) \
        == [(0, {"a": 1, "b": 2, "c": 3}), (1, {"a": 4})]


def test_a_later_value_of_a_key_in_the_pending_row_replaces_the_earlier_one() -> None:
    assert history([({"a": 1}, None, False), ({"a": 2}, None, None)]) == [(0, {"a": 2})]


def test_an_explicit_step_accumulates_until_a_larger_step_commits_it() -> None:
    calls = [({"a": 1}, 5, None), ({"b": 2}, 5, None), ({"a": 3}, 7, None)]
    assert history(calls) == [(5, {"a": 1, "b": 2}), (7, {"a": 3})]


def test_commit_true_with_a_step_commits_at_that_step_and_the_next_call_gets_the_one_after() -> None:
    assert history([({"a": 1}, 3, True), ({"a": 2}, None, None)]) == [(3, {"a": 1}), (4, {"a": 2})]


def test_a_step_below_the_current_one_is_refused_at_the_call_and_loses_nothing_logged_before() -> None:
    committed: list[tuple[int, dict[str, Any]]] = []
    h = History(lambda step, row: committed.append((step, row)))
    h.log({"a": 1}, 4, None)
    with pytest.raises(ValueError, match=r"step=2\): the run is at step 4"):
        h.log({"a": 2}, 2, None)
    h.flush()
    assert committed == [(4, {"a": 1})]


def test_an_empty_commit_writes_nothing_and_keeps_the_step() -> None:
    assert history([({}, None, None), ({"a": 1}, None, None)]) == [(0, {"a": 1})]


@pytest.mark.parametrize("step, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_a_step_that_is_not_a_non_negative_int_is_refused(step: Any, error: type) -> None:
    with pytest.raises(error, match="step"):
        History(lambda s, r: None).log({"a": 1}, step, None)


# -- keys -> streams and fields ---------------------------------------------------------------------
@pytest.mark.parametrize("key, expected", [
    ("train/loss", ("train", "loss")), ("a/b/c", ("a", "b/c")), ("epoch", (DEFAULT_STREAM, "epoch")),
    ("val.acc", (DEFAULT_STREAM, "val.acc")), ("eval loss/x", ("eval loss", "x")),
])
def test_a_key_names_its_stream_before_the_first_slash(key: str, expected: tuple[str, str]) -> None:
    assert split_key("wandb.log()", key) == expected


@pytest.mark.parametrize("key, match", [
    ("/loss", "empty part"), ("train/", "empty part"), ("_step", "reserved"), ("train/_ts", "reserved"),
    ("a\\b/loss", "metric stream"), ("..x/y", "metric stream"),
])
def test_a_key_that_cannot_name_a_stream_and_field_is_refused_naming_it(key: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split_key("wandb.log()", key)


def test_nested_dicts_join_with_dots_as_wandb_joins_them() -> None:
    assert flatten_row("wandb.log()", {"val": {"acc": 1, "top": {"k5": 2}}, "x": {}}) == \
        {"val.acc": 1, "val.top.k5": 2, "x": {}}


# -- a run in this process ----------------------------------------------------------------------------
def test_a_committed_row_lands_as_one_row_per_stream_with_the_same_step(workdir: Path) -> None:
    run = wandb.init(entity="alice", project="p", name="r", mode="offline")
    wandb.log({"train/loss": 0.5, "epoch": 0, "train/grad/norm": 2.0, "train/_fields": 1})
    wandb.log({"val/acc": 0.1}, commit=False)
    wandb.log({"val/loss": 0.2, "train/loss": 0.4})
    wandb.log({"train/loss": 0.3}, step=10)
    wandb.log({"epoch": 1}, step=10)
    wandb.log({"train/loss": 0.2})  # no step: merged into step 10's row, which it commits (W&B's rule)
    wandb.log({"train/loss": 0.1})
    wandb.finish()
    assert rows(run, "train") == [{"loss": 0.5, "grad/norm": 2.0, "_fields": 1, "_step": 0}, {"loss": 0.4, "_step": 1},
                                  {"loss": 0.2, "_step": 10},
                                  {"loss": 0.1, "_step": 11}]
    assert rows(run, "val") == [{"acc": 0.1, "loss": 0.2, "_step": 1}]
    assert rows(run, DEFAULT_STREAM) == [{"epoch": 0, "_step": 0}, {"epoch": 1, "_step": 10}]


def test_finish_commits_the_pending_row(workdir: Path) -> None:
    run = wandb.init(project="p", name="r", mode="offline")
    wandb.log({"train/loss": 1.0}, commit=False)
    run.finish()
    assert rows(run, "train") == [{"loss": 1.0, "_step": 0}]
    assert wandb.run is None
    assert run.experiment is not None and not (run.experiment.directory / "wandb-files").exists()  # made when asked


def test_numpy_values_and_strings_are_recorded(workdir: Path) -> None:
    numpy = pytest.importorskip("numpy")
    run = wandb.init(project="p", name="r", mode="offline")
    row = {"loss": numpy.float32(0.5), "n": numpy.int64(3), "phase": "warmup", "ok": True, "none": None}
    wandb.log(row)
    assert type(row["loss"]) is numpy.float32  # the caller's dict is left as it was
    wandb.finish()
    assert rows(run, DEFAULT_STREAM) == [{"loss": 0.5, "n": 3, "phase": "warmup", "ok": True, "none": None, "_step": 0}]


def test_a_log_before_init_or_after_finish_says_what_to_do(workdir: Path) -> None:
    with pytest.raises(RunStateError, match=r"call wandb.init\(\) before wandb.log"):
        wandb.log({"a": 1})
    with pytest.raises(RunStateError, match=r"wandb.init\(\) before using wandb.config"):
        wandb.config.lr  # noqa: B018
    with pytest.raises(RunStateError, match="wandb.summary"):
        wandb.summary["best"] = 1
    run = wandb.init(project="p", name="r", mode="offline")
    run.finish()
    with pytest.raises(RunStateError, match="has finished"):
        run.log({"a": 1})
    run.finish()  # a second finish does nothing


# -- what is not carried raises, naming the call -------------------------------------------------------
@pytest.mark.parametrize("call, name", [
    (lambda: wandb.Image([[0]]), "wandb.Image"), (lambda: wandb.Table(columns=["a"]), "wandb.Table"),
    (lambda: wandb.Histogram([1, 2]), "wandb.Histogram"), (lambda: wandb.Artifact("m", "model"), "wandb.Artifact"),
    (lambda: wandb.watch(object()), "wandb.watch"), (lambda: wandb.define_metric("val/*"), "wandb.define_metric"),
    (lambda: wandb.plot.line(None, "x", "y"), "wandb.plot.line"), (lambda: wandb.Api(), "wandb.Api"),
    (lambda: wandb.run.log_artifact("x"), "wandb.log_artifact"),  # type: ignore[union-attr]
])
def test_an_unsupported_call_raises_not_implemented_naming_it(workdir: Path, call: Any, name: str) -> None:
    wandb.init(project="p", name="r", mode="offline")
    with pytest.raises(NotImplementedError, match=name.replace(".", r"\.")):
        call()


@pytest.mark.parametrize("value, type_name", [([1.0, 2.0], "list"), ({1, 2}, "set"), (object(), "object"),
                                              (b"raw", "bytes")])
def test_a_value_metrics_cannot_hold_raises_naming_the_call_key_and_type_and_nothing_of_the_row_is_kept(
        workdir: Path, value: Any, type_name: str) -> None:
    run = wandb.init(project="p", name="r", mode="offline")
    with pytest.raises(NotImplementedError, match=rf"wandb.log\(\): 'train/hist' is a {type_name}"):
        wandb.log({"train/loss": 0.5, "train/hist": value})
    wandb.log({"train/loss": 0.4})
    wandb.finish()
    assert rows(run, "train") == [{"loss": 0.4, "_step": 0}]


def test_a_numpy_array_raises_naming_its_type(workdir: Path) -> None:
    numpy = pytest.importorskip("numpy")
    wandb.init(project="p", name="r", mode="offline")
    with pytest.raises(NotImplementedError, match=r"'w' is a numpy.ndarray"):
        wandb.log({"w": numpy.zeros(3)})


@pytest.mark.parametrize("option", ["save_code", "sync_tensorboard", "monitor_gym"])
def test_init_options_ml_dash_does_not_carry_raise_when_set(workdir: Path, option: str) -> None:
    with pytest.raises(NotImplementedError, match=rf"wandb.init\({option}=True\)"):
        wandb.init(project="p", mode="offline", **{option: True})
    assert not (workdir / ".dash").exists()


# -- disabled mode ---------------------------------------------------------------------------------------
def test_disabled_mode_records_nothing_and_every_call_works(workdir: Path) -> None:
    run = wandb.init(project="p", config={"lr": 0.1, "out": Path("x")}, mode="disabled")
    assert wandb.config.lr == 0.1 and wandb.config.out == "x" and run.disabled
    wandb.config.update({"batch": 32})
    wandb.log({"train/loss": 0.5, "hist": [1, 2, 3]})
    wandb.summary["best"] = 0.5
    image = wandb.Image([[0]])
    wandb.log({"img": image})
    wandb.watch(object())
    run.log_artifact(wandb.Artifact("m", "model"))
    assert wandb.save("*.pt") == []
    assert Path(run.dir).is_dir() and run.step == 2 and wandb.summary["best"] == 0.5
    wandb.finish(exit_code=1)
    assert wandb.run is None
    assert not (workdir / ".dash").exists()


def test_wandb_mode_and_wandb_disabled_in_the_environment_choose_the_mode(workdir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb.init(project="p").disabled
    wandb.finish()
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_DISABLED", "true")
    assert wandb.init(project="p").disabled


# -- config --------------------------------------------------------------------------------------------------
def test_config_takes_attribute_and_item_access_and_is_stored_as_params(workdir: Path) -> None:
    args = argparse.Namespace(lr=0.01, layers=(64, 32), out=Path("/tmp/out"))
    run = wandb.init(project="p", name="r", mode="offline", config=args)
    assert wandb.config.lr == 0.01 and wandb.config["layers"] == [64, 32] and wandb.config.out == "/tmp/out"
    wandb.config.batch = 32
    wandb.config["opt"] = {"name": "adam", "beta": 0.9}
    wandb.config.update({"epochs": 3})
    assert wandb.config.setdefaults({"epochs": 99, "seed": 1}) == {**wandb.config.as_dict(), "seed": 1}
    assert "seed" in wandb.config and wandb.config.get("missing", 7) == 7
    assert run.experiment is not None
    assert run.experiment.params.get() == {"lr": 0.01, "layers": [64, 32], "out": "/tmp/out", "batch": 32,
                                           "opt.name": "adam", "opt.beta": 0.9, "epochs": 3, "seed": 1}
    wandb.finish()
    assert read_json(run.experiment.directory / "parameters.json")["data"]["epochs"] == 3


def test_changing_a_config_value_raises_unless_allowed_as_in_wandb(workdir: Path) -> None:
    run = wandb.init(project="p", name="r", mode="offline", config={"lr": 0.1})
    with pytest.raises(ValueError, match="allow_val_change=True"):
        wandb.config.lr = 0.2
    wandb.config.update({"lr": 0.1})  # the same value: no change
    wandb.config.update({"lr": 0.3}, allow_val_change=True)
    assert wandb.config.lr == 0.3 and run.experiment is not None and run.experiment.params.get()["lr"] == 0.3


def test_config_include_and_exclude_keys(workdir: Path) -> None:
    wandb.init(project="p", mode="offline", config={"a": 1, "b": 2}, config_exclude_keys=["b"])
    assert wandb.config.as_dict() == {"a": 1}


def test_a_config_file_name_is_refused_naming_the_call(workdir: Path) -> None:
    with pytest.raises(NotImplementedError, match=r"wandb.init\(config=...\) with a file name"):
        wandb.init(project="p", mode="offline", config="config.yaml")


# -- summary ------------------------------------------------------------------------------------------------
def test_summary_holds_the_latest_logged_values_and_explicit_ones_and_is_stored(workdir: Path) -> None:
    run = wandb.init(project="p", name="r", mode="offline")
    wandb.log({"train/loss": 0.5})
    wandb.log({"train/loss": 0.25})
    wandb.summary["best"] = 0.25
    run.summary.update({"val": {"acc": 0.9}})
    run.summary.extra = 1
    del wandb.summary["extra"]
    assert dict(wandb.summary) == {"train/loss": 0.25, "best": 0.25, "val.acc": 0.9}
    with pytest.raises(NotImplementedError, match=r"wandb.summary: 'table' is a list"):
        wandb.summary["table"] = [1, 2]
    wandb.finish()
    assert rows(run, "summary") == [{"best": 0.25}, {"val.acc": 0.9}, {"extra": 1}, {"extra": None}]
    assert run.experiment is not None
    stored = read_json(run.experiment.directory / "files" / "wandb-summary.json")
    assert {k: v for k, v in stored.items() if not k.startswith("_")} == {"train/loss": 0.25, "best": 0.25,
                                                                           "val.acc": 0.9}
    assert stored["_step"] == 1 and stored["_runtime"] >= 0


# -- save ------------------------------------------------------------------------------------------------
def test_save_keeps_files_by_their_path_from_the_working_directory(workdir: Path) -> None:
    (workdir / "ckpt").mkdir()
    (workdir / "ckpt" / "a.pt").write_text("one")
    (workdir / "ckpt" / "b.pt").write_text("two")
    run = wandb.init(project="p", name="r", mode="offline")
    saved = wandb.save("ckpt/*.pt", policy="now")
    assert sorted(Path(p).name for p in saved) == ["a.pt", "b.pt"]
    wandb.save("ckpt/late.txt", policy="end")
    (workdir / "ckpt" / "late.txt").write_text("written after the call")
    wandb.save("ckpt/a.pt")  # "live": copied now and again at the end
    (workdir / "ckpt" / "a.pt").write_text("final")
    Path(run.dir, "model.json").write_text("{}")  # W&B uploads what is written into run.dir
    with pytest.raises(FileNotFoundError, match="no file matches"):
        wandb.save("missing/*.pt", policy="now")
    wandb.finish()
    assert run.experiment is not None
    files = run.experiment.directory / "files"
    assert (files / "ckpt" / "a.pt").read_text() == "final"
    assert (files / "ckpt" / "b.pt").read_text() == "two"
    assert (files / "ckpt" / "late.txt").read_text() == "written after the call"
    assert (files / "model.json").read_text() == "{}"


def test_a_deferred_save_matching_nothing_at_the_end_is_a_warning_and_a_log_line(
        workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = wandb.init(project="p", name="r", mode="offline")
    wandb.save("never-written.pt", policy="end")
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        wandb.finish()
    assert "never-written.pt" in caplog.text
    assert run.experiment is not None
    lines = read_jsonl(run.experiment.directory / "logs.jsonl")
    assert any("never-written.pt" in line["message"] and line["level"] == "warn" for line in lines)


# -- names, modes, resume -----------------------------------------------------------------------------------
def test_the_prefix_is_entity_project_name_and_dir_is_the_local_root(tmp_path: Path, workdir: Path) -> None:
    run = wandb.init(entity="alice", project="mnist", name="baseline", dir=tmp_path / "runs", mode="offline",
                     group="sweep-1", job_type="train", tags=["a", "b"], notes="first try")
    assert run.path == "alice/mnist/baseline" and run.name == "baseline" and run.id == "baseline"
    assert run.experiment is not None and run.experiment.directory == tmp_path / "runs" / "alice" / "mnist" / "baseline"
    assert run.url is None  # offline
    wandb.finish()
    document = read_json(tmp_path / "runs" / "alice" / "mnist" / "baseline" / "experiment.json")
    assert document["tags"] == ["a", "b"] and document["description"] == "first try"
    assert document["metadata"] == {"wandb": {"group": "sweep-1", "job_type": "train"}}


def test_defaults_are_wandb_style(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_USER_NAME", "carol")
    run = wandb.init(mode="offline")
    entity, project, name = run.path.split("/")
    assert (entity, project) == ("carol", "uncategorized")
    adjective, noun, number = name.split("-")
    assert adjective.isalpha() and noun.isalpha() and number.isdigit()


def test_wandb_environment_variables_name_the_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"WANDB_ENTITY": "dave", "WANDB_PROJECT": "proj", "WANDB_NAME": "n1", "WANDB_TAGS": "x, y",
                       "WANDB_MODE": "offline"}.items():
        monkeypatch.setenv(key, value)
    run = wandb.init()
    assert run.path == "dave/proj/n1" and run.tags == ("x", "y") and run.offline


def test_a_taken_name_without_resume_gets_a_number_as_a_new_wandb_run_would(workdir: Path) -> None:
    first = wandb.init(project="p", name="baseline", mode="offline")
    wandb.log({"loss": 1.0})
    wandb.finish()
    second = wandb.init(project="p", name="baseline", mode="offline")
    assert second.name == "baseline-2"
    wandb.log({"loss": 2.0})
    wandb.finish()
    assert rows(first, DEFAULT_STREAM) == [{"loss": 1.0, "_step": 0}]
    assert rows(second, DEFAULT_STREAM) == [{"loss": 2.0, "_step": 0}]


def test_resume_continues_the_named_run_after_its_last_step_with_its_config_and_summary(workdir: Path) -> None:
    first = wandb.init(project="p", id="job-17", mode="offline", config={"lr": 0.1})
    for i in range(3):
        wandb.log({"train/loss": 1.0 / (i + 1)})
    wandb.summary["best"] = 0.33
    wandb.finish()
    again = wandb.init(project="p", id="job-17", resume="allow", mode="offline")
    assert again.path == first.path and again.step == 3
    assert wandb.config.lr == 0.1 and wandb.summary["best"] == 0.33
    wandb.log({"train/loss": 0.1})
    wandb.finish()
    assert [r["_step"] for r in rows(again, "train")] == [0, 1, 2, 3]


def test_an_existing_id_without_resume_is_refused_naming_resume(workdir: Path) -> None:
    wandb.init(project="p", id="job-1", mode="offline")
    wandb.finish()
    with pytest.raises(RunConflictError, match="resume=True"):
        wandb.init(project="p", id="job-1", mode="offline")


def test_resume_must_without_a_run_is_refused(workdir: Path) -> None:
    with pytest.raises(RunConflictError, match="must"):
        wandb.init(project="p", id="nothing-here", resume="must", mode="offline")


def test_offline_stays_local_when_a_server_is_configured(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                        dead_url: str) -> None:
    monkeypatch.setenv("ML_DASH_API_URL", dead_url)
    monkeypatch.setenv("ML_DASH_API_KEY", "k")
    run = wandb.init(project="p", name="r", mode="offline")
    assert run.experiment is not None and run.experiment.remote is None


def test_online_without_a_server_says_how_to_configure_one(workdir: Path) -> None:
    with pytest.raises(ValueError, match="ML_DASH_API_URL"):
        wandb.init(project="p", mode="online")


def test_reinit_returns_or_finishes_the_previous_run(workdir: Path) -> None:
    first = wandb.init(project="p", name="a", mode="offline")
    assert wandb.init(project="p", name="b", mode="offline") is first
    second = wandb.init(project="p", name="b", mode="offline", reinit="finish_previous")
    assert second is not first and first.experiment is not None and first.experiment.status.value == "COMPLETED"
    third = wandb.init(project="p", name="c", mode="offline", reinit="create_new")
    assert wandb.run is third and second.experiment is not None and second.experiment.status.value == "RUNNING"
    second.finish()
    assert wandb.run is third


def test_the_context_manager_ends_the_run_failed_on_an_exception(workdir: Path) -> None:
    with pytest.raises(RuntimeError), wandb.init(project="p", name="r", mode="offline") as run:
        wandb.log({"train/loss": 1.0}, commit=False)
        raise RuntimeError("diverged")
    assert run.experiment is not None
    document = read_json(run.experiment.directory / "experiment.json")
    assert document["status"] == "FAILED" and "diverged" in document["status_reason"]
    assert rows(run, "train") == [{"loss": 1.0, "_step": 0}]  # the pending row was committed first


def test_finish_with_a_nonzero_exit_code_fails_the_run(workdir: Path) -> None:
    run = wandb.init(project="p", name="r", mode="offline")
    wandb.finish(exit_code=3)
    assert run.experiment is not None
    document = read_json(run.experiment.directory / "experiment.json")
    assert (document["status"], document["status_reason"]) == ("FAILED", "exit code 3")


def test_the_experiment_behind_a_run_reads_back_like_any_other(workdir: Path) -> None:
    run = wandb.init(entity="a", project="p", name="r", mode="offline", config={"lr": 1})
    wandb.log({"train/loss": 0.5})
    wandb.finish()
    reader = Experiment(prefix="a/p/r")
    assert reader.directory == run.experiment.directory  # type: ignore[union-attr]
    assert json.loads((reader.directory / "parameters.json").read_text())["data"] == {"lr": 1}


def test_log_from_several_threads_commits_every_row_once_at_its_own_step(workdir: Path) -> None:
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows: races show up at once
    run = wandb.init(project="p", name="r", mode="offline")

    def worker(n: int) -> None:
        for i in range(2000):
            wandb.log({f"w{n}/i": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    wandb.finish()
    steps = sorted(row["_step"] for n in range(4) for row in rows(run, f"w{n}"))
    assert steps == list(range(8000))
    assert all([r["i"] for r in rows(run, f"w{n}")] == list(range(2000)) for n in range(4))


def test_one_element_tensors_are_recorded_and_bigger_ones_raise_naming_the_type(workdir: Path) -> None:
    import torch

    run = wandb.init(project="p", name="r", mode="offline")
    loss = torch.tensor(0.5)
    wandb.log({"train/loss": loss})
    loss.fill_(9.0)  # taken at the call, as exp.metrics takes it
    with pytest.raises(NotImplementedError, match=r"'train/w' is a torch.Tensor"):
        wandb.log({"train/w": torch.zeros(3)})
    wandb.summary["best"] = torch.tensor(0.25)
    assert wandb.summary["best"] == 0.25
    wandb.finish()
    assert rows(run, "train") == [{"loss": 0.5, "_step": 0}]


# -- online ---------------------------------------------------------------------------------------------------
def _end_without_waiting_for_the_upload(run: wandb.Run) -> None:
    """A server that is down or refuses the key: end the run at once (its rows stay on disk for ml-dash sync)."""
    assert run.experiment is not None
    run.experiment.run.complete(timeout_s=0.1)
    run.finish()


def test_online_the_default_entity_is_the_api_keys_owner(workdir: Path, app_server: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_API_URL", app_server.url)
    monkeypatch.setenv("ML_DASH_API_KEY", app_server.key("alice"))
    run = wandb.init(project="p", name="r")
    assert run.mode == "online" and run.path == "alice/p/r" and run.url == f"{app_server.url}/?run=alice/p/r"
    wandb.log({"train/loss": 0.5})
    wandb.finish()
    status, remote = app_server.request("GET", "/api/v1/experiments/alice/p/r", key=app_server.key("alice"))
    assert status == 200 and remote["status"] == "COMPLETED"


def test_online_a_key_the_server_refuses_leaves_the_login_name_and_says_how_to_name_the_entity(
        workdir: Path, app_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "bob")
    monkeypatch.setenv("ML_DASH_API_URL", app_server.url)
    monkeypatch.setenv("ML_DASH_API_KEY", "not-a-key")
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        run = wandb.init(project="p", name="r")
    assert run.entity == "bob" and "entity=" in caplog.text and "ML_DASH_USER_NAME" in caplog.text
    _end_without_waiting_for_the_upload(run)


def test_online_with_the_server_down_the_run_starts_under_the_login_name_with_a_warning(
        workdir: Path, dead_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "bob")
    monkeypatch.setenv("ML_DASH_API_URL", dead_url)
    monkeypatch.setenv("ML_DASH_API_KEY", "k")
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        run = wandb.init(project="p", name="r", settings=wandb.Settings(start_method="thread"))
    assert run.entity == "bob" and "could not learn" in caplog.text
    _end_without_waiting_for_the_upload(run)


def test_an_entity_given_is_never_asked_of_the_server(workdir: Path, dead_url: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ML_DASH_API_URL", dead_url)
    monkeypatch.setenv("ML_DASH_API_KEY", "k")
    monkeypatch.setenv("ML_DASH_USER_NAME", "carol")
    with caplog.at_level(logging.WARNING, logger="ml_dash"):
        run = wandb.init(project="p", name="r")
    assert run.entity == "carol" and "could not learn" not in caplog.text
    _end_without_waiting_for_the_upload(run)


def test_a_drawn_name_never_continues_a_run_even_with_resume_true(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_dash.wandb import _settings, _start

    drawn = iter(["calm-sea-1", "calm-sea-1", "calm-sea-1", "bold-sky-2"])
    monkeypatch.setattr(_settings, "generated_name", lambda: next(drawn))
    monkeypatch.setattr(_start, "generated_name", lambda: next(drawn))
    first = wandb.init(project="p", mode="offline")
    wandb.log({"loss": 1.0})
    wandb.finish()
    second = wandb.init(project="p", mode="offline", resume=True)  # W&B's "auto": nothing of this directory to resume
    assert first.name == "calm-sea-1" and second.name == "bold-sky-2" and second.step == 0


def test_require_and_setup_do_nothing_and_teardown_finishes(workdir: Path) -> None:
    wandb.require("core")
    wandb.setup()
    run = wandb.init(project="p", name="r", mode="offline")
    wandb.teardown()
    assert wandb.run is None and run.experiment is not None and run.experiment.status.value == "COMPLETED"


def test_an_unknown_attribute_says_the_api_does_not_provide_it() -> None:
    with pytest.raises(AttributeError, match="does not provide it"):
        wandb.no_such_call  # noqa: B018
