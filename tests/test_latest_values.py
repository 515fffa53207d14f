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
from ml_dash.format import latest as latest_module
from ml_dash.format.latest import (
    latest_from_document,
    latest_part,
    merge_latest,
    non_finite_fields,
    restore_non_finite,
    row_values,
)

from .app_server import AppServer
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
    part = json.loads(json.dumps(latest_part({"x": value, "y": 2.0}, 0, 10), allow_nan=False))
    kept = latest_from_document({"latest": part})
    assert kept is not None and (kept.start, kept.end) == (0, 10) and kept.values["y"] == 2.0
    restored = kept.values["x"]
    assert (math.isnan(restored) if isinstance(value, float) and math.isnan(value) else restored == value)
    assert type(restored) is type(value)


def test_a_long_text_is_not_kept_in_the_document_and_a_short_one_is() -> None:
    kept = latest_from_document({"latest": latest_part({"short": "x" * 1024, "long": "y" * 1025, "n": 1}, 0, 1)})
    assert kept is not None and kept.values == {"short": "x" * 1024, "n": 1}


PART = {"data": {"x": 1}, "from": 0, "to": 5}


@pytest.mark.parametrize("document", [None, [], {}, {"latest": None}, {"latest": {**PART, "data": [1]}},
                                      {"latest": {**PART, "from": 6}}, {"latest": {**PART, "to": True}},
                                      {"latest": {"data": {"x": 1}}}],
                         ids=["none", "list", "empty", "null part", "data not a map", "from past to", "to not an int",
                              "no range (an earlier writer)"])
def test_a_document_without_a_part_it_can_trust_gives_none(document: Any) -> None:
    assert latest_from_document(document) is None


@pytest.mark.parametrize("row", [None, [], {"data": [1]}, {"data": {"x": "NaN"}, "nonFinite": [["x"]]},
                                 {"data": {"x": [1]}, "nonFinite": ["x"]}])
def test_a_record_that_is_no_metric_row_gives_no_values(row: Any) -> None:
    """From a damaged file or a hostile server (ml-dash pull merges the rows it fetches): never a crash."""
    assert row_values(row) is None


def test_a_metric_rows_values_come_back_with_their_non_finite_floats() -> None:
    values = row_values({"data": {"x": "NaN", "y": "NaN", "z": 1}, "nonFinite": ["x"]})
    assert values is not None and math.isnan(values["x"]) and values["y"] == "NaN" and values["z"] == 1


def test_a_damaged_parts_values_are_kept_only_where_they_are_scalars_and_names_restore_only_text() -> None:
    kept = latest_from_document({"latest": {**PART, "data": {"a": [1, 2], "b": {"c": 1}, "n": "NaN", "m": "NaN",
                                                             "s": "ok"}, "nonFinite": [["a"], "n", 3, {"x": 1}]}})
    assert kept is not None and set(kept.values) == {"n", "m", "s"}
    assert math.isnan(kept.values["n"]) and kept.values["m"] == "NaN" and kept.values["s"] == "ok"


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


def append_rows(data: Path, rows: list[dict[str, Any]]) -> None:
    """Rows appended to a stream's file as a writer does, after its last metadata.json: a writer killed
    before its next document, or an earlier version that kept no part."""
    with open(data, "rb") as f:
        start = sum(1 for _ in f)
    with open(data, "ab") as f:
        f.write(b"".join(json.dumps({"index": start + i, "data": row, "createdAt": "2026-12-07T00:00:00Z"}).encode()
                         + b"\n" for i, row in enumerate(rows)))


def test_rows_written_after_the_document_win_however_many_they_are(tmp_path: Path) -> None:
    directory = tmp_path / PROJECT / "killed"
    with Experiment(prefix=f"{PROJECT}/killed", local_path=directory).run as exp:
        exp.metrics("train").log(a=1.0, early=2.0)
    data = directory / "metrics/train/data.jsonl"
    append_rows(data, [{"a": 2.0}] + [{"b": float(i)} for i in range(PAST_THE_TAIL)])  # a=2 is past the tail
    assert b'"a"' not in data.read_bytes()[-256 * 1024:]
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert (row["metrics.train/a"], row["metrics.train/early"], row["metrics.train/b"]) == (2.0, 2.0, PAST_THE_TAIL - 1)
    # resumed, the writer folds those rows into its part: the value stays right after it writes again
    with Experiment(prefix=f"{PROJECT}/killed", local_path=directory).run as exp:
        exp.metrics("train").log(c=3.0)
    part = metadata(tmp_path, "killed")["latest"]
    assert (part["from"], part["to"]) == (0, data.stat().st_size) and part["data"]["a"] == 2.0
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert (row["metrics.train/a"], row["metrics.train/c"]) == (2.0, 3.0)


