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
    torch_case(lambda: {"t": torch.tensor([])}, TypeError, "tensor of shape"),
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


# -- the value domain at its literal edges -------------------------------------------------------------------
# Every kind of docs/api.md's table ("What a value may be"), just inside and just outside each bound, with the bounds
# written out here as docs/api.md states them (never the code's constants: a moved constant must fail here).
# The module's logger_impl fixture runs each case on the C hot path and on the pure-Python one.

I64_MIN, I64_MAX = -9223372036854775808, 9223372036854775807  # −2⁶³ … 2⁶³−1
ONE_MIB = 1_048_576


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyStr(str):
    pass


#: (field value, what read() gives back) for values just inside the table's bounds
INSIDE = [
    (I64_MIN, I64_MIN), (I64_MAX, I64_MAX), (I64_MIN + 1, I64_MIN + 1), (I64_MAX - 1, I64_MAX - 1), (0, 0),
    (MyInt(I64_MAX), I64_MAX), (MyInt(I64_MIN), I64_MIN),
    (np.int64(I64_MIN), I64_MIN), (np.int64(I64_MAX), I64_MAX), (np.uint64(I64_MAX), I64_MAX),
    (np.uint32(4294967295), 4294967295), (np.int8(-128), -128), (np.array([I64_MAX]), I64_MAX),
    (math.nan, math.nan), (math.inf, math.inf), (-math.inf, -math.inf), (-0.0, -0.0),
    (5e-324, 5e-324), (1.7976931348623157e308, 1.7976931348623157e308), (-1.7976931348623157e308, -1.7976931348623157e308),
    (MyFloat(0.1), 0.1), (np.float64(math.nan), math.nan), (np.float32(-math.inf), -math.inf), (np.float16(65504.0), 65504.0),
    (True, True), (False, False), (np.bool_(True), True), (None, None),
    ("", ""), ("x" * 64, "x" * 64), ("x" * 65, "x" * 65), ("\ud7ff", "\ud7ff"), ("\ue000", "\ue000"),
    ("\U0010ffff", "\U0010ffff"), ("\x00", "\x00"), (MyStr("mine"), "mine"), ("NaN", "NaN"), ("Infinity", "Infinity"),
]
#: (field value, error, words) just outside
OUTSIDE_EDGES = [
    (I64_MIN - 1, ValueError, "does not fit in 64 bits"), (I64_MAX + 1, ValueError, "does not fit in 64 bits"),
    (MyInt(I64_MAX + 1), ValueError, "does not fit in 64 bits"), (MyInt(I64_MIN - 1), ValueError, "does not fit in 64 bits"),
    (np.uint64(I64_MAX + 1), ValueError, "does not fit in 64 bits"),
    (np.array([np.uint64(I64_MAX + 1)]), ValueError, "does not fit in 64 bits"),
    ("\ud800", ValueError, "lone surrogate"), ("\udfff", ValueError, "lone surrogate"),
    ("ok" + "\udc80", ValueError, "lone surrogate"),
    (np.complex128(1), TypeError, "dtype complex128"), (np.datetime64("2026-01-01"), TypeError, "dtype datetime64"),
    (np.array(["text"]), TypeError, "dtype <U4"), (np.array([1, 2]), TypeError, "shape"),
    (np.zeros((1, 2)), TypeError, "shape"), (np.array([]), TypeError, "shape"), (b"bytes", TypeError, "unsupported type bytes"),
    ([1.0], TypeError, "unsupported type list"), ({"a": 1}, TypeError, "unsupported type dict"),
]


def _identical(got: object, want: object) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, float):  # -0.0 keeps its sign; 1 is not 1.0
        return type(got) is float and math.copysign(1.0, got) == math.copysign(1.0, want) and got == want
    return type(got) is type(want) and got == want


@pytest.mark.parametrize("value, want", INSIDE, ids=repr)
def test_values_just_inside_the_tables_bounds_are_kept_exactly(exp: Experiment, value: object, want: object) -> None:
    exp.metrics("edge").log(v=value, step=1)  # step keeps the row plain when v is: the C path's own check
    exp.metrics("edge").log(v=value, **{f"f{i}": 0 for i in range(40)})  # wider than the fast path: Python's check
    rows = exp.metrics("edge").read()
    assert len(rows) == 2 and all(_identical(r["data"]["v"], want) for r in rows), rows[0]["data"]["v"]


