"""Each field's latest value of a metric stream (ml_dash/format/latest.py): the writer keeps it in the
stream's metadata.json, so the local run table has a field logged only early in a long run, which the
end of the stream's file (the last 256 KiB) does not hold."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ml_dash
from ml_dash import Experiment
from ml_dash.format.latest import latest_from_document, latest_part, merge_latest

from .server_process import Server

pd = pytest.importorskip("pandas")

PROJECT = "alice/latest"
#: More rows than the last 256 KiB of the stream's file hold (a row is about 95 bytes).
PAST_THE_TAIL = 6_000


def log_early_then_many(exp: Experiment) -> None:
    """``early`` and ``gone`` logged once at the start, NaN once; then many rows of ``loss`` only."""
    train = exp.metrics("train")
    train.log(early=1.5, gone=math.nan, loss=100.0)
    for step in range(PAST_THE_TAIL):
        train.log(loss=float(step))


def metadata(root: Path, name: str, metric: str = "train") -> dict[str, Any]:
    return json.loads((root / PROJECT / name / "metrics" / metric / "metadata.json").read_text())


# -- the merge, against the plain model (one dict.update per row, in order) ---------------------------
rows_strategy = st.lists(st.dictionaries(st.sampled_from("abcdef"), st.integers(), max_size=4), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows_strategy, max_size=6))
def test_merging_chunks_gives_each_fields_last_value_as_a_row_by_row_update_does(chunks: list[list[dict]]) -> None:
    model: dict[str, int] = {}
    merged: dict[str, int] = {}
    for chunk in chunks:
        for row in chunk:
            model.update(row)
        merge_latest(merged, chunk)
    assert merged == model


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1, True, None, "text"])
def test_the_documents_part_restores_every_value_the_stream_carries(value: Any) -> None:
    part = json.loads(json.dumps(latest_part({"x": value, "y": 2.0}), allow_nan=False))
    restored = latest_from_document({"latest": part})
    assert restored["y"] == 2.0
    assert (math.isnan(restored["x"]) if isinstance(value, float) and math.isnan(value) else restored["x"] == value)
    assert type(restored["x"]) is type(value)


def test_a_long_text_is_not_kept_in_the_document_and_a_short_one_is() -> None:
    kept = latest_from_document({"latest": latest_part({"short": "x" * 1024, "long": "y" * 1025, "n": 1})})
    assert kept == {"short": "x" * 1024, "n": 1}


@pytest.mark.parametrize("document", [None, [], {}, {"latest": None}, {"latest": {"data": [1]}},
                                      {"latest": {"data": {"x": "NaN"}, "nonFinite": [["x"], 3]}},
                                      {"latest": {"data": {"x": 1}, "nonFinite": "x"}}],
                         ids=["none", "list", "empty", "null part", "data not a map", "names not text", "names text"])
def test_a_foreign_or_damaged_document_gives_what_it_can_and_no_error(document: Any) -> None:
    got = latest_from_document(document)
    assert isinstance(got, dict)
    if isinstance(document, dict) and isinstance((document.get("latest") or {}).get("data"), dict):
        assert got == document["latest"]["data"]  # names that are not text restore nothing


# -- the run table, local -------------------------------------------------------------------------
def test_a_field_logged_only_early_in_a_long_stream_is_in_the_local_run_table(tmp_path: Path) -> None:
    with Experiment(prefix=f"{PROJECT}/long", local_path=tmp_path / PROJECT / "long").run as exp:
        log_early_then_many(exp)
    data = tmp_path / PROJECT / "long" / "metrics" / "train" / "data.jsonl"
    assert b'"early"' not in data.read_bytes()[-256 * 1024:]  # the case: the end of the file lacks it
    runs = ml_dash.search_runs(tmp_path, project=PROJECT)
    assert runs["metrics.train/early"].tolist() == [1.5]
    assert math.isnan(runs["metrics.train/gone"].iloc[0])
    assert runs["metrics.train/loss"].tolist() == [PAST_THE_TAIL - 1.0]
    assert metadata(tmp_path, "long")["totalDataPoints"] == PAST_THE_TAIL + 1  # the upstream fields stay


def test_the_files_tail_wins_over_a_document_that_lags_it(tmp_path: Path) -> None:
    with Experiment(prefix=f"{PROJECT}/lag", local_path=tmp_path / PROJECT / "lag").run as exp:
        exp.metrics("train").log(loss=1.0, early=2.0)
    path = tmp_path / PROJECT / "lag" / "metrics" / "train" / "metadata.json"
    doc = json.loads(path.read_text())
    doc["latest"]["data"]["loss"] = 999.0  # as if the document were written before the file's last row
    path.write_text(json.dumps(doc))
    runs = ml_dash.search_runs(tmp_path, project=PROJECT)
    assert runs["metrics.train/loss"].tolist() == [1.0] and runs["metrics.train/early"].tolist() == [2.0]


def test_a_resumed_run_keeps_the_fields_it_logged_before(tmp_path: Path) -> None:
    directory = tmp_path / PROJECT / "resumed"
    with Experiment(prefix=f"{PROJECT}/resumed", local_path=directory).run as exp:
        log_early_then_many(exp)
    with Experiment(prefix=f"{PROJECT}/resumed", local_path=directory).run as exp:
        exp.metrics("train").log(later=3.0)
        for step in range(PAST_THE_TAIL):
            exp.metrics("train").log(loss=-float(step))
    runs = ml_dash.search_runs(tmp_path, project=PROJECT)
    row = runs.iloc[0]
    assert (row["metrics.train/early"], row["metrics.train/later"]) == (1.5, 3.0)
    assert row["metrics.train/loss"] == -(PAST_THE_TAIL - 1.0)


def test_a_pulled_run_has_the_fields_its_server_holds(tmp_path: Path, server: Server) -> None:
    from ml_dash.cli import main

    key = server.key("alice")
    with Experiment(prefix=f"{PROJECT}/up", local_path=tmp_path / "up", remote=server.url, api_key=key).run as exp:
        log_early_then_many(exp)
    pulled = tmp_path / "pulled"
    assert main(["pull", f"{PROJECT}/up", "--remote", server.url, "--api-key", key, "--to", str(pulled)]) == 0
    runs = ml_dash.search_runs(pulled, project=PROJECT)
    assert runs["metrics.train/early"].tolist() == [1.5] and math.isnan(runs["metrics.train/gone"].iloc[0])
    assert runs["metrics.train/loss"].tolist() == [PAST_THE_TAIL - 1.0]
