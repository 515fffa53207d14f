"""Hugging Face ``Trainer`` -> ml-dash: ``Trainer(..., callbacks=[MLDashCallback(prefix="alice/glue/run-1")])``.

What lands in the run (on the main process only: ``state.is_world_process_zero``):

* parameters, when training begins: the ``TrainingArguments`` at the top level (``learning_rate``,
  ``per_device_train_batch_size``, ...; tokens are masked by ``TrainingArguments.to_dict``), the
  model's config under ``model.`` (``model.hidden_size``, ...) and ``model.num_parameters``;
* at each logging step, a row of the metric ``train`` (``loss``, ``learning_rate``, ``grad_norm``,
  ``epoch``, ...); at each evaluation a row of ``eval`` (the ``eval_`` prefix taken off:
  ``loss``, ``runtime``, your ``compute_metrics``' keys); ``predict``'s ``test_`` metrics go to
  ``test``. Every row carries ``step``, the global step. The summary the Trainer logs when training
  ends (``train_runtime``, ``train_loss``, ``total_flos``, ...) is a last row of ``train``.
* the run ends COMPLETED when training ends, FAILED when ``trainer.train()`` raises (the exception
  is the reason), CANCELLED on KeyboardInterrupt. An ``evaluate()`` after training continues the run
  and ends it again.

The failure is seen by wrapping ``train`` of the Trainer that the callback was given to
(``Trainer(callbacks=[...])``): the Trainer calls its callbacks with no reference to itself, and an
exception leaves ``train()`` without any callback. A callback added later with ``add_callback``
does not see a caught exception: the run is then ended when the process exits (FAILED after an
uncaught exception, as every ml-dash run).
"""

from __future__ import annotations

import functools
import sys
from types import FrameType
from typing import Any

from transformers import Trainer, TrainerCallback

from ..run import RunStatus
from . import BoundToRun, RunBinding

#: The Trainer's metric prefixes and the streams they go to (anything else is training).
_STREAM_OF_PREFIX = {"eval_": "eval", "test_": "test"}
_PREFIX_CHARS = 5  # both prefixes' length: one slice and one dict look-up per key (this runs every logging step)
_TRAIN_STREAM = "train"
_FRAMES_TO_TRAINER = 8  # our on_init_end <- CallbackHandler.call_event <- .on_init_end <- Trainer.__init__


class MLDashCallback(BoundToRun, TrainerCallback):
    """Records a Hugging Face ``Trainer``'s training in an ml-dash run.

    Args:
        prefix: the run, ``"owner/project/name"``.
        **experiment_kwargs: the :class:`~ml_dash.Experiment` keyword arguments (``local_path``,
            ``remote``, ``api_key``, ``description``, ``tags``, ``metadata``, ``resume``, ...), checked here.
    """

    def __init__(self, prefix: str, **experiment_kwargs: Any) -> None:
        self._binding = RunBinding(prefix, experiment_kwargs)
        self._training = False


    # -- the Trainer's events ------------------------------------------------------------------------
    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        trainer = _calling_trainer()
        if trainer is not None:
            _end_run_when_train_raises(trainer, self)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._binding.start()
        self._training = True
        self._binding.log_params(args)
        config = getattr(model, "config", None)
        if config is not None:
            self._binding.log_params(config, "model")
        count = _parameter_count(model)
        if count is not None:
            self._binding.log_params({"num_parameters": count}, "model")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if not self._binding.running:  # an evaluate() or predict() after the run ended: it goes on
            self._binding.start()
        for stream, fields in _rows_by_stream(logs).items():
            self._binding.log_metrics(stream, fields, step=state.global_step)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_outside_training(state)

    def on_predict(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end_outside_training(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._training = False
            self._binding.end(RunStatus.COMPLETED)

    # -- ending ----------------------------------------------------------------------------------------
    def _end_outside_training(self, state: Any) -> None:
        if state.is_world_process_zero and not self._training:
            self._binding.end(RunStatus.COMPLETED)

    def _train_raised(self, exc: BaseException) -> None:
        self._training = False
        self._binding.end_with_exception(exc)  # a no-op off the main process: it never started the run


def _rows_by_stream(logs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"eval_loss": .3, "epoch": 1}`` -> ``{"eval": {"loss": .3, "epoch": 1}}``; ``epoch`` joins every row."""
    rows: dict[str, dict[str, Any]] = {}
    for key, value in logs.items():
        stream = _STREAM_OF_PREFIX.get(key[:_PREFIX_CHARS]) if len(key) > _PREFIX_CHARS else None
        if stream is not None:
            key = key[_PREFIX_CHARS:]
        elif key == "epoch":
            continue
        else:
            stream = _TRAIN_STREAM
        row = rows.get(stream)
        if row is None:
            row = rows[stream] = {}
        row[key] = value
    if "epoch" in logs:
        for row in rows.values():
            row.setdefault("epoch", logs["epoch"])
    return rows


def _parameter_count(model: Any) -> int | None:
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None
    try:
        return sum(p.numel() for p in parameters())
    except Exception:  # noqa: BLE001 - a model whose parameters cannot be counted still trains
        return None


def _calling_trainer() -> Trainer | None:
    """The Trainer whose ``__init__`` is calling ``on_init_end``, looked up the stack once."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_FRAMES_TO_TRAINER):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


def _end_run_when_train_raises(trainer: Trainer, callback: MLDashCallback) -> None:
    """Wrap this Trainer's ``train`` (the instance's only) so an exception leaving it ends the run."""
    original = trainer.train

    @functools.wraps(original)
    def train(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except BaseException as exc:
            callback._train_raised(exc)
            raise

    trainer.train = train


__all__ = ["MLDashCallback"]
