"""Fault matrix row 18: a value is refused at the call, or delivered everywhere; a bad one costs only itself.

The domain is ml_dash/format/values.py's: 64-bit ints, strings UTF-8 can carry, one-element real tensors,
rows of at most 1 MiB, parameters nested at most 32 deep.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml_dash import Experiment, RunStatus
from ml_dash.format.values import INT_MAX, INT_MIN, MAX_ROW_BYTES

from .conftest import read_json, read_jsonl
from .optional import torch, torch_case

pytestmark = pytest.mark.usefixtures("logger_impl")

SURROGATE = "caf\udcff.png"  # what os.fsdecode makes of b"caf\xff.png"


@pytest.mark.parametrize("fields, error, words", [
    ({"name": SURROGATE}, ValueError, "lone surrogate"),
    ({SURROGATE: 1.0}, ValueError, "lone surrogate"),
    ({"big": 2**70}, ValueError, "does not fit in 64 bits"),
    ({"big": -(2**63) - 1}, ValueError, "does not fit in 64 bits"),
    ({"text": "x" * (MAX_ROW_BYTES + 1)}, ValueError, "the limit is 1,048,576"),
    ({f"f{i}": "y" * 1000 for i in range(1100)}, ValueError, "the limit is 1,048,576"),
    ({"_ts": 1.0}, ValueError, "reserved"),
    ({"": 1.0}, ValueError, "1 to 256 characters"),
    ({"n" * 300: 1.0}, ValueError, "1 to 256 characters"),
    ({"z": complex(1, 2)}, TypeError, "unsupported type complex"),
    ({"z": np.complex64(1)}, TypeError, "dtype complex64"),
    ({"z": np.uint64(2**64 - 1)}, ValueError, "does not fit in 64 bits"),
    ({"z": np.array([1.0, 2.0])}, TypeError, "shape"),
    torch_case(lambda: {"t": torch.tensor([1.0, 2.0])}, TypeError, "tensor of shape"),
    torch_case(lambda: {"t": torch.tensor(1 + 2j)}, TypeError, "complex tensor"),
    torch_case(lambda: {"t": torch.tensor(3, dtype=torch.uint64)}, TypeError, "dtype torch.uint64"),
    torch_case(lambda: {"t": torch.tensor([1.0]).to_sparse()}, TypeError, "sparse"),
    torch_case(lambda: {"t": torch.empty(1, device="meta")}, TypeError, "meta"),
    torch_case(lambda: {"t": torch.zeros((), dtype=torch.float4_e2m1fn_x2)}, TypeError, "dtype torch.float4_e2m1fn_x2"),
    torch_case(lambda: {"t": torch.zeros((), dtype=torch.int4)}, TypeError, "dtype torch.int4"),
    torch_case(lambda: {"t": torch.zeros((), dtype=torch.bits8)}, TypeError, "dtype torch.bits8"),
])
def test_row18_values_outside_the_domain_are_refused_at_the_call(exp: Experiment, fields: dict, error: type,
                                                                 words: str) -> None:
    exp.metrics("train").log(step=0)
    with pytest.raises(error, match=words):
        exp.metrics("train").log(**fields)
    exp.metrics("train").log(step=1)
    assert [r["data"]["step"] for r in exp.metrics("train").read()] == [0, 1]  # nothing else lost


def test_row18_log_messages_metadata_and_params_outside_the_domain_are_refused(exp: Experiment) -> None:
    exp.log("kept")
    with pytest.raises(ValueError, match="log message holds the lone surrogate"):
        exp.log(SURROGATE)
    with pytest.raises(ValueError, match="lone surrogate"):
        exp.log("x", path=SURROGATE)
    with pytest.raises(ValueError, match="lone surrogate"):
        exp.log("x", **{SURROGATE: 1})
    with pytest.raises(ValueError, match="the limit is 1,048,576"):
        exp.log("x" * (MAX_ROW_BYTES + 1))
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        exp.log("x", count=2**64)
    with pytest.raises(TypeError, match="log message must be a str, not bytes"):
        exp.log(b"bytes")  # type: ignore[arg-type]
    deep: dict = {}
    node = deep
    for _ in range(5000):
        node["a"] = node = {}
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        exp.params.set(deep=deep)  # not a RecursionError
    with pytest.raises(ValueError, match="nested deeper than 32 levels"):
        exp.log("x", deep=deep)
    with pytest.raises(ValueError, match="the limit is 1,048,576"):
        exp.params.set(blob="x" * (MAX_ROW_BYTES + 1))
    with pytest.raises(ValueError, match="lone surrogate"):
        exp.params.set(path=SURROGATE)
    exp.log("also kept")
    assert [r["message"] for r in exp.logs.read()] == ["kept", "also kept"]
    assert exp.params.get() == {}


def test_row18_experiment_fields_are_checked_when_it_is_created(workdir: Path) -> None:
    with pytest.raises(TypeError, match="description must be a str, not list"):
        Experiment(prefix="a/b/c", description=["not", "text"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tags must be a list of str"):
        Experiment(prefix="a/b/c", tags="one")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lone surrogate"):
        Experiment(prefix="a/b/c", tags=[SURROGATE])
    with pytest.raises(TypeError, match="metadata must be a dict"):
        Experiment(prefix="a/b/c", metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        Experiment(prefix="a/b/c", metadata={"seed": 2**64})
    with pytest.raises(ValueError, match="close_timeout_s"):
        Experiment(prefix="a/b/c", close_timeout_s=-1)


def test_row18_a_reason_may_be_an_exception_and_the_run_ends_failed_on_disk(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    with pytest.raises(TypeError, match="reason must be a str or an exception"):
        exp.run.fail(42)  # type: ignore[arg-type]
    assert exp.status is RunStatus.RUNNING  # refused before anything changed
    assert exp.run.fail(ValueError("x")) is True
    doc = read_json(exp.directory / "experiment.json")
    assert doc["status"] == "FAILED" and doc["status_reason"] == "ValueError: x"
    other = Experiment(prefix="a/b/d")
    other.run.start()
    assert other.run.cancel("stopped by " + SURROGATE + " " + "z" * 100_000) is True  # cut and cleaned, not refused
    reason = read_json(other.directory / "experiment.json")["status_reason"]
    assert reason.startswith("stopped by caf?.png") and len(reason.encode()) <= 64 * 1024


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("a broken __str__")


def test_row18_an_exception_whose_str_fails_still_ends_the_run(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with pytest.raises(UnprintableError), exp.run:
        raise UnprintableError
    doc = read_json(exp.directory / "experiment.json")
    assert doc["status"] == "FAILED" and doc["status_reason"] == "UnprintableError: <its str() failed>"


def test_row18_numpy_parameters_keep_long_doubles_and_non_finite_values_inside_arrays(exp: Experiment) -> None:
    exp.params.set(ld=np.longdouble(1.5), lds=np.array([np.longdouble(2.5)]), arr=np.array([1.0, np.nan, -np.inf]))
    exp.log("x", ld=np.longdouble(0.25))
    exp.flush()
    data = read_json(exp.directory / "parameters.json")["data"]
    assert (data["ld"], data["lds"], data["arr"]) == (1.5, [2.5], [1.0, "NaN", "-Infinity"])
    assert exp.logs.read()[-1]["metadata"]["ld"] == 0.25


EDGES = {"lo": INT_MIN, "hi": INT_MAX, "nan": math.nan, "inf": -math.inf, "unicode": "naïve – 東京 🚀",
         "long": "L" * 100_000, "none": None, "flag": True, "np_f16": np.float16(0.5), "np_u32": np.uint32(7),
         "np_str": np.str_("numpy text")}
if torch is not None:  # the tests using EDGES use torch: without it they are skipped (tests/optional.py)
    EDGES |= {"t_bf16": torch.tensor(1.5, dtype=torch.bfloat16), "t_int": torch.tensor(-3),
              "t_f8": torch.tensor(0.5).to(torch.float8_e4m3fn), "t_u32": torch.tensor(7, dtype=torch.uint32)}


def _expected(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same(a: object, b: object) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_row18_accepted_edge_values_are_delivered_to_disk_server_sync_and_pull(workdir: Path, tmp_path: Path,
                                                                               server) -> None:
    key = server.key("alice")
    exp = Experiment(prefix="alice/p/edges")
    with exp.run:
        exp.metrics("train").log(**EDGES)
        exp.metrics("wide").log(**{f"field_{i}": i for i in range(40)})  # wider than the fast path
        exp.log("edges", **{k: v for k, v in EDGES.items() if not isinstance(v, torch.Tensor)})
        exp.params.set(nested={"a": {"b": [1, {"c": INT_MAX}]}}, text="naïve")
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", server.url, "--api-key", key],
                         cwd=workdir, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    pulled = subprocess.run([sys.executable, "-m", "ml_dash.cli", "pull", "alice/p/edges", "--remote", server.url,
                             "--api-key", key, "--to", str(tmp_path / "pulled")], capture_output=True, text=True,
                            timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    reader = Experiment(prefix="alice/p/edges", remote=server.url, api_key=key, local_path=tmp_path / "nowhere")
    from ml_dash.metrics import read_metric_rows

    for rows in (exp.metrics("train").read(), reader.metrics("train").read(),
                 read_metric_rows(tmp_path / "pulled/alice/p/edges/metrics/train/data.jsonl")):
        data = rows[0]["data"]
        for name, value in EDGES.items():
            assert _same(data[name], _expected(value)), (name, data[name])
    assert reader.metrics("wide").read()[0]["data"]["field_39"] == 39
    assert reader.params.get() == {"nested.a.b": [1, {"c": INT_MAX}], "text": "naïve"}
    assert reader.logs.read()[0]["metadata"]["hi"] == INT_MAX


def test_row18_a_value_that_still_fails_inside_the_agent_costs_only_its_row(exp: Experiment) -> None:
    stream = exp._session.metric_stream("train")
    for i in range(8192):
        exp.metrics("train").log(step=i)
    stream.queue.append({"step": object(), "_ts": 0.0})  # past every check at the call, as a bug would be
    for i in range(8192, 8300):
        exp.metrics("train").log(step=i)
    exp.run.complete()
    rows = read_jsonl(exp.directory / "metrics/train/data.jsonl")
    assert [r["data"]["step"] for r in rows] == list(range(8300))
    stats = exp.stats()["streams"]["metrics/train"]
    assert stats["dropped"] == {"unserializable": 1} and stats["written"] == 8300 and stats["pending"] == 0


def test_row18_sync_sets_aside_one_bad_row_and_goes_on_with_the_next_run(workdir: Path, server) -> None:
    first, second = Experiment(prefix="alice/p/one"), Experiment(prefix="alice/p/two")
    for exp in (first, second):
        with exp.run:
            for i in range(2001):
                exp.metrics("train").log(step=i)
    data = first.directory / "metrics/train/data.jsonl"
    data.write_bytes(data.read_bytes().replace(b'"step":7,', b'"step":1180591620717411303424,'))  # 2**70 by hand
    key = server.key("alice")
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", server.url, "--api-key", key],
                         cwd=workdir, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rows set aside" in out.stdout and "Traceback" not in out.stdout + out.stderr
    for prefix, expected in (("alice/p/one", [i for i in range(2001) if i != 7]), ("alice/p/two", list(range(2001)))):
        _, body = server.request("GET", f"/api/v1/experiments/{prefix}/metrics/train?limit=5000", key=key)
        assert [r["data"]["step"] for r in body["rows"]] == expected


def test_row18_a_bug_in_one_runs_upload_does_not_stop_the_sync_of_the_next(workdir: Path, server,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from ml_dash.agent.upload.uploader import RunUploader
    from ml_dash.remote.sync import SyncOptions, sync_paths

    for name in ("one", "two"):
        with Experiment(prefix=f"alice/p/{name}").run as exp:
            exp.metrics("train").log(step=1)
    real = RunUploader.upload

    async def broken_for_one(self, *args, **kwargs):
        if self.prefix == "alice/p/one":
            raise RuntimeError("a bug")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(RunUploader, "upload", broken_for_one)
    out = io.StringIO()
    status = asyncio.run(sync_paths([workdir / ".dash"], SyncOptions(server.url, server.key("alice"), None, 30), out))
    assert status == 1
    assert "alice/p/one: failed: RuntimeError: a bug" in out.getvalue() and "alice/p/two: 1/1 rows" in out.getvalue()