def _one_row_run(root: Path, name: str, monkeypatch: pytest.MonkeyPatch, limit: int, **values: float) -> Path:
    """A run of one row of ``values`` under ``root`` with the catch-up limit at ``limit``: its stream's file."""
    monkeypatch.setattr(latest_module, "CATCH_UP_BYTES", limit)
    directory = root / PROJECT / name
    with Experiment(prefix=f"{PROJECT}/{name}", local_path=directory).run as exp:
        exp.metrics("train").log(**values)
    return directory / "metrics/train/data.jsonl"


def test_a_backlog_of_rows_past_the_document_is_read_only_at_its_end_and_no_stale_value_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 22: a resumed run whose file holds more rows past its document than a reader reads (64 MiB; 1 MiB
    here, and 3 MiB of rows; in real life a writer killed long after its last document, gigabytes) reads
    only the last of them, at the first call on the training thread and in the table: what those rows hold,
    and nothing from the old part that they may have replaced (a field of the unread rows shows no value,
    never a stale one). Before, the first call read them all: 30 s for a backlog of 2 GiB."""
    limit = 1024 * 1024
    data = _one_row_run(tmp_path, "backlog", monkeypatch, limit, a=1.0)
    append_rows(data, [{"a": 2.0}] + [{"b": float(i)} for i in range(40_000)])  # about 3 MiB, a=2 first
    assert data.stat().st_size > 2 * limit
    read: list[int] = []
    real = latest_module.latest_in_range

    def counted(path: Path, start: int, end: int) -> dict[str, Any]:
        read.append(end - start)
        return real(path, start, end)

    monkeypatch.setattr(latest_module, "latest_in_range", counted)
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]  # the killed run's table
    assert row["metrics.train/b"] == 39_999.0 and row.get("metrics.train/a") != 1.0
    with Experiment(prefix=f"{PROJECT}/backlog", local_path=tmp_path / PROJECT / "backlog").run as exp:
        exp.metrics("train").log(c=3.0)
    assert read and max(read) <= limit, read
    part = metadata(tmp_path, "backlog")["latest"]
    assert 0 < part["from"] and part["to"] == data.stat().st_size and "a" not in part["data"]
    assert data.read_bytes()[part["from"] - 1:part["from"]] == b"\n"  # it starts at a line
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert (row["metrics.train/b"], row["metrics.train/c"]) == (39_999.0, 3.0)
    assert row.get("metrics.train/a") != 1.0


def test_a_fast_live_runs_rows_between_two_documents_keep_its_early_fields_in_the_table(tmp_path: Path) -> None:
    """A live run at 100,000 rows a second writes ~12 MiB between two documents: its table keeps a field
    logged only early (the reader goes on from the part; only past 64 MiB does it start afresh)."""
    directory = tmp_path / PROJECT / "fast"
    with Experiment(prefix=f"{PROJECT}/fast", local_path=directory).run as exp:
        exp.metrics("train").log(early=1.0)
    data = directory / "metrics/train/data.jsonl"
    append_rows(data, [{"b": float(i)} for i in range(150_000)])  # ~12 MiB past the document
    assert data.stat().st_size > 10 * 1024 * 1024
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert (row["metrics.train/early"], row["metrics.train/b"]) == (1.0, 149_999.0)


def test_the_reader_and_a_resumed_writer_agree_past_the_limit_whatever_the_torn_last_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole lines just within the limit past the part, then a torn line that takes the file's size past it:
    the table and the part a resumed writer makes from the same file show the same values."""
    limit = 64 * 1024
    data = _one_row_run(tmp_path, "torn", monkeypatch, limit, early=1.0)
    kept_end = latest_from_document(metadata(tmp_path, "torn")).end  # type: ignore[union-attr]
    rows = 0
    while data.stat().st_size - kept_end < limit - 200:
        append_rows(data, [{"x": float(rows)}])
        rows += 1
    with open(data, "ab") as f:
        f.write(b'{"index": 999999, "data": {"x": ' + b"9" * 400)  # torn: a writer killed mid-line
    document = metadata(tmp_path, "torn")
    table = latest_module.stream_latest(data, document)
    writer = latest_from_document(latest_module.caught_up(document, data))
    assert writer is not None and table == writer.values
    assert (table["early"], table["x"]) == (1.0, float(rows - 1))


