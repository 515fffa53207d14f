"""A W&B-shaped API over ml-dash: ``import ml_dash.wandb as wandb`` runs the common W&B script unchanged.

    import ml_dash.wandb as wandb

    wandb.init(project="mnist", config={"lr": 1e-3, "epochs": 10})
    for epoch in range(wandb.config.epochs):
        wandb.log({"train/loss": loss, "epoch": epoch})   # field "loss" of the stream "train"
    wandb.summary["best_acc"] = best
    wandb.finish()

``entity/project/name`` is the ml-dash prefix; ``mode="offline"`` is local mode, ``"online"`` uploads
to ``ML_DASH_API_URL``, ``"disabled"`` records nothing. What ml-dash does not carry (media, tables,
artifacts, ``watch``) raises ``NotImplementedError`` naming the call. docs/migrating.md has the
whole mapping; the modules say how each part behaves: _settings.py (``init``'s arguments and W&B's
environment variables), _keys.py and _history.py (``log``), _config.py, _summary.py, _files.py
(``save``), _exit.py (how the process's end ends a run).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .._run.config import ENV_API_KEY, ENV_API_URL, env_value
from ..errors import MLDashError, RunStateError
from . import _unsupported
from ._config import Config, as_mapping
from ._owner import key_owner
from ._run import Run
from ._settings import resolve
from ._start import start
from ._summary import Summary

logger = logging.getLogger("ml_dash")

Error = MLDashError  # ``except wandb.Error``


class _BeforeInit:
    """``wandb.config`` / ``wandb.summary`` before ``wandb.init()``: every use says to call it first."""

    def __init__(self, what: str) -> None:
        object.__setattr__(self, "_what", what)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RunStateError(f"call wandb.init() before using {self._what}")

    __getitem__ = __setitem__ = __delitem__ = __contains__ = __iter__ = __len__ = _refuse

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse()

    def __setattr__(self, name: str, value: Any) -> None:
        self._refuse()

    def __repr__(self) -> str:
        return f"<{self._what} before wandb.init()>"


#: The current run (None before ``wandb.init()`` and after ``wandb.finish()``), as in W&B.
run: Run | None = None
#: The current run's config and summary (placeholders that refuse every use outside a run).
config: Any = _BeforeInit("wandb.config")
summary: Any = _BeforeInit("wandb.summary")

_login: dict[str, str | None] = {"key": None, "host": None}
_REINIT = {None: "return_previous", False: "return_previous", "default": "return_previous",
           "return_previous": "return_previous", True: "finish_previous", "finish_previous": "finish_previous",
           "create_new": "create_new"}
_NOT_CARRIED = ("save_code", "sync_tensorboard", "tensorboard", "monitor_gym", "magic", "fork_from", "resume_from")


def init(*, entity: str | None = None, project: str | None = None, name: str | None = None,
         config: Any = None, tags: Any = None, notes: str | None = None, dir: str | os.PathLike | None = None,
         mode: str | None = None, resume: bool | str | None = None, id: str | None = None,
         group: str | None = None, job_type: str | None = None, reinit: bool | str | None = None,
         config_exclude_keys: list[str] | None = None, config_include_keys: list[str] | None = None,
         allow_val_change: bool | None = None, settings: Any = None, anonymous: str | None = None,
         force: bool | None = None, **not_carried: Any) -> Run:
    """Start a run and make it ``wandb.run`` (``wandb.config``, ``wandb.summary``, ``wandb.log``...).

    The arguments and their defaults are W&B's (ml_dash/wandb/_settings.py has the table): the prefix is
    ``entity/project/name``; ``dir`` is the local root (the run lands in ``dir/entity/project/name``);
    ``mode`` "online" uploads to ``ML_DASH_API_URL`` with ``ML_DASH_API_KEY``, "offline" stays local,
    "disabled" records nothing. ``settings``, ``anonymous``, ``force`` and ``allow_val_change`` are
    accepted and change nothing; ``save_code``, ``sync_tensorboard``, ``monitor_gym``... raise
    ``NotImplementedError`` when set.
    """
    for key, value in not_carried.items():
        if key not in _NOT_CARRIED:
            raise TypeError(f"wandb.init() got an unexpected keyword argument {key!r}")
        if value:
            raise NotImplementedError(f"wandb.init({key}={value!r}) is not supported by ml-dash's W&B-shaped API")
    policy = _REINIT.get(reinit) if isinstance(reinit, (bool, str, type(None))) else None
    if policy is None:
        raise ValueError(f"wandb.init(reinit={reinit!r}): use 'return_previous', 'finish_previous', 'create_new' or a bool")
    if run is not None and policy == "return_previous":
        logger.warning("ml-dash: wandb.init() called while %s is running: returning it (pass reinit='finish_previous' "
                       "or 'create_new' for a new run)", run.path)
        return run
    if run is not None and policy == "finish_previous":
        run.finish()
    server = _login["host"] or env_value(ENV_API_URL)
    api_key = _login["key"] or env_value(ENV_API_KEY)
    resolved = resolve(mode=mode, entity=entity, project=project, name=name, run_id=id, dir=dir, resume=resume,
                       tags=tags, notes=notes, group=group, job_type=job_type, server_configured=bool(server),
                       server_owner=lambda: key_owner(server, api_key) if server else None)
    values = _filtered(as_mapping("wandb.init(config=...)", config), config_exclude_keys, config_include_keys)
    started = start(resolved, server=server, api_key=_login["key"], config=values, on_finish=_finished)
    _activate(started)
    return started


def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None, sync: bool | None = None) -> None:
    """``wandb.run.log``: ``"train/loss"`` is the field ``loss`` of the metric stream ``train``."""
    _current("wandb.log()").log(data, step=step, commit=commit)


def save(glob_str: str | os.PathLike, base_path: str | os.PathLike | None = None, policy: str = "live") -> list[str]:
    """``wandb.run.save``: keep the files matching ``glob_str`` with the run."""
    return _current("wandb.save()").save(glob_str, base_path=base_path, policy=policy)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """End the current run (FAILED when ``exit_code`` is not 0); nothing when there is none."""
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def login(key: str | None = None, host: str | None = None, relogin: bool | None = None, **ignored: Any) -> bool:
    """Remember the ml-dash server (``host``) and API key for this process's ``wandb.init`` calls (in place
    of ``ML_DASH_API_URL`` / ``ML_DASH_API_KEY``); True when a server is configured. Nothing is stored
    on disk."""
    if key is not None:
        _login["key"] = key
    if host is not None:
        _login["host"] = host
    return bool((_login["host"] or env_value(ENV_API_URL)) and (_login["key"] or env_value(ENV_API_KEY)))


def require(*features: str, **ignored: Any) -> None:
    """``wandb.require(...)`` switches W&B's own experimental features: nothing to switch here."""


