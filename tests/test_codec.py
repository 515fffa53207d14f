"""The agent's JSON-lines codec: bulk encoding, NaN marking, hostile strings."""

from __future__ import annotations

import json
import math

import numpy as np

from ml_dash.format.jsonlines import (
    encode_metric_chunk,
    last_record,
    read_json,
    restore_metric_row,
    row_chunk_encoder,
)


def _lines(blob: bytes) -> list[dict]:
    assert blob.endswith(b"\n")
    return [json.loads(line) for line in blob.decode().splitlines()]


def test_metric_chunk_lines_have_the_upstream_shape() -> None:
    blob = encode_metric_chunk([{"loss": 0.5, "_ts": 1.0}, {"loss": 0.25, "_ts": 2.0}], 7, "2026-01-01T00:00:00.000000Z")
    assert _lines(blob) == [
        {"index": 7, "data": {"loss": 0.5, "_ts": 1.0}, "createdAt": "2026-01-01T00:00:00.000000Z"},
        {"index": 8, "data": {"loss": 0.25, "_ts": 2.0}, "createdAt": "2026-01-01T00:00:00.000000Z"},
    ]


def test_strings_that_look_like_json_structure_stay_inside_their_value() -> None:
    hostile = '},{"index":99,"data":{"x":null}}\n{"u":"null"'
    rows = _lines(encode_metric_chunk([{"s": hostile, "_ts": 1.0}, {"s": "ok", "_ts": 2.0}], 0, "c"))
    assert [r["data"]["s"] for r in rows] == [hostile, "ok"] and [r["index"] for r in rows] == [0, 1]


def test_non_finite_values_are_marked_and_restored_exactly() -> None:
    blob = encode_metric_chunk([{"a": math.nan, "b": -math.inf, "c": None, "d": "NaN", "e": np.float32("inf"), "_ts": 1.0}], 0, "c")
    row = _lines(blob)[0]
    assert row["nonFinite"] == ["a", "b", "e"] and row["data"]["c"] is None
    restored = restore_metric_row(row)["data"]
    assert math.isnan(restored["a"]) and restored["b"] == -math.inf and restored["e"] == math.inf
    assert restored["d"] == "NaN"


def test_general_encoder_builds_one_record_per_event() -> None:
    encode = row_chunk_encoder(lambda i, ts, payload, c: {"seq": i, "ts": ts, "p": payload})
    assert _lines(encode([(1.0, "a"), (2.0, {"n": math.nan})], 5, "c")) == [
        {"seq": 5, "ts": 1.0, "p": "a"}, {"seq": 6, "ts": 2.0, "p": {"n": "NaN"}},
    ]


def test_last_record_reads_the_tail_of_a_large_file(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    with open(path, "w") as f:
        f.writelines(json.dumps({"index": i, "pad": "x" * 20}) + "\n" for i in range(50000))
        f.write('{"index": 50000, "pa')
    assert last_record(path, "index")["index"] == 49999
    assert last_record(tmp_path / "missing.jsonl", "index") is None


def test_read_json_of_missing_or_corrupt_documents_is_none(tmp_path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert read_json(tmp_path / "bad.json") is None and read_json(tmp_path / "none.json") is None
