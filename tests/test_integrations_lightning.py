"""The Lightning logger (ml_dash/integrations/lightning.py), with the real Trainers of ``pytorch_lightning``
and ``lightning.pytorch`` on CPU: a linear model built in code, 16 examples, 2 epochs of 4 steps."""

from __future__ import annotations

import argparse
import importlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .integration_runs import one_torch_thread, params_of, rows_of, run_document, saved_files

pytestmark = pytest.mark.needs_torch  # every test imports Lightning, which imports torch

PREFIX = "alice/mnist/run-1"
RUN = Path(".dash") / PREFIX
PACKAGES = ["pytorch_lightning", "lightning.pytorch"]


@pytest.fixture(params=PACKAGES)
def pl(request: pytest.FixtureRequest, workdir: Path) -> Iterator[Any]:
    """Each Lightning package in turn (the logger's base is the one imported first: the other package's
    Trainer uses it as well); torch on one thread."""
    pytest.importorskip(request.param.split(".")[0])
    with one_torch_thread():
        yield importlib.import_module(request.param)


def tiny_module(pl: Any, fail_at_step: int | None = None) -> Any:
    import torch
    from torch import nn

    class Tiny(pl.LightningModule):
        def __init__(self, lr: float = 0.1, optimizer: dict[str, Any] | None = None) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Linear(3, 1)

        def training_step(self, batch: Any, index: int) -> Any:
            if self.global_step == fail_at_step:
                raise FloatingPointError(f"loss diverged at step {fail_at_step}")
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train/loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def test_step(self, batch: Any, index: int) -> None:
            x, y = batch
            self.log("test/loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    return Tiny(lr=0.1, optimizer={"name": "sgd", "momentum": 0.0})


def tiny_data() -> Any:
    import torch

    data = torch.utils.data.TensorDataset(torch.randn(16, 3), torch.randn(16, 1))
    return torch.utils.data.DataLoader(data, batch_size=4)


def trainer_of(pl: Any, logger: Any, **options: Any) -> Any:
    return pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", **options)


def test_fit_and_test_record_hyperparameters_metrics_by_step_and_epoch_and_every_checkpoint(pl: Any) -> None:
    from ml_dash.integrations.lightning import MLDashLogger

    logger = MLDashLogger(prefix=PREFIX, log_model="all", description="tiny")
    trainer = trainer_of(pl, logger)
    module = tiny_module(pl)
    trainer.fit(module, tiny_data(), tiny_data())
    assert run_document(RUN)["status"] == "COMPLETED"
    trainer.test(module, tiny_data())  # continues the run, and ends it again

    assert run_document(RUN)["status"] == "COMPLETED" and run_document(RUN)["description"] == "tiny"
    assert params_of(RUN) == {"lr": 0.1, "optimizer.name": "sgd", "optimizer.momentum": 0.0}
    train = rows_of(RUN, "train")
    steps = [(row["step"], row["epoch"]) for row in train if "loss_step" in row]
    assert steps == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1), (7, 1)]
    assert [(row["step"], row["epoch"]) for row in train if "loss_epoch" in row] == [(3, 0), (7, 1)]
    assert [(row["step"], row["epoch"]) for row in rows_of(RUN, "default")] == [(3, 0), (7, 1)]  # val_loss
    assert all("val_loss" in row for row in rows_of(RUN, "default"))
    assert [set(row) for row in rows_of(RUN, "test")] == [{"loss", "step", "epoch"}]
    files = saved_files(RUN)
    assert sorted(files) == ["checkpoints/epoch_0-step_4.ckpt", "checkpoints/epoch_1-step_8.ckpt"]
    assert (logger.name, logger.version, logger.save_dir) == ("mnist", "run-1", None)
    assert logger.experiment.prefix == PREFIX and logger.dropped == {}


def test_log_model_true_copies_the_kept_checkpoints_once_at_the_end(pl: Any) -> None:
    from ml_dash.integrations.lightning import MLDashLogger

    logger = MLDashLogger(prefix=PREFIX, log_model=True)
    checkpoint = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=1)
    trainer_of(pl, logger, callbacks=[checkpoint]).fit(tiny_module(pl), tiny_data(), tiny_data())

    (entry,) = saved_files(RUN).values()  # only the best one: the top-1 of its epoch was removed
    assert entry["path"] == "checkpoints/" + Path(checkpoint.best_model_path).name.replace("=", "_")
    assert entry["metadata"] == {"monitor": "val_loss", "score": pytest.approx(float(checkpoint.best_model_score))}


def test_a_failing_fit_ends_the_run_failed_with_the_exception(pl: Any) -> None:
    from ml_dash.integrations.lightning import MLDashLogger

    with pytest.raises(FloatingPointError):
        trainer_of(pl, MLDashLogger(prefix=PREFIX)).fit(tiny_module(pl, fail_at_step=5), tiny_data(), tiny_data())

    document = run_document(RUN)
    assert document["status"] == "FAILED"
    assert document["status_reason"] == "FloatingPointError: loss diverged at step 5"
    assert [row["step"] for row in rows_of(RUN, "train") if "loss_step" in row] == [0, 1, 2, 3, 4]


def test_off_rank_zero_nothing_is_written(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lightning_utilities")
    from lightning_utilities.core.rank_zero import rank_zero_only

    from ml_dash.integrations.lightning import MLDashLogger

    monkeypatch.setattr(rank_zero_only, "rank", 1)  # what the Trainer sets on another rank of a DDP job
    logger = MLDashLogger(prefix=PREFIX)
    logger.log_hyperparams(argparse.Namespace(lr=0.1))
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")
    assert type(logger.experiment).__name__ == "_DummyExperiment"
    assert not RUN.exists()


def test_hyperparameters_from_a_namespace_are_flattened(workdir: Path) -> None:
    pytest.importorskip("lightning_utilities")
    from ml_dash.integrations.lightning import MLDashLogger

    logger = MLDashLogger(prefix=PREFIX)
    logger.log_hyperparams(argparse.Namespace(lr=0.1, data=argparse.Namespace(root=Path("/data"), batch=32)))
    logger.finalize("success")
    assert params_of(RUN) == {"lr": 0.1, "data.root": "/data", "data.batch": 32}
    assert logger.dropped == {"stringified": 1}


def test_wrong_arguments_fail_when_the_logger_is_built(workdir: Path) -> None:
    pytest.importorskip("lightning_utilities")
    from ml_dash.integrations.lightning import MLDashLogger

    with pytest.raises(ValueError, match="log_model='best'"):
        MLDashLogger(prefix=PREFIX, log_model="best")
    with pytest.raises(ValueError, match="prefix"):
        MLDashLogger(prefix="mnist-run")


def test_the_logger_pickles_for_spawned_workers(workdir: Path) -> None:
    pytest.importorskip("lightning_utilities")
    from ml_dash.integrations.lightning import MLDashLogger

    copy = pickle.loads(pickle.dumps(MLDashLogger(prefix=PREFIX, log_model="all")))  # as ddp_spawn does
    assert (copy.name, copy.version, copy._log_model) == ("mnist", "run-1", "all")