def setup(*args: Any, **kwargs: Any) -> None:
    """``wandb.setup()`` starts W&B's service process: ml-dash needs none."""


def teardown(exit_code: int | None = None) -> None:
    """``wandb.teardown()``: finish the current run."""
    finish(exit_code=exit_code)


class Settings:
    """``wandb.Settings(...)``: accepted so that ``init(settings=...)`` works; it changes nothing."""

    def __init__(self, **settings: Any) -> None:
        self.__dict__.update(settings)


def _current(call: str) -> Run:
    if run is None:
        raise RunStateError(f"call wandb.init() before {call}")
    return run


def _activate(started: Run) -> None:
    global run, config, summary
    run, config, summary = started, started.config, started.summary


def _finished(ended: Run) -> None:
    global run, config, summary
    if run is ended:
        run, config, summary = None, _BeforeInit("wandb.config"), _BeforeInit("wandb.summary")


def _filtered(values: dict[str, Any], exclude: list[str] | None, include: list[str] | None) -> dict[str, Any]:
    if exclude and include:
        raise ValueError("wandb.init(): pass config_exclude_keys or config_include_keys, not both")
    if include:
        return {k: v for k, v in values.items() if k in include}
    return {k: v for k, v in values.items() if k not in (exclude or ())}


_unsupported.disabled_now = lambda: run is not None and run.disabled
_function = _unsupported.function
_media = _unsupported.media_type

watch = _function("wandb.watch")
unwatch = _function("wandb.unwatch")
define_metric = _function("wandb.define_metric")
alert = _function("wandb.alert")
log_artifact = _function("wandb.log_artifact")
use_artifact = _function("wandb.use_artifact")
log_model = _function("wandb.log_model")
use_model = _function("wandb.use_model")
link_model = _function("wandb.link_model")
sweep = _function("wandb.sweep")
agent = _function("wandb.agent")
controller = _function("wandb.controller")
Api = _function("wandb.Api")
Image = _media("wandb.Image")
Table = _media("wandb.Table")
Histogram = _media("wandb.Histogram")
Audio = _media("wandb.Audio")
Video = _media("wandb.Video")
Html = _media("wandb.Html")
Object3D = _media("wandb.Object3D")
Molecule = _media("wandb.Molecule")
Plotly = _media("wandb.Plotly")
Graph = _media("wandb.Graph")
Artifact = _media("wandb.Artifact")
plot = _unsupported.Namespace("wandb.plot")


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"ml_dash.wandb has no {name!r}: ml-dash's W&B-shaped API does not provide it "
                         "(docs/migrating.md lists what it does)")


__all__ = [
    "Api", "Artifact", "Audio", "Config", "Error", "Graph", "Histogram", "Html", "Image", "Molecule", "Object3D",
    "Plotly", "Run", "Settings", "Summary", "Table", "Video", "agent", "alert", "config", "controller",
    "define_metric", "finish", "init", "link_model", "log", "log_artifact", "log_model", "login", "plot", "require",
    "run", "save", "setup", "summary", "sweep", "teardown", "unwatch", "use_artifact", "use_model", "watch",
]
