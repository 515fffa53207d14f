"""Keras 3 -> ml-dash: ``model.fit(..., callbacks=[MLDashCallback(prefix="alice/mnist/run-1")])``.

Any backend (tested with torch). What lands in the run:

* parameters, when ``fit`` begins: ``fit.epochs``, ``fit.steps`` (Keras' ``params``), the optimizer's
  config under ``optimizer.`` (``optimizer.name``, ``optimizer.learning_rate``, ...; a schedule as its
  config), ``model.name`` and ``model.num_parameters``;
* at each epoch's end a row of the metric ``epoch``: Keras' logs as it gives them (``loss``,
  ``accuracy``, ``val_loss``, ...) with ``epoch`` and ``step`` (batches seen so far);
* with ``log_every_n_batches=N``, every N-th batch a row of the metric ``batch`` (Keras' running
  averages of the epoch so far) with ``epoch`` and ``step``;
* the run ends COMPLETED at ``on_train_end``. Keras calls no callback when ``fit`` raises: an
  exception that ends the script ends the run FAILED (as for every ml-dash run); one caught by the
  script leaves the run running until the process exits.
"""

from __future__ import annotations

from typing import Any

import keras

from ..run import RunStatus
from . import BoundToRun, RunBinding

_EPOCH_STREAM = "epoch"
_BATCH_STREAM = "batch"


class MLDashCallback(BoundToRun, keras.callbacks.Callback):
    """Records a Keras ``fit`` in an ml-dash run.

    Args:
        prefix: the run, ``"owner/project/name"``.
        log_every_n_batches: also a row every this many batches (0: per epoch only).
        **experiment_kwargs: the :class:`~ml_dash.Experiment` keyword arguments (``local_path``,
            ``remote``, ``api_key``, ``description``, ``tags``, ``metadata``, ``resume``, ...), checked here.
    """

    def __init__(self, prefix: str, log_every_n_batches: int = 0, **experiment_kwargs: Any) -> None:
        super().__init__()
        if isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int) or log_every_n_batches < 0:
            raise ValueError(f"log_every_n_batches={log_every_n_batches!r} must be an int >= 0 (0: per epoch only)")
        self._binding = RunBinding(prefix, experiment_kwargs)
        self._every = log_every_n_batches
        self._epoch = 0
        self._step = 0  # batches seen in this fit


    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._binding.start()
        self._epoch = self._step = 0
        self._binding.log_params({"fit": dict(self.params or {})})
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            self._binding.log_params(optimizer.get_config(), "optimizer")
        self._binding.log_params(_model_params(model), "model")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._step += 1
        if self._every and logs and self._step % self._every == 0:
            self._binding.log_metrics(_BATCH_STREAM, logs, epoch=self._epoch, step=self._step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            self._binding.log_metrics(_EPOCH_STREAM, logs, epoch=epoch, step=self._step)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._binding.end(RunStatus.COMPLETED)


def _model_params(model: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": getattr(model, "name", None)}
    try:
        params["num_parameters"] = model.count_params()
    except ValueError:  # a subclassed model is built by its first batch: not counted before
        pass
    return params


__all__ = ["MLDashCallback"]
