"""(PyTorch) Lightning -> ml-dash: ``Trainer(logger=MLDashLogger(prefix="alice/mnist/run-1"))``.

Works with ``lightning.pytorch`` and with ``pytorch_lightning`` (2.x): the logger subclasses the
``Logger`` of the one already imported, else of the one installed (``lightning`` first); the Trainer
of the other uses it as well (it asks a logger for its methods, not its class).

What lands in the run (rank zero only, through Lightning's ``rank_zero_only``):

* the run starts when the Trainer sets up (it asks every logger for its ``experiment`` then);
* ``save_hyperparameters()`` (and any ``log_hyperparams``) become parameters, flattened
  (``{"optimizer": {"lr": 0.1}}`` -> ``optimizer.lr``); an ``argparse.Namespace`` too;
* everything ``self.log`` records, by step and by epoch, as Lightning hands it over: a key
  ``"train/loss"`` is field ``loss`` of the metric ``train``; a key without ``/`` (``val_loss``,
  ``train_loss_epoch``) is a field of the metric ``default``. Each row carries ``step`` (Lightning's
  step) and ``epoch`` when Lightning gives one;
* checkpoints, with ``log_model=True`` when the run ends, with ``log_model="all"`` each time
  ``ModelCheckpoint`` saves one: copied to ``files/checkpoints/`` (with their score and monitor);
* ``finalize(status)``: Lightning's ``"success"`` ends the run COMPLETED, ``"failed"`` FAILED
  (with the exception being handled, or CANCELLED for KeyboardInterrupt), ``"finished"`` (a SLURM
  requeue) CANCELLED. A ``trainer.test()`` after ``fit`` continues the run and ends it again.

``name`` is the prefix's project and ``version`` its run name, so ``ModelCheckpoint`` writes to
``<save_dir or default_root_dir>/<project>/<name>/checkpoints``: outside the run directory, which
holds what ml-dash writes and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
from collections.abc import Mapping
from typing import Any, Literal

from lightning_utilities.core.rank_zero import rank_zero_only

from ..experiment import Experiment
from ..format.naming import validate_metric_name
from ..metrics import DEFAULT_METRIC
from ..run import RunStatus
from . import BoundToRun, RunBinding

_PACKAGES = ("lightning.pytorch", "pytorch_lightning")
_CHECKPOINTS = "checkpoints"  # the folder of the run's files that checkpoints are copied to
_CONTEXT_KEYS = ("epoch",)  # keys Lightning adds to a step's metrics: context for every row of the call


def _lightning_package() -> types.ModuleType:
    """The Lightning the script uses: one imported already, else the first installed."""
    for name in _PACKAGES:
        if name in sys.modules:
            return sys.modules[name]
    for name in _PACKAGES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("ml_dash.integrations.lightning needs Lightning 2.x: pip install 'ml-dash[lightning]' "
                      "(pytorch-lightning), or lightning")


_package = _lightning_package()
_loggers = importlib.import_module(f"{_package.__name__}.loggers.logger")


class MLDashLogger(BoundToRun, _loggers.Logger):  # type: ignore[name-defined]  # the base is found at import
    """A Lightning logger that writes an ml-dash run.

    Args:
        prefix: the run, ``"owner/project/name"``.
        log_model: ``False`` (no checkpoints), ``True`` (the checkpoints ``ModelCheckpoint`` kept, when
            the run ends) or ``"all"`` (each checkpoint when it is saved).
        save_dir: where Lightning writes its own files for this logger (checkpoints); default the
            Trainer's ``default_root_dir``.
        **experiment_kwargs: the :class:`~ml_dash.Experiment` keyword arguments (``local_path``,
            ``remote``, ``api_key``, ``description``, ``tags``, ``metadata``, ``resume``, ...), checked here.
    """

    def __init__(self, prefix: str, log_model: bool | Literal["all"] = False, save_dir: str | None = None,
                 **experiment_kwargs: Any) -> None:
        super().__init__()
        if log_model not in (True, False, "all"):
            raise ValueError(f"log_model={log_model!r}: use False, True (at the end) or 'all' (every checkpoint)")
        self._binding = RunBinding(prefix, experiment_kwargs)
        self._log_model = log_model
        self._save_dir = save_dir
        self._checkpoint_callback: Any = None
        self._saved: dict[str, float] = {}  # checkpoint path -> the modification time saved

    # -- the properties Lightning and its callbacks read -----------------------------------------------
    @property
    def name(self) -> str:
        return self._binding.experiment.project

    @property
    def version(self) -> str:
        return self._binding.experiment.name

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    @_loggers.rank_zero_experiment
    def experiment(self) -> Experiment:
        """The run's :class:`~ml_dash.Experiment`: started by the first use (the Trainer's set-up); after the
        run ended, that ended Experiment (logging again continues the run). A dummy off rank zero."""
        return self._binding.start(again=False)

    # -- what the Trainer calls ----------------------------------------------------------------------------
    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace, *args: Any, **kwargs: Any) -> None:
        self._binding.start()
        self._binding.log_params(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._binding.start()
        context = {key: metrics[key] for key in _CONTEXT_KEYS if key in metrics}
        for stream, fields in _rows_by_stream(metrics).items():
            self._binding.log_metrics(stream, fields, step=step, **context)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._checkpoint_callback = checkpoint_callback
        if self._log_model == "all":
            self._save_checkpoints()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._log_model is True:
            self._save_checkpoints()
        if status == "success":
            self._binding.end(RunStatus.COMPLETED)
            return
        if status == "finished":  # Lightning's SLURM requeue: the job goes on in another one
            self._binding.end(RunStatus.CANCELLED, "requeued (Lightning finalize('finished'))")
            return
        exc = sys.exc_info()[1]  # Lightning calls finalize("failed") inside its `except` for the exception
        if exc is not None:
            self._binding.end_with_exception(exc)
        else:
            self._binding.end(RunStatus.FAILED, f"Lightning finalize({status!r})")

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _save_checkpoints(self) -> None:
        """Copy the checkpoints the callback keeps that are new or changed since they were last copied."""
        callback = self._checkpoint_callback
        if callback is None or not self._binding.running:
            return
        scores = dict(getattr(callback, "best_k_models", {}) or {})
        paths = [*scores, getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")]
        for path in dict.fromkeys(p for p in paths if p):
            try:
                modified = os.stat(path).st_mtime
            except OSError:  # removed meanwhile (no longer among the top k)
                continue
            if self._saved.get(path) == modified:
                continue
            metadata = {"monitor": getattr(callback, "monitor", None), "score": _number(scores.get(path))}
            self._binding.save_file(path, _CHECKPOINTS, metadata=metadata)
            self._saved[path] = modified


def _rows_by_stream(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if key in _CONTEXT_KEYS:
            continue
        stream, field = _split_key(str(key))
        rows.setdefault(stream, {})[field] = value
    return rows


def _split_key(key: str) -> tuple[str, str]:
    """``"train/loss"`` -> (metric ``train``, field ``loss``); a key without ``/`` (or whose part before it
    is no metric name) goes whole to the default metric, as ``exp.metrics.log`` does."""
    stream, slash, field = key.partition("/")
    if slash and field:
        try:
            return validate_metric_name(stream), field
        except (TypeError, ValueError):
            pass
    return DEFAULT_METRIC, key


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _register_with_other_lightning() -> None:
    """``isinstance(logger, Logger)`` (LightningCLI asks) for the other Lightning too, when it is loaded."""
    for name in _PACKAGES:
        module = sys.modules.get(f"{name}.loggers.logger")
        if module is not None and module is not _loggers:
            module.Logger.register(MLDashLogger)


_register_with_other_lightning()

__all__ = ["MLDashLogger"]
