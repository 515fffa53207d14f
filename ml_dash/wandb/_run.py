"""``wandb.Run``: one run, over an ml-dash :class:`~ml_dash.Experiment` (None when disabled).

``log`` checks a row at the call and hands it to the step rules (_history.py); each committed row
becomes one row per metric stream it touches, with ``_step`` (_keys.py). ``config`` writes the
run's params, ``summary`` its summary (_summary.py). ``finish`` commits what is pending, saves the
files asked for at the end and the summary file, then ends the run: COMPLETED, or FAILED for a
non-zero exit code. ``with wandb.init(...) as run:`` ends it FAILED when an exception escapes
(CANCELLED for KeyboardInterrupt), and the process's end finishes a run left open (_exit.py).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ..errors import RunStateError
from ._config import Config
from ._exit import ExitState, forget, on_exit
from ._files import Saves
from ._history import History
from ._keys import STEP_FIELD, flatten_row, metric_of, split_key
from ._settings import InitSettings
from ._summary import SUMMARY_FILE, SUMMARY_STREAM, Summary
from ._unsupported import message

if TYPE_CHECKING:
    from types import TracebackType

    from ..experiment import Experiment

#: The folder of the run directory whose files are saved with the run when it finishes (W&B's run.dir).
RUN_FILES_DIR = "wandb-files"
_SPLIT_CACHE_KEYS = 10_000  # distinct keys whose (stream, field) split is remembered
#: Values a metric holds as they are (an int only within 64 bits: ints go through the check)
_PLAIN = frozenset({float, bool, str, type(None)})


class Run:
    """A W&B-shaped run: ``log``, ``config``, ``summary``, ``save``, ``finish``."""

    def __init__(self, settings: InitSettings, experiment: Experiment | None, *, start_step: int = 0,
                 config: dict[str, Any] | None = None, summary: dict[str, Any] | None = None,
                 url: str | None = None, on_finish: Callable[[Run], None] | None = None) -> None:
        self._settings = settings
        self._experiment = experiment
        recording = experiment is not None
        self.config = Config(self._store_params if recording else None, config)
        self.summary = Summary(self._store_summary if recording else None, summary)
        self._history = History(self._commit, start_step)
        # wandb.log from several threads (a logging callback beside the loop); re-entrant, because the
        # SIGTERM handler ends the run on the main thread, possibly in the middle of a log() there
        self._lock = threading.RLock()
        self._splits: dict[str, tuple[str, str]] = {}
        self._saves = Saves()
        self._started_at = time.time()
        self._finished = False
        self._on_finish = on_finish
        self._scratch: str | None = None
        self.url = url
        if recording:
            on_exit(self._end_at_exit)

    # -- what W&B users read -------------------------------------------------
    @property
    def name(self) -> str:
        """The run's name: the last part of its ml-dash prefix ``entity/project/name``."""
        return self._settings.name

    @property
    def id(self) -> str:
        """The id given to ``wandb.init``, else the name (pass it back as ``id=`` with ``resume=`` to continue)."""
        return self._settings.id or self._settings.name

    @property
    def entity(self) -> str:
        return self._settings.entity

    @property
    def project(self) -> str:
        return self._settings.project

    @property
    def path(self) -> str:
        """``entity/project/name``: the ml-dash prefix."""
        return self._settings.prefix

    prefix = path

    @property
    def group(self) -> str | None:
        return self._settings.group

    @property
    def job_type(self) -> str | None:
        return self._settings.job_type

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._settings.tags)

    @property
    def notes(self) -> str | None:
        return self._settings.notes

    @property
    def mode(self) -> str:
        return self._settings.mode

    @property
    def offline(self) -> bool:
        return self._settings.mode == "offline"

    @property
    def disabled(self) -> bool:
        return self._settings.mode == "disabled"

    @property
    def step(self) -> int:
        """The step the next committed row gets."""
        return self._history.step

    @property
    def start_time(self) -> float:
        return self._started_at

    @property
    def experiment(self) -> Experiment | None:
        """The ml-dash Experiment behind this run (None when disabled): its full API."""
        return self._experiment

    @property
    def dir(self) -> str:
        """A folder whose files are saved with the run when it finishes (W&B's ``run.dir``)."""
        if self._experiment is None:
            if self._scratch is None:  # disabled: somewhere to write that records nothing
                self._scratch = tempfile.mkdtemp(prefix="ml-dash-wandb-disabled-")
            return self._scratch
        folder = self._experiment.directory / RUN_FILES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    # -- what W&B users call ---------------------------------------------------
    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None,
            sync: bool | None = None) -> None:
        """Record ``data`` (``"train/loss"`` -> field ``loss`` of stream ``train``) at W&B's step rules."""
        self._require_open("wandb.log()")
        row = flatten_row("wandb.log()", data)
        if self._experiment is not None:  # disabled: nothing is recorded, so nothing is checked
            splits = self._splits
            for key, value in row.items():
                if key not in splits:
                    self._split(key)
                if value.__class__ not in _PLAIN:
                    row[key] = metric_of("wandb.log()", key, value)
        with self._lock:
            self._history.log(row, step, commit)

    def save(self, glob_str: str | os.PathLike, base_path: str | os.PathLike | None = None,
             policy: str = "live") -> list[str]:
        """Save the files matching ``glob_str`` with the run (``policy``: "now", "live" = now and again
        at the end, "end"); returns the paths saved now."""
        self._require_open("wandb.save()")
        if self._experiment is None:
            return []
        return self._saves.save(self._experiment, glob_str, base_path, policy)

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run: COMPLETED, or FAILED when ``exit_code`` is not 0. A second call does nothing."""
        if exit_code:
            self._end("fail", f"exit code {exit_code}")
        else:
            self._end("complete", None)

    def __enter__(self) -> Run:  # noqa: PYI034  (typing.Self needs 3.11; the package supports 3.10)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc_type is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self._end("complete", None)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._end("cancel", "KeyboardInterrupt")
        else:
            self._end("fail", exc if exc is not None else exc_type.__name__)
        return False

    def __repr__(self) -> str:
        return f"<wandb Run {self.path!r} ({self.mode})>"

    # -- W&B calls ml-dash does not carry --------------------------------------
    def _unsupported(self, call: str) -> None:
        if not self.disabled:
            raise NotImplementedError(message(call))

    def watch(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.watch")

    def log_artifact(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.log_artifact")

    def use_artifact(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.use_artifact")

    def log_model(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.log_model")

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.run.log_code")

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.define_metric")

    def alert(self, *args: Any, **kwargs: Any) -> None:
        self._unsupported("wandb.alert")

    # -- inside ------------------------------------------------------------------
    def _require_open(self, call: str) -> None:
        if self._finished:
            raise RunStateError(f"{call}: the run {self.path!r} has finished; call wandb.init() for a new one")

    def _split(self, key: str) -> tuple[str, str]:
        found = self._splits.get(key)
        if found is None:
            found = split_key("wandb.log()", key)
            if len(self._splits) < _SPLIT_CACHE_KEYS:
                self._splits[key] = found
        return found

    def _commit(self, step: int, row: dict[str, Any]) -> None:
        if self._experiment is not None:
            streams: dict[str, dict[str, Any]] = {}
            splits = self._splits
            for key, value in row.items():
                stream, field = splits.get(key) or self._split(key)
                fields = streams.get(stream)
                if fields is None:
                    fields = streams[stream] = {STEP_FIELD: step}
                fields[field] = value
            metrics = self._experiment.metrics
            for stream, fields in streams.items():
                metrics(stream).log(**fields)  # keywords: the SDK's fast path (a positional dict is merged first)
        self.summary.logged(row)

    def _store_params(self, changes: dict[str, Any]) -> None:
        assert self._experiment is not None
        self._experiment.params.set(changes)

    def _store_summary(self, changes: dict[str, Any]) -> None:
        assert self._experiment is not None
        self._experiment.metrics(SUMMARY_STREAM).log(dict(changes))

    def _end(self, how: str, reason: str | BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        forget(self._end_at_exit)
        experiment = self._experiment
        try:
            if experiment is not None and experiment.status.value == "RUNNING":
                try:
                    with self._lock:
                        self._history.flush()
                    self._saves.at_end(experiment, experiment.directory / RUN_FILES_DIR)
                    experiment.files("").save_json(self._summary_file(), to=SUMMARY_FILE)
                finally:
                    getattr(experiment.run, how)(*(() if how == "complete" else (reason,)))
        finally:
            if self._on_finish is not None:
                self._on_finish(self)

    def _summary_file(self) -> dict[str, Any]:
        now = time.time()
        document = {**self.summary.as_dict(), "_runtime": now - self._started_at, "_timestamp": now}
        if self._history.last_committed is not None:
            document["_step"] = self._history.last_committed
        return document

    def _end_at_exit(self, state: ExitState) -> None:
        exc = state.exception
        if state.terminated:
            self._end("cancel", "SIGTERM")
        elif isinstance(exc, KeyboardInterrupt):
            self._end("cancel", "KeyboardInterrupt")
        elif exc is not None:
            self._end("fail", exc)
        elif state.exit_code:
            self._end("fail", f"exit code {state.exit_code}")
        else:
            self._end("complete", None)