def test_a_run_resumed_from_a_version_without_the_part_keeps_what_its_tail_held(tmp_path: Path) -> None:
    directory = tmp_path / PROJECT / "older"
    with Experiment(prefix=f"{PROJECT}/older", local_path=directory).run as exp:
        for step in range(PAST_THE_TAIL):
            exp.metrics("train").log(first=float(step))
        exp.metrics("train").log(late=5.0)
    path = directory / "metrics/train/metadata.json"
    doc = json.loads(path.read_text())
    del doc["latest"]  # as an earlier version wrote it
    path.write_text(json.dumps(doc))
    with Experiment(prefix=f"{PROJECT}/older", local_path=directory).run as exp:
        for step in range(PAST_THE_TAIL):
            exp.metrics("train").log(loss=float(step))
    part = metadata(tmp_path, "older")["latest"]
    assert 0 < part["from"] < part["to"] and "late" not in part["data"]  # what it kept covers the new rows only
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert (row["metrics.train/late"], row["metrics.train/first"], row["metrics.train/loss"]) == (
        5.0, PAST_THE_TAIL - 1.0, PAST_THE_TAIL - 1.0)  # the tail before the part, as before it existed


def test_a_part_over_rows_the_file_no_longer_holds_is_not_trusted(tmp_path: Path) -> None:
    directory = tmp_path / PROJECT / "cut"
    with Experiment(prefix=f"{PROJECT}/cut", local_path=directory).run as exp:
        exp.metrics("train").log(loss=1.0, gone=9.0)
        exp.flush()
        exp.metrics("train").log(loss=2.0)
    data = directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(lines[0])  # cut back to the first row (a copy cut short, say)
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert (row["metrics.train/loss"], row["metrics.train/gone"]) == (1.0, 9.0)  # the file's, not the part's 2.0


@pytest.mark.parametrize("damage", ["directory", "deep", "not json", "list values"])
def test_a_damaged_metadata_document_leaves_the_table_to_the_file(tmp_path: Path, damage: str) -> None:
    directory = tmp_path / PROJECT / "damaged"
    with Experiment(prefix=f"{PROJECT}/damaged", local_path=directory).run as exp:
        exp.metrics("train").log(loss=1.0)
    path = directory / "metrics/train/metadata.json"
    if damage == "directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_text({"deep": "[" * 100_000 + "]" * 100_000, "not json": "{",
                         "list values": json.dumps({"latest": {"data": {"loss": [1], "x": {"y": 1}}, "nonFinite": [
                             "loss", ["x"]], "from": 0, "to": 1}})}[damage])
    row = ml_dash.search_runs(tmp_path, project=PROJECT).iloc[0]
    assert row["metrics.train/loss"] == 1.0


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


# -- the server's table: non-finite floats marked, texts spelled like them left as text ----------------
def test_the_server_marks_which_latest_values_are_non_finite_floats() -> None:
    latest = {"train": {"a": math.nan, "b": "NaN", "c": math.inf, "d": 1.0}, "eval": {"x": "-Infinity"}}
    marks = non_finite_fields(latest)
    assert marks == {"latest_non_finite": {"train": ["a", "c"]}}
    wire = json.loads(json.dumps({"train": {"a": "NaN", "b": "NaN", "c": "Infinity", "d": 1.0}}))
    restored = restore_non_finite(wire["train"], marks["latest_non_finite"]["train"])
    assert math.isnan(restored["a"]) and restored["b"] == "NaN" and restored["c"] == math.inf
    assert restore_non_finite({"x": "-Infinity"}, []) == {"x": "-Infinity"}  # marked nothing: text stays text
    assert restore_non_finite({"x": "-Infinity"}, None) == {"x": -math.inf}  # an older server: every name a float
    assert non_finite_fields({"train": {"d": 1.0}}) == {"latest_non_finite": {}}  # said even when empty


def test_a_text_spelled_like_a_non_finite_float_is_text_in_the_servers_table_as_locally(
        tmp_path: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    with Experiment(prefix=f"{PROJECT}/texts", local_path=tmp_path / "local" / PROJECT / "texts",
                    remote=app_server.url, api_key=key).run as exp:
        exp.metrics("train").log(real=math.nan, text="NaN", inf=-math.inf, word="Infinity")
    remote = ml_dash.search_runs(app_server.url, project=PROJECT, api_key=key).iloc[0]
    local = ml_dash.search_runs(tmp_path / "local", project=PROJECT).iloc[0]
    for row in (remote, local):
        assert math.isnan(row["metrics.train/real"]) and row["metrics.train/inf"] == -math.inf
        assert (row["metrics.train/text"], row["metrics.train/word"]) == ("NaN", "Infinity")
