"""exp.metrics: values, read-back, layout, names and NaN handling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ml_dash import Experiment, RunStateError

from .conftest import read_json, read_jsonl
from .optional import torch, torch_case

pytestmark = pytest.mark.usefixtures("logger_impl")

def test_rows_have_contiguous_indices_and_timestamps(exp: Experiment) -> None:
    for i in range(10):
        exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    rows = exp.metrics("train").read()
    assert [r["index"] for r in rows] == list(range(10))
    assert [r["data"]["step"] for r in rows] == list(range(10))
    stamps = [r["data"]["_ts"] for r in rows]
    assert stamps == sorted(stamps) and all(isinstance(t, float) for t in stamps)
    assert all(r["createdAt"].endswith("Z") for r in rows)


def test_read_includes_what_is_still_buffered(exp: Experiment) -> None:
    exp.metrics("train").log(loss=1.0)
    assert len(exp.metrics("train").read()) == 1  # no explicit flush


def test_read_pages_with_start_index_and_limit(exp: Experiment) -> None:
    for i in range(20):
        exp.metrics("m").log(v=i)
    page = exp.metrics("m").read(start_index=5, limit=3)
    assert [r["data"]["v"] for r in page] == [5, 6, 7]


def test_every_supported_value_type_round_trips(exp: Experiment) -> None:
    exp.metrics("train").log(
        i=3, f=0.25, b=True, none=None, s="text", np_f32=np.float32(1.5), np_i64=np.int64(7),
        np_bool=np.bool_(False), np_0d=np.array(2.5), t_cpu=torch.tensor(4.0), t_int=torch.tensor([9]),
    )
    data = exp.metrics("train").read()[0]["data"]
    assert data["i"] == 3 and data["f"] == 0.25 and data["b"] is True and data["none"] is None
    assert data["s"] == "text" and data["np_f32"] == 1.5 and data["np_i64"] == 7 and data["np_bool"] is False
    assert data["np_0d"] == 2.5 and data["t_cpu"] == 4.0 and data["t_int"] == 9


def test_nan_and_infinities_round_trip_and_the_file_stays_valid_json(exp: Experiment) -> None:
    exp.metrics("train").log(loss=math.nan, hi=math.inf, lo=-math.inf, np_nan=np.float64("nan"), label="NaN", ok=1.0)
    exp.metrics("train").log(loss=0.5)
    rows = exp.metrics("train").read()
    data = rows[0]["data"]
    assert math.isnan(data["loss"]) and data["hi"] == math.inf and data["lo"] == -math.inf
    assert math.isnan(data["np_nan"])
    assert data["label"] == "NaN"  # a string stays a string
    assert rows[1]["data"]["loss"] == 0.5
    strict = read_jsonl(exp.directory / "metrics/train/data.jsonl")  # raises on bare NaN tokens
    assert strict[0]["data"]["loss"] == "NaN" and sorted(strict[0]["nonFinite"]) == ["hi", "lo", "loss", "np_nan"]


def test_a_dict_argument_is_merged_with_keywords(exp: Experiment) -> None:
    given = {"loss": 1.0}
    exp.metrics("train").log(given, step=3)
    data = exp.metrics("train").read()[0]["data"]
    assert data.pop("_ts") > 0
    assert data == {"loss": 1.0, "step": 3}
    assert given == {"loss": 1.0}  # the caller's dict is not modified


def test_the_unnamed_metric_is_stored_as_default(exp: Experiment) -> None:
    exp.metrics.log(loss=0.1)
    exp.flush()
    assert read_jsonl(exp.directory / "metrics/default/data.jsonl")[0]["data"]["loss"] == 0.1
    assert "default" in exp.metrics.names()


def test_metric_metadata_follows_the_upstream_shape(exp: Experiment) -> None:
    for i in range(3):
        exp.metrics("val").log(acc=i)
    exp.flush()
    meta = read_json(exp.directory / "metrics/val/metadata.json")
    assert meta["name"] == "val" and meta["totalDataPoints"] == 3 and meta["nextIndex"] == 3
    assert set(meta) >= {"metricId", "description", "tags", "metadata", "createdAt", "updatedAt"}


@pytest.mark.parametrize("name, problem", [("a/b", "path separators"), ("a\\b", "path separators"),
                                           ("..", "invalid metric name"), (".hidden", "invalid metric name"),
                                           ("x" * 200, "invalid metric name"), ("tab\tname", "invalid metric name")])
def test_invalid_metric_names_are_rejected(exp: Experiment, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        exp.metrics(name)


def test_metric_name_must_be_a_string(exp: Experiment) -> None:
    with pytest.raises(TypeError, match="metric name must be a str"):
        exp.metrics(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("value, problem", [(object(), "unsupported type object"), ([1, 2], "unsupported type list"),
                                            ({"a": 1}, "unsupported type dict"),
                                            (np.zeros(3), "numpy ndarray of dtype float64 and shape"),
                                            torch_case(lambda: torch.zeros(3), "tensor of shape")])
def test_unsupported_values_fail_at_the_call_and_lose_nothing(exp: Experiment, value: object, problem: str) -> None:
    exp.metrics("train").log(loss=1.0)
    with pytest.raises(TypeError, match=problem):
        exp.metrics("train").log(loss=2.0, bad=value)
    exp.metrics("train").log(loss=3.0)
    assert [r["data"]["loss"] for r in exp.metrics("train").read()] == [1.0, 3.0]


def test_field_names_in_a_dict_argument_must_be_strings(exp: Experiment) -> None:
    with pytest.raises(TypeError, match="field names must be str"):
        exp.metrics("train").log({1: 2.0})


def test_many_rows_all_land_in_order(exp: Experiment) -> None:
    n = 50_000
    train = exp.metrics("train")
    for i in range(n):
        train.log(loss=i * 0.5, step=i)
    exp.run.complete()
    rows = read_jsonl(exp.directory / "metrics/train/data.jsonl")
    assert len(rows) == n
    assert all(r["index"] == i and r["data"]["step"] == i for i, r in enumerate(rows))
    stats = exp.stats()["streams"]["metrics/train"]
    assert stats == {"accepted": n, "written": n, "dropped": {}, "pending": 0, "waits": 0}


def test_threads_logging_to_one_stream_lose_nothing(exp: Experiment) -> None:
    import threading

    def worker(k: int) -> None:
        for i in range(5000):
            exp.metrics("shared").log(worker=k, i=i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = exp.metrics("shared").read(limit=None)
    assert [r["index"] for r in rows] == list(range(20000))
    for k in range(4):
        assert [r["data"]["i"] for r in rows if r["data"]["worker"] == k] == list(range(5000))


def test_logging_after_complete_raises(exp: Experiment) -> None:
    exp.run.complete()
    with pytest.raises(RunStateError):
        exp.metrics.log(x=1)


def test_first_use_of_a_name_from_many_threads_creates_one_stream(exp: Experiment, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    create = exp._session.metric_stream

    def slow_create(name: str):  # widen the race window so the test fails without the lock
        time.sleep(0.001)
        return create(name)

    monkeypatch.setattr(exp._session, "metric_stream", slow_create)
    barrier = threading.Barrier(8)
    loggers = []

    def worker() -> None:
        barrier.wait()
        logger = exp.metrics("racy")
        loggers.append(logger)
        logger.log(v=1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(logger) for logger in loggers}) == 1
    assert len(exp.metrics("racy").read()) == 8


def test_the_pure_python_switch_is_honoured_in_a_fresh_process(tmp_path: Path) -> None:
    from .conftest import python_script

    out = python_script("from ml_dash.metrics import MetricLogger; print(MetricLogger.__name__)", tmp_path,
                        env={"ML_DASH_PURE_PYTHON": "1"})
    assert out.stdout.strip() == "PyMetricLogger"


def test_local_reads_stream_the_file_and_start_where_the_index_is(tmp_path, monkeypatch) -> None:
    """Lines across read-block boundaries, a damaged line, a torn tail; a read from an index bisects to it
    and returns what a whole-file read returns."""
    import json

    from ml_dash.format import jsonlines
    from ml_dash.format.jsonlines import ReadReport
    from ml_dash.metrics import read_metric_rows

    monkeypatch.setattr(jsonlines, "READ_BLOCK_BYTES", 37)  # far shorter than a line
    path = tmp_path / "data.jsonl"
    lines = [json.dumps({"index": i, "data": {"step": i, "pad": "x" * (i % 50)}, "createdAt": "t"}) for i in range(500)]
    lines[200] = '{"index": 200, "da'  # damaged in the middle
    path.write_text("\n".join(lines) + '\n{"index": 500, "data"')  # and a torn tail
    everything = read_metric_rows(path, report=(whole := ReadReport()))
    assert [r["index"] for r in everything] == [i for i in range(500) if i != 200]
    assert whole.torn_tail and whole.skipped_lines == 2
    for start in (0, 1, 199, 200, 201, 377, 499, 500, 10_000):
        for limit in (None, 1, 5, 1000):
            want = [r for r in everything if r["index"] >= start][:limit]
            assert read_metric_rows(path, start, limit) == want, (start, limit)
