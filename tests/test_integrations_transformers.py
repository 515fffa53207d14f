"""The Hugging Face Trainer's callback (ml_dash/integrations/transformers.py), with the real Trainer on CPU:
a BERT of 778 parameters built in code, 16 examples, 8 steps; nothing downloaded (HF_HUB_OFFLINE)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment

from .integration_runs import one_torch_thread, params_of, rows_of, run_document
from .server_process import Server

PREFIX = "alice/glue/run-1"
RUN = Path(".dash") / PREFIX


@pytest.fixture
def hf(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The transformers module, imported offline (nothing may be fetched from the Hub); torch on one thread."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    with one_torch_thread():
        yield transformers


def tiny_trainer(hf: Any, callback: Any, fail_at_step: int | None = None, **args: Any) -> Any:
    """A Trainer of a tiny BERT: 2 epochs of 4 steps, logging every 2 steps, evaluating every 4.
    With ``fail_at_step``, the model's forward raises at that training step."""
    import torch

    torch.manual_seed(0)
    config = hf.BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                           intermediate_size=8, max_position_embeddings=8, num_labels=2)
    model = hf.BertForSequenceClassification(config)
    if fail_at_step is not None:
        calls = iter(range(1, 1000))

        def diverge(module: Any, inputs: Any) -> None:
            if module.training and next(calls) == fail_at_step:
                raise FloatingPointError(f"loss diverged at step {fail_at_step}")

        model.register_forward_pre_hook(diverge)
    data = [{"input_ids": torch.randint(0, 16, (6,)), "labels": i % 2} for i in range(16)]
    arguments = hf.TrainingArguments(
        output_dir="out", per_device_train_batch_size=4, num_train_epochs=2, learning_rate=1e-3,
        logging_steps=2, eval_strategy="steps", eval_steps=4, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, hub_token="hf_not_to_be_stored", **args)
    return hf.Trainer(model=model, args=arguments, train_dataset=data, eval_dataset=data[:8], callbacks=[callback])


def test_a_trainer_run_records_arguments_config_losses_and_evaluations_by_global_step(hf: Any) -> None:
    from ml_dash.integrations.transformers import MLDashCallback

    callback = MLDashCallback(prefix=PREFIX, tags=["bert"])
    tiny_trainer(hf, callback).train()

    assert run_document(RUN)["status"] == "COMPLETED" and run_document(RUN)["tags"] == ["bert"]
    params = params_of(RUN)
    assert params["learning_rate"] == 1e-3 and params["per_device_train_batch_size"] == 4
    assert params["model.hidden_size"] == 8 and params["model.model_type"] == "bert"
    assert params["model.num_parameters"] == 778 and params["model.id2label.0"] == "LABEL_0"
    assert "hf_not_to_be_stored" not in (RUN / "parameters.json").read_text()
    train = rows_of(RUN, "train")
    assert [row["step"] for row in train] == [2, 4, 6, 8, 8]  # every 2 steps, then the training's summary
    assert all({"loss", "learning_rate", "grad_norm", "epoch"} <= set(row) for row in train[:4])
    assert [row["epoch"] for row in train[:4]] == [0.5, 1.0, 1.5, 2.0]
    assert train[0]["learning_rate"] > train[3]["learning_rate"] > 0  # the linear schedule, as the Trainer has it
    assert {"train_runtime", "train_loss", "total_flos"} <= set(train[4])
    evals = rows_of(RUN, "eval")
    assert [row["step"] for row in evals] == [4, 8]
    assert all({"loss", "runtime", "samples_per_second", "epoch"} <= set(row) for row in evals)
    assert callback.dropped == {}


def test_an_exception_in_training_ends_the_run_failed_keeping_what_was_logged(hf: Any) -> None:
    from ml_dash.integrations.transformers import MLDashCallback

    trainer = tiny_trainer(hf, MLDashCallback(prefix=PREFIX), fail_at_step=5)
    with pytest.raises(FloatingPointError):
        trainer.train()

    document = run_document(RUN)
    assert document["status"] == "FAILED"
    assert document["status_reason"] == "FloatingPointError: loss diverged at step 5"
    assert [row["step"] for row in rows_of(RUN, "train")] == [2, 4]
    assert [row["step"] for row in rows_of(RUN, "eval")] == [4]


def test_an_evaluation_after_training_continues_the_run_and_ends_it_again(hf: Any) -> None:
    from ml_dash.integrations.transformers import MLDashCallback

    callback = MLDashCallback(prefix=PREFIX)
    trainer = tiny_trainer(hf, callback)
    trainer.train()
    trainer.evaluate()

    assert callback.experiment.status.value == "COMPLETED" and run_document(RUN)["status"] == "COMPLETED"
    assert [row["step"] for row in rows_of(RUN, "eval")] == [4, 8, 8]


def test_only_the_main_process_writes_the_run(hf: Any) -> None:
    from ml_dash.integrations.transformers import MLDashCallback

    trainer = tiny_trainer(hf, MLDashCallback(prefix=PREFIX))
    trainer.is_world_process_zero = lambda: False  # what another rank of a distributed training answers
    trainer.train()
    assert not RUN.exists()


def test_a_remote_run_lands_on_the_server(hf: Any, server: Server, tmp_path: Path) -> None:
    from ml_dash.integrations.transformers import MLDashCallback

    key = server.key("alice")
    callback = MLDashCallback(prefix=PREFIX, remote=server.url, api_key=key, local_path=tmp_path / "trainer-disk")
    tiny_trainer(hf, callback).train()

    reader = Experiment(prefix=PREFIX, remote=server.url, api_key=key, local_path=tmp_path / "elsewhere")
    assert [row["data"]["step"] for row in reader.metrics("train").read(limit=None)] == [2, 4, 6, 8, 8]
    assert [row["data"]["step"] for row in reader.metrics("eval").read(limit=None)] == [4, 8]
    assert reader.params.get()["learning_rate"] == 1e-3
    status, document = server.document(PREFIX, key=key)
    assert status == 200 and document["status"] == "COMPLETED"


def test_a_wrong_prefix_fails_when_the_callback_is_built(hf: Any) -> None:
    from ml_dash.integrations.transformers import MLDashCallback

    with pytest.raises(ValueError, match="prefix"):
        MLDashCallback(prefix="glue-run")
