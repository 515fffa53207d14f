"""What the Hugging Face callback costs a Trainer per logging step (ml_dash/integrations/transformers.py).

Two figures, in one process on CPU (nothing downloaded):

* ``on_log``   - wall time of ``MLDashCallback.on_log`` for a training row (loss, grad_norm,
                 learning_rate, epoch), N calls into a running local run: the callback's own cost
                 on the training thread (the rows are written by the agent, off it);
* ``start + end`` - the run's start and end (directory, lock, agent; the final write and fsync), once
                 per training, in the ``Trainer`` figure below;
* ``Trainer``  - a tiny BERT trained for S steps with ``logging_steps=1`` (every step a logging
                 step), with and without the callback, alternated R times (the fastest of each kept):
                 the difference per step, against the Trainer's own time per step. A wall-clock A/B:
                 on a loaded machine its sign is noise (-31% to +9% seen at a load of 9 to 12 on 2
                 cores), and the ``on_log`` figure is the one to read.

Usage::

    python benchmarks/integrations.py [--n 20000] [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ML_DASH_QUIET", "1")  # no start line per run in the table


def on_log_cost(n: int) -> tuple[float, float]:
    """Microseconds per ``on_log`` call, and milliseconds the run's start and end took (once per training)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from ml_dash.integrations.transformers import MLDashCallback

    with tempfile.TemporaryDirectory() as root:
        callback = MLDashCallback(prefix="bench/hf/on-log", local_path=root)
        began = time.perf_counter()
        callback._binding.start()
        start_s = time.perf_counter() - began
        args = TrainingArguments(output_dir=root, report_to="none", use_cpu=True)
        state, control = TrainerState(), TrainerControl()
        started = time.perf_counter()
        for step in range(n):
            state.global_step = step
            logs = {"loss": 1.0 / (step + 1), "grad_norm": 0.5, "learning_rate": 1e-3, "epoch": step / 1000}
            callback.on_log(args, state, control, logs=logs)
        elapsed = time.perf_counter() - started
        began = time.perf_counter()
        callback._binding.end(callback.experiment.status.COMPLETED)  # writes and fsyncs the N rows too
        end_s = time.perf_counter() - began
    return elapsed / n * 1e6, (start_s + end_s) * 1e3


def trainer_seconds(steps: int, with_callback: bool, root: str) -> float:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from ml_dash.integrations.transformers import MLDashCallback

    torch.manual_seed(0)
    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, max_position_embeddings=8, num_labels=2)
    data = [{"input_ids": torch.randint(0, 16, (6,)), "labels": i % 2} for i in range(steps)]
    args = TrainingArguments(output_dir=root, per_device_train_batch_size=1, max_steps=steps, logging_steps=1,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    callbacks: list[Any] = [MLDashCallback(prefix=f"bench/hf/t{time.monotonic_ns()}", local_path=root)] \
        if with_callback else []
    trainer = Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=data, callbacks=callbacks)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    import logging

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    per_call_us, start_end_ms = on_log_cost(options.n)
    best = {True: float("inf"), False: float("inf")}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(options.repeats):
            for with_callback in (False, True):
                best[with_callback] = min(best[with_callback], trainer_seconds(options.steps, with_callback, root))
    per_step_ms = best[False] / options.steps * 1e3
    added_ms = (best[True] - best[False]) / options.steps * 1e3
    print(f"{'what':<34} {'figure':>12}")
    print(f"{'on_log, per call (N=' + format(options.n, ',') + ')':<34} {per_call_us:>9.1f} us")
    print(f"{'run start + end (once per train())':<34} {start_end_ms:>9.1f} ms")
    print(f"{'Trainer step, no callback':<34} {per_step_ms:>9.2f} ms")
    print(f"{'Trainer step, with MLDashCallback':<34} {best[True] / options.steps * 1e3:>9.2f} ms")
    print(f"{'difference per logging step':<34} {added_ms:>9.2f} ms ({added_ms / per_step_ms:+.1%})")


if __name__ == "__main__":
    main()