@pytest.mark.parametrize("value, error, words", OUTSIDE_EDGES, ids=repr)
def test_values_just_outside_the_tables_bounds_are_refused_naming_the_field(exp: Experiment, value: object,
                                                                           error: type, words: str) -> None:
    exp.metrics("edge").log(step=0)
    for fields in ({"v": value, "step": 1}, {"v": value, **{f"f{i}": 0 for i in range(40)}}):
        with pytest.raises(error, match=words) as refused:
            exp.metrics("edge").log(**fields)
        assert "'v'" in str(refused.value)
    exp.metrics("edge").log(step=2)
    assert [r["data"]["step"] for r in exp.metrics("edge").read()] == [0, 2]  # nothing else lost


@pytest.mark.parametrize("name, kept", [
    ("n", True), ("n" * 256, True), ("é" * 256, True), ("東" * 256, True),  # 1 to 256 characters, not bytes
    ("", False), ("n" * 257, False), ("é" * 257, False), ("_ts", False),
])
def test_a_metric_field_name_is_1_to_256_characters(exp: Experiment, name: str, kept: bool) -> None:
    if kept:
        exp.metrics("edge").log(**{name: 1.5})
        assert exp.metrics("edge").read()[0]["data"][name] == 1.5
    else:
        with pytest.raises(ValueError, match="1 to 256 characters|reserved"):
            exp.metrics("edge").log(**{name: 1.5})


