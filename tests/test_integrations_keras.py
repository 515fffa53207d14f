"""The Keras 3 callback (ml_dash/integrations/keras.py), with real Keras on its torch backend on CPU: a
two-layer model built in code, 32 examples, 2 epochs of 4 batches."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import python_script
from .integration_runs import one_torch_thread, params_of, rows_of, run_document

# the backend the tests choose; and importing keras runs `uname -p` (platform.processor()): a process
pytestmark = [pytest.mark.needs_torch, pytest.mark.integration]

PREFIX = "alice/keras/run-1"
RUN = Path(".dash") / PREFIX
#: A fit of a tiny model (the script of the tests, in this process and in a fresh one).
FIT = textwrap.dedent("""
    import keras, numpy as np
    from ml_dash.integrations.keras import MLDashCallback

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    x = np.random.rand(32, 3).astype("float32")
    y = np.random.rand(32, 1).astype("float32")
""")


@pytest.fixture
def keras_fit(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The names of :data:`FIT`, run in this process with ``KERAS_BACKEND=torch`` (torch on one thread)."""
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend before this test")
    names: dict[str, Any] = {}
    with one_torch_thread():
        exec(FIT, names)  # noqa: S102 - our own script: the same fit in this process and in a fresh one
        yield names


def test_a_fit_records_optimizer_and_model_params_epochs_and_every_nth_batch(keras_fit: dict[str, Any]) -> None:
    model, x, y = keras_fit["model"], keras_fit["x"], keras_fit["y"]
    callback = keras_fit["MLDashCallback"](prefix=PREFIX, log_every_n_batches=2)
    model.fit(x, y, epochs=2, batch_size=8, validation_data=(x[:8], y[:8]), callbacks=[callback], verbose=0)

    assert run_document(RUN)["status"] == "COMPLETED"
    params = params_of(RUN)
    assert params["optimizer.name"] == "adam" and params["optimizer.learning_rate"] == pytest.approx(0.01)
    assert (params["fit.epochs"], params["fit.steps"]) == (2, 4)
    assert (params["model.name"], params["model.num_parameters"]) == ("sequential", 21)
    batches = rows_of(RUN, "batch")
    assert [(row["step"], row["epoch"]) for row in batches] == [(2, 0), (4, 0), (6, 1), (8, 1)]
    assert all({"loss", "mae"} <= set(row) for row in batches)
    epochs = rows_of(RUN, "epoch")
    assert [(row["step"], row["epoch"]) for row in epochs] == [(4, 0), (8, 1)]
    assert all({"loss", "mae", "val_loss", "val_mae"} <= set(row) for row in epochs)
    assert epochs[1]["loss"] == pytest.approx(batches[3]["loss"])  # the epoch's value is its last running mean
    assert callback.dropped == {}


def test_a_fit_that_raises_ends_the_run_failed_when_the_script_dies_of_it(workdir: Path) -> None:
    script = FIT + textwrap.dedent(f"""
        class Diverge(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch == 2:
                    raise FloatingPointError("loss diverged at batch 2")

        callback = MLDashCallback(prefix={PREFIX!r}, log_every_n_batches=1)
        model.fit(x, y, epochs=2, batch_size=8, callbacks=[callback, Diverge()], verbose=0)
    """)
    done = python_script(script, cwd=workdir, env={"KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}, timeout=120)

    assert done.returncode == 1 and "FloatingPointError: loss diverged at batch 2" in done.stderr
    document = run_document(workdir / RUN)
    assert document["status"] == "FAILED" and document["status_reason"] == "FloatingPointError: loss diverged at batch 2"
    assert [row["step"] for row in rows_of(workdir / RUN, "batch")] == [1, 2, 3]


def test_wrong_arguments_fail_when_the_callback_is_built(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    pytest.importorskip("keras")
    from ml_dash.integrations.keras import MLDashCallback

    with pytest.raises(ValueError, match="log_every_n_batches=-1 must be an int >= 0"):
        MLDashCallback(prefix=PREFIX, log_every_n_batches=-1)
    with pytest.raises(ValueError, match="prefix"):
        MLDashCallback(prefix="keras-run")
