"""exp.log / exp.logs and exp.params."""

from __future__ import annotations

import math

import pytest

from ml_dash import Experiment

from .conftest import read_json, read_jsonl


def test_log_lines_have_the_upstream_shape(exp: Experiment) -> None:
    exp.log("plain")
    exp.log("with metadata", level="warn", metadata={"epoch": 3}, step=7)
    exp.logs.info("info")
    exp.logs.warning("warn")
    exp.logs.error("error", code=2)
    exp.logs.debug("debug")
    exp.logs.fatal("fatal")
    exp.flush()
    lines = read_jsonl(exp.directory / "logs.jsonl")
    assert [line["sequenceNumber"] for line in lines] == list(range(7))
    assert [line["level"] for line in lines] == ["info", "warn", "info", "warn", "error", "debug", "fatal"]
    assert "metadata" not in lines[0]
    assert lines[1]["metadata"] == {"epoch": 3, "step": 7}
    assert lines[4]["metadata"] == {"code": 2}
    assert lines[0]["timestamp"].endswith("Z")


def test_logs_read_filters_by_level(exp: Experiment) -> None:
    exp.log("a")
    exp.log("b", level="error")
    assert [r["message"] for r in exp.logs.read(level="error")] == ["b"]


def test_warning_alias_is_accepted(exp: Experiment) -> None:
    exp.log("w", level="WARNING")
    assert exp.logs.read()[0]["level"] == "warn"


def test_unknown_level_is_rejected(exp: Experiment) -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        exp.log("x", level="loud")


def test_non_string_message_is_rejected(exp: Experiment) -> None:
    with pytest.raises(TypeError, match="message must be a str"):
        exp.log(42)  # type: ignore[arg-type]


def test_unserialisable_log_metadata_fails_at_the_call_and_loses_nothing(exp: Experiment) -> None:
    exp.log("kept")
    with pytest.raises(TypeError, match=r"log metadata\['obj'\] has unsupported type object"):
        exp.log("bad", obj=object())
    exp.log("also kept")
    assert [r["message"] for r in exp.logs.read()] == ["kept", "also kept"]


def test_non_finite_log_metadata_stays_valid_json(exp: Experiment) -> None:
    exp.log("nan", value=math.nan, top=math.inf)
    exp.flush()
    line = read_jsonl(exp.directory / "logs.jsonl")[0]
    assert line["metadata"] == {"value": "NaN", "top": "Infinity"}


def test_params_merge_and_flatten(exp: Experiment) -> None:
    exp.params.set(batch_size=64, model={"lr": 0.001, "layers": [1, 2]})
    exp.params.set(model={"lr": 0.01})
    assert exp.params.get() == {"batch_size": 64, "model.lr": 0.01, "model.layers": [1, 2]}
    assert exp.params.get(flatten=False) == {"batch_size": 64, "model": {"lr": 0.01, "layers": [1, 2]}}
    exp.flush()
    doc = read_json(exp.directory / "parameters.json")
    assert doc["version"] == 2
    assert doc["data"] == {"batch_size": 64, "model.lr": 0.01, "model.layers": [1, 2]}
    assert doc["createdAt"] <= doc["updatedAt"]


def test_params_accept_a_dict_and_keywords(exp: Experiment) -> None:
    exp.params.set({"a": 1}, b=2)
    assert exp.params.get() == {"a": 1, "b": 2}


def test_params_get_returns_a_copy(exp: Experiment) -> None:
    exp.params.set(layers=[1, 2])
    exp.params.get()["layers"].append(3)
    assert exp.params.get() == {"layers": [1, 2]}


def test_params_snapshot_the_value_at_the_call(exp: Experiment) -> None:
    layers = [1, 2]
    exp.params.set(layers=layers)
    layers.append(3)
    exp.flush()
    assert read_json(exp.directory / "parameters.json")["data"] == {"layers": [1, 2]}


def test_unserialisable_params_fail_at_the_call_and_keep_earlier_ones(exp: Experiment) -> None:
    exp.params.set(lr=0.1)
    with pytest.raises(TypeError, match="parameter 'model' has unsupported type object"):
        exp.params.set(model=object())
    assert exp.params.get() == {"lr": 0.1}


@pytest.mark.parametrize("name", ["", ".hidden", "trailing.", "a..b"])
def test_invalid_parameter_names_are_rejected(exp: Experiment, name: str) -> None:
    with pytest.raises(ValueError, match="invalid parameter name"):
        exp.params.set(**{name: 1})
