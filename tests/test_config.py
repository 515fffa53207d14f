"""Where an experiment writes: arguments, ML_DASH_* and DREAMLAKE_* variables, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_dash import ConfigurationError, Experiment
from ml_dash._run.config import resolve

from .conftest import read_json


def _resolve(**kw: object):
    args: dict[str, object] = {"local_path": None, "dash_root": None, "remote": None, "dash_url": None,
                            "api_key": None, "user_name": None}
    args.update(kw)
    return resolve("o/p/n", **args)  # type: ignore[arg-type]


def test_explicit_local_path_wins_over_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_LOCAL_PATH", "from-ml-dash")
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "from-dreamlake")
    assert _resolve(local_path="explicit").directory == workdir / "explicit/o/p/n"  # a root: the prefix is added


def test_ml_dash_variable_wins_over_dreamlake(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_LOCAL_PATH", "from-ml-dash")
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "from-dreamlake")
    assert _resolve().directory == workdir / "from-ml-dash/o/p/n"


def test_dreamlake_local_path_is_used_when_alone(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "experiments")
    exp = Experiment(prefix="o/p/n")
    assert exp.directory == workdir / "experiments/o/p/n"


def test_default_is_dot_dash_prefix(workdir: Path) -> None:
    assert _resolve().directory == workdir / ".dash/o/p/n"


def test_dreamlake_api_url_and_key_select_remote_mode(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DREAMLAKE_API_KEY", "k")
    config = _resolve()
    assert (config.remote, config.api_key) == ("http://127.0.0.1:9", "k")
    assert config.directory == workdir / ".dash/o/p/n"  # remote mode writes the same directory first


def test_ml_dash_variables_override_dreamlake(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("ML_DASH_API_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("DREAMLAKE_API_KEY", "old")
    monkeypatch.setenv("ML_DASH_API_KEY", "new")
    config = _resolve()
    assert (config.remote, config.api_key) == ("http://127.0.0.1:2", "new")


def test_remote_needs_credentials_and_an_http_url(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs api_key"):
        _resolve(remote="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        _resolve(remote="ftp://127.0.0.1", api_key="k")


def test_remote_and_dash_url_must_agree(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="disagree"):
        _resolve(remote="http://127.0.0.1:1", dash_url="http://127.0.0.1:2")


def test_api_key_from_environment_alone_is_ignored_in_local_mode(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_API_KEY", "secret-value")
    config = _resolve()
    assert config.remote is None
    assert "secret-value" not in repr(config)


def test_local_path_type_is_checked(workdir: Path) -> None:
    with pytest.raises(TypeError, match="local_path"):
        _resolve(local_path=3)


def test_a_local_path_ending_with_the_prefix_is_the_run_directory_itself(workdir: Path) -> None:
    assert _resolve(local_path=".dash/o/p/n").directory == workdir / ".dash/o/p/n"
    assert _resolve(local_path=workdir / "runs/o/p/n").directory == workdir / "runs/o/p/n"
    assert _resolve(local_path="runs/p/n").directory == workdir / "runs/p/n/o/p/n"  # two parts are not the prefix


def test_two_prefixes_under_one_root_never_share_a_directory(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_LOCAL_PATH", "./runs")
    train, evaluation = Experiment(prefix="me/p/train"), Experiment(prefix="me/p/eval")
    with train.run:
        train.metrics("m").log(x=1)
    with evaluation.run:
        evaluation.metrics("m").log(x=2)
    assert train.directory == workdir / "runs/me/p/train" and evaluation.directory == workdir / "runs/me/p/eval"
    assert read_json(train.directory / "experiment.json")["name"] == "train"
    assert read_json(evaluation.directory / "experiment.json")["name"] == "eval"


def test_a_directory_holding_another_prefix_is_refused_at_start(workdir: Path) -> None:
    first = Experiment(prefix="me/p/train")
    with first.run:
        first.metrics("m").log(x=1)
    moved = workdir / ".dash/me/p/eval"
    first.directory.rename(moved)  # a run directory renamed by hand
    rows_before = (moved / "metrics/m/data.jsonl").read_bytes()
    with pytest.raises(ConfigurationError, match="holds the run 'me/p/train', not 'me/p/eval'"):
        Experiment(prefix="me/p/eval").run.start()
    assert (moved / "metrics/m/data.jsonl").read_bytes() == rows_before
    assert read_json(moved / "experiment.json")["prefix"] == "me/p/train"


@pytest.mark.parametrize("key", ["mld_abc\nInjected: 1", "has space", "tab\there"])
def test_a_key_that_cannot_go_in_a_header_is_refused_without_echoing_it(workdir: Path, key: str) -> None:
    with pytest.raises(ConfigurationError, match="api_key must be printable") as refused:
        _resolve(remote="http://127.0.0.1:9", api_key=key)
    assert key not in str(refused.value)


@pytest.mark.parametrize("url", ["notaurl", "http://", "http:// spaced", "ftp://host"])
def test_a_server_url_without_a_host_is_refused(workdir: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="http:// or https:// URL with a host"):
        _resolve(remote=url, api_key="k")
