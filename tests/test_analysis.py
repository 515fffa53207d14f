"""ml_dash.search_runs, ml_dash.history and ``ml-dash export --parquet`` (ml_dash/analysis): on local runs,
through a real server process on 127.0.0.1 (the same runs, uploaded), and against a hostile server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

import ml_dash
from ml_dash import Experiment
from ml_dash.analysis import ConditionError, NotFoundError, export_parquet
from ml_dash.errors import MLDashError
from ml_dash.format.columns import CONTENT_TYPE, ColumnsReader

from .evil_server import EvilServer
from .server_process import Server, direct

PROJECT = "alice/proj"


def make_runs(root: Path, server: Server | None = None, key: str | None = None) -> None:
    """Three runs of PROJECT under ``root`` (uploaded to ``server`` too when given): params, a ``train``
    stream of 300 rows, an ``eval`` stream whose fields differ between rows and whose last value is NaN."""
    remote = {} if server is None else {"remote": server.url, "api_key": key}
    for i, lr in enumerate((0.1, 0.01, 0.001)):
        exp = Experiment(prefix=f"{PROJECT}/run-{i}", local_path=root / PROJECT / f"run-{i}", **remote)
        with exp.run:
            exp.params.set(lr=lr, model={"depth": 4 + i}, opt="sgd" if i == 0 else "adam")
            for step in range(300):
                exp.metrics("train").log(loss=1.0 / (step + 1 + i), step=step)
            exp.metrics("eval").log(acc=0.5 + i / 10, epoch=0)
            exp.metrics("eval").log(acc=math.nan if i == 2 else 0.9, note="last")


def same_values(a: Any, b: Any) -> bool:
    """Frames equal, NaN equal to NaN."""
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_index_type=False)
    return True


def utc_times(column: Any) -> bool:
    return isinstance(column.dtype, pd.DatetimeTZDtype) and str(column.dtype.tz) == "UTC"


# -- local ----------------------------------------------------------------------------------------
def test_search_runs_on_local_runs_has_one_row_per_run_with_params_and_latest_metrics(tmp_path: Path) -> None:
    make_runs(tmp_path)
    runs = ml_dash.search_runs(tmp_path, project=PROJECT)
    assert list(runs["prefix"]) == [f"{PROJECT}/run-{i}" for i in range(3)]
    assert list(runs["status"]) == ["COMPLETED"] * 3
    assert utc_times(runs["created"]) and runs["ended"].notna().all()
    assert list(runs["params.lr"]) == [0.1, 0.01, 0.001] and list(runs["params.model.depth"]) == [4, 5, 6]
    assert list(runs["metrics.train/loss"]) == [1 / 300, 1 / 301, 1 / 302]
    assert list(runs["metrics.train/step"]) == [299] * 3
    assert list(runs["metrics.eval/epoch"]) == [0] * 3  # from the row before the last: each field's latest
    assert runs["metrics.eval/acc"].iloc[0] == 0.9 and math.isnan(runs["metrics.eval/acc"].iloc[2])
    assert not [c for c in runs.columns if c.endswith("/_ts")]  # the logging time is history's, not a metric


def test_search_runs_filters_with_the_uis_conditions_and_orders(tmp_path: Path) -> None:
    make_runs(tmp_path)
    picked = ml_dash.search_runs(tmp_path, project=PROJECT, filter="lr < 0.05, train/loss < 0.00333",
                                 order_by="-params.lr")
    assert list(picked["prefix"]) == [f"{PROJECT}/run-1", f"{PROJECT}/run-2"]
    by_loss = ml_dash.search_runs(tmp_path, project=PROJECT, order_by="metrics.train/loss")
    assert list(by_loss["name"]) == ["run-2", "run-1", "run-0"]
    assert list(ml_dash.search_runs(tmp_path, project=PROJECT, filter="opt = sgd")["name"]) == ["run-0"]
    newest = ml_dash.search_runs(tmp_path, project=PROJECT, order_by="-created")
    assert list(newest["name"]) == ["run-2", "run-1", "run-0"]
    assert len(ml_dash.search_runs(tmp_path, project="alice/none")) == 0


@pytest.mark.parametrize("kwargs, error, words", [
    ({"filter": "lr < 0.1, depth"}, ConditionError, "not a condition"),
    ({"filter": "lr"}, ConditionError, "'lr'"),
    ({"order_by": "metrics.train/nope"}, ValueError, "no column 'metrics.train/nope'"),
    ({"project": "alice"}, ValueError, "owner/project"),
    ({"project": "alice/.."}, ValueError, "segment"),
])
def test_bad_arguments_are_errors_that_name_the_problem(tmp_path: Path, kwargs: dict[str, str],
                                                        error: type[Exception], words: str) -> None:
    make_runs(tmp_path)
    with pytest.raises(error, match=None) as err:
        ml_dash.search_runs(tmp_path, **{"project": PROJECT, **kwargs})
    assert words in str(err.value)


def test_history_of_a_local_stream_is_every_row_in_columns(tmp_path: Path) -> None:
    make_runs(tmp_path)
    train = ml_dash.history(tmp_path, f"{PROJECT}/run-1", "train")
    assert list(train.columns) == ["time", "loss", "step"] and train.index.name == "index"
    assert list(train.index) == list(range(300)) and list(train["step"]) == list(range(300))
    assert utc_times(train["time"]) and train["time"].is_monotonic_increasing
    assert train["loss"].iloc[-1] == 1 / 301
    evals = ml_dash.history(tmp_path, f"{PROJECT}/run-2", "eval")  # NaN and fields that differ by row
    assert list(evals.columns) == ["time", "acc", "epoch", "note"]
    assert evals["acc"].iloc[0] == 0.7 and math.isnan(evals["acc"].iloc[1])
    assert evals["epoch"].iloc[0] == 0 and pd.isna(evals["epoch"].iloc[1]) and evals["note"].iloc[1] == "last"


def test_history_of_a_field_that_is_only_ever_non_finite_gives_floats(tmp_path: Path) -> None:
    exp = Experiment(prefix=f"{PROJECT}/diverged", local_path=tmp_path / PROJECT / "diverged")
    with exp.run:
        for step in range(3):
            exp.metrics("train").log(loss=math.nan, peak=math.inf, step=step)
    train = ml_dash.history(tmp_path, f"{PROJECT}/diverged", "train")
    assert train["loss"].isna().all() and str(train["loss"].dtype) == "float64"  # not the text "NaN"
    assert list(train["peak"]) == [math.inf] * 3


def test_history_of_a_damaged_file_keeps_every_intact_row_and_warns_of_the_rest(tmp_path: Path) -> None:
    make_runs(tmp_path)
    data = tmp_path / PROJECT / "run-0" / "metrics" / "train" / "data.jsonl"
    lines = data.read_bytes().split(b"\n")
    lines[10] = lines[10][:20]  # a flipped line in the middle
    data.write_bytes(b"\n".join(lines) + b'{"index": 300, "da')  # and a torn tail
    with pytest.warns(RuntimeWarning, match="1 damaged line"):
        train = ml_dash.history(tmp_path, f"{PROJECT}/run-0", "train")
    assert list(train.index) == [i for i in range(300) if i != 10]
    assert list(train["step"]) == list(train.index) and train.attrs["problems"]


def test_history_of_a_missing_run_or_stream_names_what_there_is(tmp_path: Path) -> None:
    make_runs(tmp_path)
    with pytest.raises(NotFoundError, match=r"has no metric 'nope' \(it has: eval, train\)"):
        ml_dash.history(tmp_path, f"{PROJECT}/run-0", "nope")
    with pytest.raises(NotFoundError, match="no run alice/proj/run-9"):
        ml_dash.history(tmp_path, f"{PROJECT}/run-9", "train")
    with pytest.raises(ValueError, match="invalid metric name"):
        ml_dash.history(tmp_path, f"{PROJECT}/run-0", "../x")


def test_without_pandas_the_functions_name_the_extra_and_importing_ml_dash_loads_neither(tmp_path: Path) -> None:
    probe = ("import sys; sys.modules['pandas'] = None; import ml_dash\n"
             "assert 'pyarrow' not in sys.modules\n"
             "try:\n    ml_dash.search_runs('.', project='a/b')\n"
             "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'pip install "ml-dash[pandas]"' in out.stdout
    loaded = subprocess.run([sys.executable, "-c", ("import sys, ml_dash; ml_dash.search_runs; ml_dash.history; "
                             "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))")],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert loaded.stdout.strip() == "[]", loaded.stderr


# -- through a real server ------------------------------------------------------------------------
def test_a_server_gives_the_same_frames_as_the_local_runs(tmp_path: Path, server: Server) -> None:
    key = server.key("alice")
    make_runs(tmp_path / "local", server, key)
    local = ml_dash.search_runs(tmp_path / "local", project=PROJECT)
    remote = ml_dash.search_runs(server.url, project=PROJECT, api_key=key)
    assert same_values(remote.drop(columns=["hostname"]), local.drop(columns=["hostname"]))
    for run, metric in ((0, "train"), (2, "eval")):
        assert same_values(ml_dash.history(server.url, f"{PROJECT}/run-{run}", metric, api_key=key),
                           ml_dash.history(tmp_path / "local", f"{PROJECT}/run-{run}", metric))


def test_a_servers_filter_is_evaluated_by_the_server(tmp_path: Path, server: Server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    key = server.key("alice")
    make_runs(tmp_path / "local", server, key)
    query = urllib.parse.urlencode({"owner": "alice", "project": "proj", "where": "lr < 0.05, train/loss < 0.00333"})
    status, body = server.request("GET", f"/api/v1/experiments?{query}", key=key)
    assert status == 200 and [e["name"] for e in body["experiments"]] == ["run-1", "run-2"] and "next" not in body
    status, body = server.request("GET", f"/api/v1/experiments?{query}&limit=1", key=key)
    assert [e["name"] for e in body["experiments"]] == ["run-1"] and body["next"] == 2  # go on from the third run
    status, body = server.request("GET", "/api/v1/experiments?project=proj&where=" + urllib.parse.quote("lr <"), key=key)
    assert status == 400 and "not a condition" in body["error"] and "'lr <'" in body["error"]
    monkeypatch.setenv("ML_DASH_API_KEY", key)  # the key from the environment
    picked = ml_dash.search_runs(server.url, project=PROJECT, filter="opt != sgd", order_by="-params.lr")
    assert list(picked["name"]) == ["run-1", "run-2"]
    assert len(ml_dash.search_runs(server.url, project=PROJECT, filter="a/b/c < 1, lr > 0")) == 0  # no such metric
    with pytest.raises(ConditionError, match="not a condition"):
        ml_dash.search_runs(server.url, project=PROJECT, filter="lr")


def test_the_columnar_read_streams_the_series_and_pages_by_its_limit(tmp_path: Path, server: Server) -> None:
    key = server.key("alice")
    make_runs(tmp_path / "local", server, key)
    url = f"{server.url}/api/v1/experiments/{PROJECT}/run-0/metrics/train/columns?start=5&limit=10"
    request = __import__("urllib.request").request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with direct.open(request, timeout=30) as response:
        assert response.headers["Content-Type"] == CONTENT_TYPE
        reader = ColumnsReader("train")
        chunks = list(reader.feed(response.read()))
    assert reader.close() == 15 and [(first, count) for first, count, _ in chunks] == [(5, 10)]
    status, _ = server.request("GET", f"/api/v1/experiments/{PROJECT}/run-0/metrics/train/columns")
    assert status == 401  # as every read: a key
    status, _ = server.request("GET", f"/api/v1/experiments/{PROJECT}/run-0/metrics/train/columns?limit=0", key=key)
    assert status == 400


def test_a_servers_missing_run_or_stream_is_an_error_naming_what_there_is(tmp_path: Path, server: Server) -> None:
    key = server.key("alice")
    make_runs(tmp_path / "local", server, key)
    with pytest.raises(NotFoundError, match=r"has no metric 'nope' \(it has: eval, train\)"):
        ml_dash.history(server.url, f"{PROJECT}/run-0", "nope", api_key=key)
    with pytest.raises(NotFoundError, match="has no run alice/proj/run-9"):
        ml_dash.history(server.url, f"{PROJECT}/run-9", "train", api_key=key)
    with pytest.raises(MLDashError, match="HTTP 401"):
        ml_dash.search_runs(server.url, project=PROJECT, api_key="mld_wrong")


def test_export_writes_the_run_table_and_a_parquet_per_run_and_stream(tmp_path: Path, server: Server) -> None:
    key = server.key("alice")
    make_runs(tmp_path / "local", server, key)
    out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "export", str(tmp_path / "local"), "--project", PROJECT,
                          "--parquet", str(tmp_path / "from-local")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 runs, 6 streams, 906 rows" in out.stdout
    for bad in (["--project", "alice"], ["--project", PROJECT, "--filter", "lr"]):  # one line, status 2
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "export", str(tmp_path / "local"), *bad, "--parquet",
                              str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("ml-dash export: ")
    summary = export_parquet(server.url, PROJECT, tmp_path / "from-server", filter="lr < 0.05", api_key=key)
    assert (summary.runs, summary.streams, summary.rows) == (2, 4, 604)
    for root in ("from-local", "from-server"):
        runs = pq.read_table(tmp_path / root / "runs.parquet").to_pandas()
        assert {"prefix", "params.lr", "metrics.train/loss"} <= set(runs.columns)
        train = pq.read_table(tmp_path / root / PROJECT / "run-1" / "train.parquet").to_pandas()
        assert same_values(train, ml_dash.history(tmp_path / "local", f"{PROJECT}/run-1", "train"))
    assert sorted(p.name for p in (tmp_path / "from-server" / PROJECT).iterdir()) == ["run-1", "run-2"]


# -- a hostile server ------------------------------------------------------------------------------
def _listing(prefix: str, latest: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"experiments": [{"prefix": prefix, "status": "COMPLETED", "params": {}, "latest": latest or {}}]}


@pytest.mark.parametrize("prefix, words", [
    ("alice/proj/../../../etc", "bad prefix"), ("alice/other/run", "among those of alice/proj"),
    ("/abs/olute/x", "bad prefix"), ("alice/proj/run\n", "bad prefix")])
def test_a_server_listing_runs_that_are_not_the_projects_writes_nothing(tmp_path: Path, prefix: str, words: str) -> None:
    evil = EvilServer({"/api/v1/experiments": _listing(prefix)})
    try:
        with pytest.raises(MLDashError, match=words):
            export_parquet(evil.url, PROJECT, tmp_path / "out", api_key="k")
    finally:
        evil.close()
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_server_naming_a_stream_that_is_no_file_name_is_refused(tmp_path: Path) -> None:
    evil = EvilServer({"/api/v1/experiments": _listing("alice/proj/run", {"../../x": {"loss": 1.0}})})
    try:
        with pytest.raises(MLDashError, match="cannot be a file name"):
            export_parquet(evil.url, PROJECT, tmp_path / "out", api_key="k")
    finally:
        evil.close()
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == ["out/runs.parquet"]


def test_a_columnar_reply_cut_short_or_malformed_is_an_error_not_a_shorter_series() -> None:
    from ml_dash.format.columns import ColumnsError, chunk_frames, header, trailer
    from ml_dash.format.wire import metric_blocks, pack

    blob = pack(metric_blocks([{"data": {"loss": 1.0}, "createdAt": "2026-12-01T00:00:00Z"}] * 3))
    whole = header("train") + chunk_frames([(0, 3, blob)]) + trailer(None)
    reader = ColumnsReader("train")
    assert [c[:2] for c in reader.feed(whole)] == [(0, 3)] and reader.close() is None
    cut = ColumnsReader("train")
    list(cut.feed(whole[:-3]))
    with pytest.raises(ColumnsError, match="cut off"):
        cut.close()
    for bad in (chunk_frames([(0, 4, blob)]), chunk_frames([(0, 3, blob), (1, 3, blob)]), pack({"error": "disk"}),
                pack([0, 1, [{"keys": ["a"], "cols": [[1, 2]], "created": [["t", 1]]}]])):
        with pytest.raises(ColumnsError):
            list(ColumnsReader("train").feed(header("train") + bad))
    with pytest.raises(ColumnsError, match="no version 1 header"):
        list(ColumnsReader("train").feed(pack(json.loads('{"v": 9}'))))


def test_a_server_answering_what_is_not_json_is_an_error_naming_it() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Html(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "13")
            self.end_headers()
            self.wfile.write(b"<html>a proxy")

    site = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        with pytest.raises(MLDashError, match="not JSON"):
            ml_dash.search_runs(f"http://127.0.0.1:{site.server_address[1]}", project=PROJECT, api_key="k")
    finally:
        site.shutdown()
        site.server_close()


def test_a_read_that_fails_after_the_reply_began_ends_it_with_an_error_the_reader_raises(
        tmp_path: Path, app_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam: the storage fails its second call (an archived chunk lost, a store gone), after the first
    slice of the series was sent with the status line. Made real, it needs a lost object holding later rows
    than the database's, which archival (oldest first) never leaves."""
    from ml_dash.server.storage.errors import ArchiveUnreadable
    from ml_dash.server.storage.sqlite.store import SQLiteStorage

    if app_server.db is not None:
        pytest.skip("the seam is SQLite's storage")
    key = app_server.key("alice")
    exp = Experiment(prefix=f"{PROJECT}/long", remote=app_server.url, api_key=key, local_path=tmp_path / "run")
    with exp.run:
        for step in range(10_000):
            exp.metrics("train").log(step=step)
    real = SQLiteStorage.metric_chunks
    calls: list[int] = []

    async def second_call_fails(self: Any, exp_id: int, metric: str, start: int, end: int | None,
                                max_bytes: int) -> Any:
        calls.append(start)
        if len(calls) > 1:
            raise ArchiveUnreadable(f"rows {start}.. are archived in object x, which the blob store does not hold")
        return await real(self, exp_id, metric, start, end, 1)  # one chunk a call

    monkeypatch.setattr(SQLiteStorage, "metric_chunks", second_call_fails)
    with pytest.raises(MLDashError, match="failed reading 'train': stored rows cannot be read: rows 4096"):
        ml_dash.history(app_server.url, f"{PROJECT}/long", "train", api_key=key)
    assert calls == [0, 4096]


@pytest.mark.parametrize("tail", [b"5\r\nab", b"zz\r\nabc\r\n"], ids=["cut mid-chunk", "garbage chunk size"])
def test_a_columnar_reply_that_breaks_off_in_transport_is_an_error_naming_it(tail: bytes) -> None:
    import socket
    import threading

    from ml_dash.format.columns import header

    listener = socket.create_server(("127.0.0.1", 0))
    head = header("train")

    def answer() -> None:
        for _ in range(2):  # the run list is not asked: one request for the columns (and none after)
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() +
                             b"\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(head):x}\r\n".encode() + head + b"\r\n" + tail)

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(MLDashError, match="the reply broke off"):
            ml_dash.history(f"http://127.0.0.1:{listener.getsockname()[1]}", f"{PROJECT}/run", "train", api_key="k")
    finally:
        listener.close()
