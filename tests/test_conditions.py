"""The run table's condition language (ml_dash/format/conditions.py): what the web UI's conditions.js and
runs.js's ``holds`` do, in Python, for the server's ``where=`` and ``search_runs(filter=)``."""

from __future__ import annotations

import math

import pytest

from ml_dash.format.conditions import Condition, ConditionError, holds, js_number, js_string, matches, parse_conditions

PARAMS = {"lr": 0.001, "opt": "adam", "depth": 8, "amp": True, "note": None, "train/odd": 3, "tags": ["a"]}
LATEST = {"train": {"loss": 0.25, "step": 99}, "eval": {"acc": math.nan}}


def test_conditions_are_read_as_the_ui_reads_them() -> None:
    assert parse_conditions("lr<0.01, model.depth >= 8 ,optimizer = adam") == [
        Condition("lr", "<", "0.01"), Condition("model.depth", ">=", "8"), Condition("optimizer", "=", "adam")]
    assert parse_conditions("name = my run") == [Condition("name", "=", "my run")]
    assert parse_conditions("a != b") == [Condition("a", "!=", "b")]
    assert parse_conditions(None) == [] and parse_conditions("  ") == []
    assert parse_conditions("a < 1,, b > 2,") == [Condition("a", "<", "1"), Condition("b", ">", "2")]  # as the UI


@pytest.mark.parametrize("text, named", [
    ("lr", "'lr'"), ("lr < 0.1, depth", "'depth'"), ("< 3", "'< 3'"),
    ("lr < 0.1\n", None), ("lr =", "'lr ='")])
def test_a_part_that_is_no_condition_is_an_error_naming_it(text: str, named: str | None) -> None:
    if named is None:  # a trailing newline is trimmed with the part, as the UI trims it
        assert parse_conditions(text) == [Condition("lr", "<", "0.1")]
        return
    with pytest.raises(ConditionError, match="not a condition") as err:
        parse_conditions(text)
    assert named in str(err.value)


def test_a_filter_too_long_or_of_too_many_conditions_is_refused() -> None:
    with pytest.raises(ConditionError, match="at most 4096 characters"):
        parse_conditions("a = " + "x" * 5000)
    with pytest.raises(ConditionError, match="at most 64 conditions"):
        parse_conditions(",".join(f"p{i} = 1" for i in range(65)))


@pytest.mark.parametrize("text, expected", [
    ("lr < 0.01", True), ("lr >= 0.01", False), ("lr = 1e-3", True), ("lr = 0.0010", True),
    ("depth > 0x4", True), ("depth = 8.0", True), ("depth != 8", False),
    ("opt = adam", True), ("opt != sgd", True), ("opt < b", True),  # text compares as text
    ("amp = true", True), ("amp = True", False), ("note = null", True),  # as JavaScript spells them
    ("tags = [\"a\"]", True),
    ("train/loss < 0.5", True), ("metrics.train/loss < 0.5", True), ("params.lr < 0.01", True),
    ("train/step = 99", True), ("train/odd = 3", True),  # a param named with "/" comes first
    ("eval/acc < 1", False), ("eval/acc != 1", True),  # NaN compares as JavaScript's NaN does
    ("missing = 1", False), ("missing != 1", False), ("train/missing != 1", False), ("nothing/x < 1", False),
    ("lr < Infinity", True), ("lr > -Infinity", True), ("depth < 1_000", False),  # "1_000" is no JS number
])
def test_a_condition_holds_as_the_ui_decides(text: str, expected: bool) -> None:
    (condition,) = parse_conditions(text)
    assert holds(condition, PARAMS, LATEST) is expected


def test_every_condition_must_hold() -> None:
    assert matches(parse_conditions("lr < 0.01, train/loss < 0.5"), PARAMS, LATEST)
    assert not matches(parse_conditions("lr < 0.01, train/loss < 0.1"), PARAMS, LATEST)


def test_numbers_and_strings_as_javascript_writes_them() -> None:
    assert [js_number(t) for t in ("1", "-2.5", ".5", "1e3", "0x10", "0b11", "Infinity")] == \
        [1, -2.5, 0.5, 1000, 16, 3, math.inf]
    assert all(math.isnan(js_number(t)) for t in ("inf", "nan", "1_0", "abc", "1e", "--1"))
    assert [js_string(v) for v in (1.0, 0.5, 3, True, None, "x", {"a": 1})] == ["1", "0.5", "3", "true", "null", "x",
                                                                                '{"a":1}']
