"""Where an experiment writes: arguments, ML_DASH_* and DREAMLAKE_* variables, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_dash import ConfigurationError, Experiment
from ml_dash.config import resolve


def _resolve(**kw: object):
    args = dict(local_path=None, dash_root=None, remote=None, dash_url=None, api_key=None, user_name=None)
    args.update(kw)
    return resolve("o/p/n", **args)  # type: ignore[arg-type]


def test_explicit_local_path_wins_over_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_LOCAL_PATH", "from-ml-dash")
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "from-dreamlake")
    assert _resolve(local_path="explicit").directory == workdir / "explicit"


def test_ml_dash_variable_wins_over_dreamlake(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_DASH_LOCAL_PATH", "from-ml-dash")
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "from-dreamlake")
    assert _resolve().directory == workdir / "from-ml-dash"


def test_dreamlake_local_path_is_used_when_alone(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", "experiments")
    exp = Experiment(prefix="o/p/n")
    assert exp.directory == workdir / "experiments"


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