@pytest.mark.parametrize("fields, kept", [
    ({"s": "x" * (ONE_MIB - 1)}, True),  # name 1 + string: exactly 1 MiB
    ({"s": "x" * ONE_MIB}, False),
    ({"s": "é" * ((ONE_MIB - 1) // 2)}, True),  # strings by their UTF-8 bytes
    ({"s": "é" * ((ONE_MIB - 1) // 2 + 1)}, False),
    ({"s": "x" * (ONE_MIB - 1 - 1 - 16), "n": 1.0}, True),  # 16 per other value
    ({"s": "x" * (ONE_MIB - 1 - 1 - 16 + 1), "n": 1.0}, False),
    ({"s": "x" * (ONE_MIB - 1 - 1 - 16), "n": None}, True),
    ({"s": "x" * (ONE_MIB - 1 - 1 - 16 + 1), "n": None}, False),
])
def test_a_metric_row_is_at_most_1_mib_counting_names_strings_and_16_per_other_value(
        exp: Experiment, fields: dict, kept: bool) -> None:
    if kept:
        exp.metrics("edge").log(**fields)
        assert exp.metrics("edge").read()[0]["data"]["s"] == fields["s"]
    else:
        with pytest.raises(ValueError, match="the limit is 1,048,576"):
            exp.metrics("edge").log(**fields)


def test_a_metric_row_may_have_any_number_of_fields(exp: Experiment) -> None:
    for width in (32, 33, 1000):  # the C path takes at most 32; the rest goes through Python's check
        exp.metrics("edge").log(**{f"f{i}": i for i in range(width)})
    assert [len(r["data"]) - 1 for r in exp.metrics("edge").read()] == [32, 33, 1000]


def test_a_log_message_is_at_most_1_mib_of_utf8(exp: Experiment) -> None:
    exp.log("x" * ONE_MIB)
    exp.log("é" * (ONE_MIB // 2))
    for message in ("x" * (ONE_MIB + 1), "é" * (ONE_MIB // 2) + "x"):
        with pytest.raises(ValueError, match="the limit is 1,048,576"):
            exp.log(message)
    assert [len(r["message"].encode()) for r in exp.logs.read()] == [ONE_MIB, ONE_MIB]


def _nested(depth: int, leaf: object = 1, shape: str = "mixed") -> object:
    """``depth`` levels of lists and dicts around ``leaf``: alternating (``mixed``, a list innermost), or
    all ``lists``, or all ``dicts``."""
    value = leaf
    for i in range(depth):
        as_dict = {"mixed": i % 2 == 1, "lists": False, "dicts": True}[shape]
        value = {"k": value} if as_dict else [value]
    return value


@pytest.mark.parametrize("shape", ["lists", "dicts", "mixed"])
def test_metadata_nested_33_deep_is_refused_whatever_it_is_made_of(workdir: Path, shape: str) -> None:
    """Every level counts, a list's as a dict's, whichever level it sits at."""
    for depth in (33, 34):
        with pytest.raises(ValueError, match="nested deeper than 32 levels"):
            Experiment(prefix="a/b/meta", metadata={"deep": _nested(depth - 1, shape=shape)})
        with pytest.raises(ValueError, match="nested deeper than 32 levels"):
            Experiment(prefix="a/b/meta", metadata={"deep": [_nested(depth - 2, shape=shape)]})
    Experiment(prefix="a/b/meta", metadata={"deep": _nested(31, shape=shape)})


def test_parameters_and_metadata_nest_at_most_32_deep(exp: Experiment, workdir: Path) -> None:
    """A parameter's value may be 32 deep (its key's place in the tree is not a level); metadata, a log
    line's or a run's, is one dict that may be 32 deep counting itself (the server checks the same)."""
    exp.params.set(deep=_nested(32), big=I64_MAX, small=I64_MIN, nan=math.nan, t=(1, 2),
                   u64=np.array([0, I64_MAX], dtype=np.uint64), empty=np.array([], dtype=np.uint64),
                   u64_small=np.array([1, 2], dtype=np.uint64))
    exp.flush()
    got = read_json(exp.directory / "parameters.json")["data"]
    assert (got["big"], got["small"], got["u64"], got["empty"]) == (I64_MAX, I64_MIN, [0, I64_MAX], [])
    assert got["u64_small"] == [1, 2]  # a uint64 array is refused only past 2**63-1, not below it
    exp.log("x", deep=_nested(31))
    Experiment(prefix="a/b/meta", metadata={"deep": _nested(31)})
    for what, value in ((lambda v: exp.params.set(deep=v), _nested(33)), (lambda v: exp.log("x", deep=v), _nested(32)),
                        (lambda v: Experiment(prefix="a/b/meta", metadata={"deep": v}), _nested(32))):
        with pytest.raises(ValueError, match="nested deeper than 32 levels"):
            what(value)
    for bad, error, words in ((I64_MAX + 1, ValueError, "does not fit in 64 bits"),
                              (I64_MIN - 1, ValueError, "does not fit in 64 bits"),
                              ({1: "x"}, TypeError, "must be str"), ("\ud800", ValueError, "lone surrogate"),
                              (np.array([np.uint64(I64_MAX + 1)]), ValueError, "uint64 past 2\\*\\*63-1"),
                              ({"a"}, TypeError, "unsupported type set")):
        with pytest.raises(error, match=words):
            exp.params.set(bad=bad)
    assert any(k.startswith("deep.") for k in exp.params.get())  # kept (dicts flattened into dotted names)


def test_a_description_is_at_most_64_kib_and_a_reason_is_cut_there(workdir: Path) -> None:
    assert Experiment(prefix="a/b/c", description="x" * 65_536).description == "x" * 65_536
    with pytest.raises(ValueError, match="the limit is 65,536"):
        Experiment(prefix="a/b/c", description="x" * 65_537)
    exp = Experiment(prefix="a/b/d")
    exp.run.start()
    exp.run.fail("r" * 65_537)
    reason = read_json(exp.directory / "experiment.json")["status_reason"]
    assert len(reason.encode()) == 65_536 and reason.endswith("...")
    whole = Experiment(prefix="a/b/e")
    whole.run.start()
    whole.run.fail("r" * 65_536)
    assert read_json(whole.directory / "experiment.json")["status_reason"] == "r" * 65_536  # kept whole


@pytest.mark.parametrize("name, kept", [("m" * 128, True), ("m" * 129, False)])
def test_a_metric_name_is_at_most_128_characters(exp: Experiment, name: str, kept: bool) -> None:
    if kept:
        exp.metrics(name).log(v=1)
        assert exp.metrics(name).read()[0]["data"]["v"] == 1
    else:
        with pytest.raises(ValueError, match="128"):
            exp.metrics(name).log(v=1)


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps", "xpu", "xla", "meta"])
def test_a_one_element_tensor_is_in_the_domain_on_every_device_but_meta(device: str) -> None:
    """The check reads only a tensor's metadata, so tensors that merely claim a device (torch's fake
    tensors: no such hardware here) show what it does on each: only ``meta`` holds no value to log."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ml_dash.format.values import check_tensor

    with FakeTensorMode():
        tensor = torch.ones((), device=device)
    if device == "meta":
        with pytest.raises(TypeError, match="log a dense one-element tensor"):
            check_tensor("metric field 'v'", tensor)
    else:
        assert check_tensor("metric field 'v'", tensor) is tensor


@pytest.mark.parametrize("neighbour", [None, True, 1.5, MyFloat(1.5), np.float64(1.5), np.bool_(True), "text"],
                         ids=repr)
def test_every_value_of_a_parameter_or_metadata_is_checked_whatever_is_beside_it(exp: Experiment,
                                                                                   neighbour: object) -> None:
    """A value that needs no check (None, a bool, a float of any class) must not end the check of the
    values beside it: the one past 64 bits is refused wherever it sits."""
    for value in ([I64_MAX + 1, neighbour], [neighbour, I64_MAX + 1], {"a": I64_MAX + 1, "b": neighbour}):
        with pytest.raises(ValueError, match="does not fit in 64 bits"):
            exp.params.set(mixed=value)
        with pytest.raises(ValueError, match="does not fit in 64 bits"):
            exp.log("x", mixed=value)
    assert exp.params.get() == {}


@pytest.mark.parametrize("device", ["mps", "xpu", "xla"])
def test_a_tensor_on_an_accelerator_is_copied_at_the_call_never_read(device: str) -> None:
    """A tensor off the CPU is copied on its device at the call and read later by the agent: reading it
    here would wait for the device. Fake tensors (no such hardware here) have no value to read at all,
    so a read at the call fails."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ml_dash.format.values import capture_tensor

    with FakeTensorMode():
        tensor = torch.full((), 2.5, device=device)
        copy, size = capture_tensor("metric field 'v'", tensor)
    assert isinstance(copy, torch.Tensor) and copy is not tensor and copy.device.type == device and size == 16


def test_parameters_and_metadata_of_str_int_and_float_subclasses_are_kept_as_their_plain_values(
        exp: Experiment) -> None:
    """A subclass of str, int or float (a config library's string type, an int subclass, numpy.str_) is in
    the domain wherever its plain value is: kept as that value in parameters, a log line's metadata and a
    run's metadata, and held to the same rules (a lone surrogate, an int past 64 bits are refused in it)."""
    exp.params.set(optimizer=MyStr("adam"), schedule=np.str_("cosine"), layers=MyInt(12), lr=MyFloat(0.5),
                   missing=MyFloat(math.nan), nested={"k": [MyStr("v"), MyInt(-3)]})
    exp.log("hello", who=MyStr("me"), n=MyInt(2))
    Experiment(prefix="a/b/meta", metadata={"tag": MyStr("x"), "n": MyInt(1), "f": MyFloat(2.5)})
    exp.flush()
    got = read_json(exp.directory / "parameters.json")["data"]
    assert {k: got[k] for k in ("optimizer", "schedule", "layers", "lr", "missing", "nested.k")} == {
        "optimizer": "adam", "schedule": "cosine", "layers": 12, "lr": 0.5, "missing": "NaN", "nested.k": ["v", -3]}
    line = read_jsonl(exp.directory / "logs.jsonl")[-1]
    assert (line["message"], line["metadata"]) == ("hello", {"who": "me", "n": 2})
    for bad, error, words in ((MyStr("\ud800"), ValueError, "lone surrogate"),
                              (np.str_("ok\udc80"), ValueError, "lone surrogate"),
                              (MyInt(I64_MAX + 1), ValueError, "does not fit in 64 bits")):
        with pytest.raises(error, match=words):
            exp.params.set(bad=bad)
