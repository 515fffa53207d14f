"""Framework integrations: a training script changes one line to be tracked by ml-dash.

One module per framework, each an optional extra whose framework is imported only by that module
(``import ml_dash`` and ``import ml_dash.integrations`` load none of them):

* ``ml_dash.integrations.transformers``: ``MLDashCallback`` for the Hugging Face ``Trainer``;
* ``ml_dash.integrations.lightning``: ``MLDashLogger`` for (PyTorch) Lightning's ``Trainer``;
* ``ml_dash.integrations.keras``: ``MLDashCallback`` for Keras 3's ``fit``.

Every one of them is a thin adapter over the public SDK (ARCHITECTURE.md decision 12) through
:class:`RunBinding`, which owns what they share: the :class:`~ml_dash.Experiment` built from the
user's keyword arguments at once (a wrong prefix or option fails at the call, not an hour into
training), started on the main process only when the training starts, the framework's configuration
made into parameters and its logs into metric rows (what cannot be recorded is counted, by reason,
and said once: :mod:`ml_dash.integrations._values`), and the run ended with the training's outcome.
See docs/integrations.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from ..experiment import Experiment
from ..run import RunStatus
from ._values import Tally, metric_fields, param_values

logger = logging.getLogger("ml_dash.integrations")
_FILE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")  # ml_dash/format/naming.py's segment, for names we make

__all__ = ["BoundToRun", "RunBinding"]


class RunBinding:
    """The ml-dash run a framework integration writes.

    Built with the integration (the arguments are checked then); :meth:`start` begins the run, and
    again after the run ended (a second ``fit``, a ``test`` after ``fit``): a new Experiment on the
    same prefix continues the same run directory. Everything else is a no-op until the run started,
    so an integration calls it only on the process that logs (rank zero).
    """

    def __init__(self, prefix: str, experiment_kwargs: dict[str, Any]) -> None:
        self._kwargs = dict(experiment_kwargs)
        self._prefix = prefix
        self._experiment = Experiment(prefix, **self._kwargs)
        self.dropped = Tally()
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        """What a copy in another process needs (Lightning's ``ddp_spawn`` pickles the logger to each
        worker): the prefix and the keyword arguments; that process starts its own Experiment."""
        return {"prefix": self._prefix, "experiment_kwargs": self._kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"], state["experiment_kwargs"])  # type: ignore[misc]

    @property
    def experiment(self) -> Experiment:
        """The current Experiment (created, running or ended)."""
        return self._experiment

    @property
    def running(self) -> bool:
        return self._experiment.status is RunStatus.RUNNING

    def start(self, again: bool = True) -> Experiment:
        """The running Experiment, started now if it is not running (with ``again=False``: only if it
        never ran; an ended run's Experiment is returned as it is)."""
        experiment = self._experiment
        if experiment.status is RunStatus.RUNNING or (not again and experiment.status is not RunStatus.CREATED):
            return experiment
        if experiment.status is not RunStatus.CREATED:  # ended: an Experiment runs once; its directory goes on
            experiment = self._experiment = Experiment(self._prefix, **self._kwargs)
        experiment.run.start()
        return experiment

    def log_params(self, values: Any, parent: str = "") -> None:
        """Merge ``values`` (a mapping or a configuration object) into the run's parameters, flattened."""
        if not self.running:
            return
        flat, tally = param_values(values, parent)
        params = self._experiment.params
        try:
            params.set(flat)
        except (TypeError, ValueError):  # all together past the document's size: keep what fits, one by one
            for key, value in flat.items():
                try:
                    params.set({key: value})
                except (TypeError, ValueError) as exc:
                    tally.add(f"skipped: {_first_clause(exc)}", key)
        if tally:
            self.dropped.merge(tally)
            # stringified and redacted values are still there, as text: said in the run's log only
            skipped = any(reason.startswith("skipped") for reason in tally.counts)
            self.note(f"parameters not recorded as given: {tally.summary()}", console=skipped)

    def log_metrics(self, stream: str, fields: Mapping[str, Any], **context: Any) -> None:
        """One row of ``stream``: the scalar ``fields`` with ``context`` (``step``, ``epoch``) added."""
        if not self.running:
            return
        row, skipped = metric_fields(fields)
        if skipped is not None:
            self.dropped.merge(skipped)
            self.note(f"fields of metric {stream!r} not recorded: {skipped.summary()} (and later ones like them, "
                      "counted in .dropped)", once=f"fields:{stream}:{sorted(skipped.counts)}")
        if not row:
            return
        row.update((key, value) for key, value in context.items() if value is not None)
        try:
            self._experiment.metrics(stream).log(**row)  # keywords: the C hot path's plain call
        except (TypeError, ValueError) as exc:  # a value the SDK refuses: that row is lost, and said so
            self.dropped.add(f"skipped: {_first_clause(exc)}", stream)
            self.note(f"a row of metric {stream!r} was not recorded: {exc}", once=f"row:{stream}")

    def save_file(self, path: str | os.PathLike[str], folder: str, **fields: Any) -> bool:
        """Copy the file ``path`` into the run's ``files/<folder>/`` now (``fields``: description, tags,
        metadata), under its name made a valid file name (``epoch=3.ckpt`` -> ``epoch_3.ckpt``). A file
        that cannot be saved is said and counted, never raised into the training."""
        if not self.running:
            return False
        name = _file_name(os.path.basename(path))
        try:
            self._experiment.files(folder).upload(path, to=name, **fields)
        except (OSError, TypeError, ValueError) as exc:
            self.dropped.add("skipped: file not saved", name)
            self.note(f"file {os.fspath(path)!r} was not saved: {exc}")
            return False
        return True

    def end(self, status: RunStatus, reason: str | BaseException | None = None) -> None:
        """End the run ``status`` (COMPLETED, FAILED or CANCELLED) if it is running."""
        if not self.running:
            return
        run = self._experiment.run
        if status is RunStatus.FAILED:
            run.fail(reason)
        elif status is RunStatus.CANCELLED:
            run.cancel(reason)
        else:
            run.complete()

    def end_with_exception(self, exc: BaseException) -> None:
        """End the run as ``with exp.run:`` would for ``exc``: CANCELLED for KeyboardInterrupt, COMPLETED
        for ``sys.exit(0)``, FAILED (with the exception) otherwise."""
        if self.running:
            self._experiment.run.__exit__(type(exc), exc, exc.__traceback__)

    def note(self, message: str, once: str | None = None, console: bool = True) -> None:
        """A warning in the run's logs and (with ``console``) on the console; once per ``once`` key."""
        if once is not None:
            if once in self._warned:
                return
            self._warned.add(once)
        if console:
            logger.warning("ml-dash: %s: %s", self._prefix, message)
        if self.running:
            self._experiment.log(message[:8000], level="warn" if console else "info")


def _file_name(name: str) -> str:
    """A file name the run's files accept (letters, digits, ``_-.``, not starting with ``.`` or ``-``)."""
    return _FILE_NAME_CHARS.sub("_", name).lstrip(".-") or "file"


def _first_clause(exc: BaseException) -> str:
    return str(exc).split(";")[0][:120]


class BoundToRun:
    """What every integration shows of its run, through its :class:`RunBinding` (``self._binding``)."""

    _binding: RunBinding

    @property
    def experiment(self) -> Experiment:
        """The run's :class:`~ml_dash.Experiment` (running while the training runs, on the main process)."""
        return self._binding.experiment

    @property
    def dropped(self) -> dict[str, int]:
        """Values not recorded as given, by reason (``stringified``, ``skipped: ...``)."""
        return dict(self._binding.dropped.counts)
