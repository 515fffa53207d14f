"""Where an experiment writes: arguments, ML_DASH_* and DREAMLAKE_* variables, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_dash import ConfigurationError, Experiment, RemoteModeUnavailable
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


def test_dreamlake_api_url_selects_remote_mode_which_is_not_available_yet(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DREAMLAKE_API_KEY", "k")
    with pytest.raises(RemoteModeUnavailable, match="127.0.0.1:9"):
        Experiment(prefix="o/p/n")


def test_ml_dash_api_url_overrides_dreamlake(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMLAKE_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("ML_DASH_API_URL", "http://127.0.0.1:2")
    with pytest.raises(RemoteModeUnavailable, match="127.0.0.1:2"):
        Experiment(prefix="o/p/n")


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
