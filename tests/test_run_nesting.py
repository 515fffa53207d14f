"""A run directory never lies inside another run's directory (ml_dash/_run/nesting.py): the quick start's
``local_path=".dash/owner/project/run"`` copied with a new prefix once nested the new run inside the old
one, silently. Real runs on a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_dash import ConfigurationError, Experiment


def _first_run(prefix: str = "owner/my-project/my-experiment", **kw: object) -> Path:
    exp = Experiment(prefix=prefix, **kw)  # type: ignore[arg-type]
    with exp.run:
        exp.metrics("train").log(loss=0.5, step=0)
    return exp.directory


def test_a_root_inside_a_run_is_refused_at_start_naming_the_root_to_write(workdir: Path) -> None:
    _first_run(local_path=".dash/owner/my-project/my-experiment")
    second = Experiment(prefix="owner/my-project/second-try", local_path=".dash/owner/my-project/my-experiment")
    with pytest.raises(ConfigurationError) as refused:
        second.run.start()
    message = str(refused.value)
    assert "inside the directory of the run 'owner/my-project/my-experiment'" in message
    assert "local_path='.dash'" in message and "leave local_path out" in message
    assert not (workdir / ".dash/owner/my-project/my-experiment/owner").exists()  # nothing was created there
    # what the message says to write works, and puts the run beside the first
    _first_run("owner/my-project/second-try", local_path=".dash")
    assert (workdir / ".dash/owner/my-project/second-try/experiment.json").is_file()


def test_dash_root_and_the_variable_inside_a_run_are_refused_too(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _first_run()
    with pytest.raises(ConfigurationError, match="inside the directory of the run"):
        Experiment(prefix="a/b/c", dash_root=run / "metrics").run.start()
    monkeypatch.setenv("ML_DASH_LOCAL_PATH", str(run))
    with pytest.raises(ConfigurationError, match="inside the directory of the run"):
        Experiment(prefix="a/b/c").run.start()


def test_an_experiment_json_that_is_no_run_of_its_path_does_not_count(workdir: Path) -> None:
    # another tool's experiment.json in the project, and a run document whose prefix is not its path's end
    (workdir / "experiment.json").write_text(json.dumps({"prefix": "x/y/z", "lr": 0.1}))
    stray = workdir / "elsewhere"
    stray.mkdir()
    (stray / "experiment.json").write_text(json.dumps({"name": "not a run"}))
    _first_run()
    _first_run("p/q/r", local_path="elsewhere")
    assert (workdir / "elsewhere/p/q/r/experiment.json").is_file()


def test_continuing_a_run_in_its_own_directory_is_not_nesting(workdir: Path) -> None:
    run = _first_run()
    _first_run(local_path=run)  # the same prefix and directory: the run continues
    assert json.loads((run / "experiment.json").read_text())["status"] == "COMPLETED"


def test_a_pull_into_a_run_directory_is_refused_before_asking_the_server(workdir: Path, dead_url: str) -> None:
    from ml_dash.remote.pull import pull

    _first_run("alice/p/run-1")
    with pytest.raises(ConfigurationError) as refused:
        pull("alice/p/run-2", dead_url, "some-key", None, workdir / ".dash/alice/p/run-1")
    assert "inside the directory of the run 'alice/p/run-1'" in str(refused.value)
    assert "--to .dash " in str(refused.value) and "local_path" not in str(refused.value)
