"""What every framework integration shares (ml_dash/integrations/__init__.py and _values.py): configuration
objects made into parameters, framework logs into metric rows, and what cannot be recorded counted by
reason, said once, never raised into the training."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest

from ml_dash.integrations import RunBinding
from ml_dash.integrations._values import MAX_PARAM_CHARS, REDACTED, param_values

from .integration_runs import params_of, rows_of, run_document, saved_files

PREFIX = "alice/proj/run-1"
RUN = Path(".dash") / PREFIX


class Mode(enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Optimizer:
    name: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)


class Config:
    """A framework's config object: its own to_dict() (which masks what the fields hold) wins."""

    api_key = "sk-live-secret"

    def to_dict(self) -> dict[str, Any]:
        return {"hidden_size": 8, "api_key": "<API_KEY>", "layers": [{"kind": "attention", "heads": 2}]}


def scheduler(step: int) -> float:
    return 1.0


def test_configuration_objects_become_flat_json_parameters_with_the_rest_counted() -> None:
    values = {
        "lr": 1e-3, "mode": Mode.FAST, "output_dir": Path("/runs/out"), "optimizer": Optimizer(),
        "model": Config(), "args": argparse.Namespace(seed=7), "schedule": scheduler, "huge": 2**70,
        "tags": {"b", "a"}, "prompt": "x" * (MAX_PARAM_CHARS + 1), "db_password": "hunter2", "": 1, "a..b": 2,
        "empty": {},
    }
    flat, tally = param_values(values)

    assert flat == {
        "lr": 1e-3, "mode": "fast", "output_dir": "/runs/out", "optimizer.name": "adamw",
        "optimizer.betas": [0.9, 0.999], "model.hidden_size": 8, "model.api_key": "<API_KEY>",
        "model.layers": [{"kind": "attention", "heads": 2}], "args.seed": 7,
        "schedule": f"{__name__}.scheduler", "huge": str(2**70), "tags": ["a", "b"], "db_password": REDACTED,
        "empty": {},
    }
    assert dict(tally.counts) == {"stringified": 3, "redacted": 1, "skipped: not a parameter name": 2,
                                  f"skipped: text longer than {MAX_PARAM_CHARS:,} characters": 1}
    assert tally.examples["stringified"] == ["output_dir", "schedule", "huge"]


def test_a_binding_records_nothing_before_its_run_starts(workdir: Path) -> None:
    binding = RunBinding(PREFIX, {})
    binding.log_params({"lr": 0.1})
    binding.log_metrics("train", {"loss": 1.0}, step=0)
    assert not binding.running and not RUN.exists()


def test_a_wrong_prefix_or_option_fails_when_the_integration_is_built(workdir: Path) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RunBinding("no-slashes", {})
    with pytest.raises(TypeError, match="unexpected keyword"):
        RunBinding(PREFIX, {"remote_url": "http://x"})


def test_metric_fields_that_are_no_scalars_are_skipped_counted_and_said_once(
        workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    binding = RunBinding(PREFIX, {})
    binding.start()
    with caplog.at_level(logging.WARNING, logger="ml_dash.integrations"):
        for step in range(3):
            binding.log_metrics("train", {"loss": 0.5, "confusion": [[1, 0], [0, 1]], "_ts": 1.0}, step=step)
        binding.log_metrics("train", {"histogram": [1, 2]}, step=3)  # nothing left: no row
    binding.end(binding.experiment.status.COMPLETED)

    assert rows_of(RUN, "train") == [{"loss": 0.5, "step": step} for step in range(3)]
    assert dict(binding.dropped.counts) == {"skipped: not a scalar": 4, "skipped: not a metric field name": 3}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "confusion" in warnings[0] and "histogram" in warnings[1]
    assert run_document(RUN)["status"] == "COMPLETED"


def test_parameters_past_the_document_size_keep_what_fits(workdir: Path) -> None:
    binding = RunBinding(PREFIX, {})
    binding.start()
    big = {f"p{i}": "x" * 9_000 for i in range(130)}  # 1.17 MB as JSON: over the 1 MiB document
    binding.log_params({"lr": 0.1, **big})
    binding.end(binding.experiment.status.COMPLETED)

    params = params_of(RUN)
    assert params["lr"] == 0.1 and 100 < len(params) < 131
    assert sum(binding.dropped.counts.values()) == 131 - len(params)


def test_a_file_that_cannot_be_saved_is_said_not_raised(workdir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "epoch=3-step=40.ckpt"
    checkpoint.write_bytes(b"weights")
    binding = RunBinding(PREFIX, {})
    binding.start()
    assert binding.save_file(checkpoint, "checkpoints") is True
    assert binding.save_file(tmp_path / "gone.ckpt", "checkpoints") is False
    binding.end(binding.experiment.status.COMPLETED)

    assert list(saved_files(RUN)) == ["checkpoints/epoch_3-step_40.ckpt"]
    assert dict(binding.dropped.counts) == {"skipped: file not saved": 1}


def test_a_binding_pickles_to_its_prefix_and_arguments_for_another_process(workdir: Path) -> None:
    binding = RunBinding(PREFIX, {"tags": ["spawned"]})
    binding.start()
    copy = pickle.loads(pickle.dumps(binding))  # what Lightning's ddp_spawn does to a logger
    binding.end(binding.experiment.status.COMPLETED)

    assert copy.experiment.prefix == PREFIX and copy.experiment.tags == ["spawned"]
    assert copy.experiment.status.value == "CREATED" and not copy.running
