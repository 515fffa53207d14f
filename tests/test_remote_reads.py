"""In remote mode the SDK's read methods ask the server for a run this process did not write."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.errors import MLDashError

from .app_server import AppServer
from .server_process import Server


def _written_elsewhere(tmp_path: Path, server: Server, key: str) -> Experiment:
    """A run logged to the server from another working directory (another machine's disk)."""
    exp = Experiment(prefix="alice/proj/elsewhere", remote=server.url, api_key=key,
                     local_path=tmp_path / "other-machine" / "run")
    with exp.run:
        exp.params.set(lr=0.1, model={"depth": 8})
        for i in range(1500):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.metrics("train").log(loss=math.nan, step=1500)
        exp.log("starting", level="info")
        exp.log("diverged", level="warn", step=1500)
        exp.files("models").save_text("weights", to="model.txt")
    return exp


def test_a_run_written_elsewhere_reads_the_same_from_the_server(workdir: Path, tmp_path: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    original = _written_elsewhere(tmp_path, app_server, key)
    reader = Experiment(prefix="alice/proj/elsewhere", remote=app_server.url, api_key=key)  # never started here
    assert not reader.directory.exists()

    rows = reader.metrics("train").read(limit=None)
    local = original.metrics("train").read(limit=None)
    assert [r["index"] for r in rows] == list(range(1501))
    assert [r["data"] for r in rows[:1500]] == [r["data"] for r in local[:1500]]
    assert math.isnan(rows[1500]["data"]["loss"])  # restored to a float, as locally
    assert [r["index"] for r in reader.metrics("train").read(start_index=1000, limit=10)] == list(range(1000, 1010))

    assert [line["message"] for line in reader.logs.read()] == ["starting", "diverged"]
    assert [line["message"] for line in reader.logs.read(level="warning")] == ["diverged"]
    assert reader.params.get() == {"lr": 0.1, "model.depth": 8}
    assert reader.params.get(flatten=False) == {"lr": 0.1, "model": {"depth": 8}}

    (entry,) = reader.files("models").list()
    assert entry["path"] == "models/model.txt"
    target = reader.files("models").download("model.txt", tmp_path)
    assert target == tmp_path / "model.txt" and target.read_text() == "weights"
    with pytest.raises(FileNotFoundError, match="no saved file"):
        reader.files("models").download("missing.txt", tmp_path)


def test_a_run_the_server_does_not_have_reads_empty(workdir: Path, app_server: AppServer) -> None:
    reader = Experiment(prefix="alice/proj/never", remote=app_server.url, api_key=app_server.key("alice"))
    assert reader.metrics("train").read() == [] and reader.logs.read() == []
    assert reader.params.get() == {} and reader.files.list() == []


def test_refused_or_unreachable_reads_fail_naming_the_server_and_the_reason(workdir: Path, app_server: AppServer,
                                                                           dead_url: str) -> None:
    wrong = Experiment(prefix="alice/proj/x", remote=app_server.url, api_key="mld_000000000000_wrong")
    with pytest.raises(MLDashError, match=rf"cannot read alice/proj/x from {app_server.url}: HTTP 401"):
        wrong.metrics("train").read()
    down = Experiment(prefix="alice/proj/x", remote=dead_url, api_key="mld_000000000000_wrong")
    with pytest.raises(MLDashError, match=rf"cannot read alice/proj/x from {dead_url}"):
        down.logs.read()


def test_a_run_started_in_this_process_reads_its_own_directory(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    exp = Experiment(prefix="alice/proj/mine", remote=app_server.url, api_key=key)
    with exp.run:
        exp.metrics("train").log(step=1)
        assert exp.metrics("train").read()[0]["data"]["step"] == 1  # buffered rows too, before any upload


def test_reads_follow_every_page_and_skip_the_indices_a_client_set_aside(workdir: Path, app_server: AppServer) -> None:
    from ml_dash.format.wire import encode_body, metric_blocks
    from ml_dash.remote.reads import ServerReads

    key = app_server.key("alice")
    identity = {"run_id": "r", "writer_id": "w"}

    def rows(start: int, n: int) -> dict:
        return {"start": start, "blocks": metric_blocks([{"data": {"step": i}, "createdAt": "c"}
                                                        for i in range(start, start + n)])}

    for streams in ({"metrics/train": rows(0, 1200)}, {"metrics/train": {"start": 1200, "void": 3, "reason": "x"}},
                    {"metrics/train": rows(1203, 1300)}):
        status, _ = app_server.request("POST", "/api/v1/runs/alice/p/paged/events",
                                   encode_body({"v": 2, "identity": identity, "streams": streams}),
                                   {"Content-Encoding": "zstd"}, key)
        assert status == 200
    reads = ServerReads(app_server.url, "alice/p/paged", key, None, page_rows=500)
    steps = [r["data"]["step"] for r in reads.metric_rows("train", 0, None)]
    assert steps == list(range(1200)) + list(range(1203, 2503))  # six pages, nothing twice, nothing missing
    assert [r["index"] for r in reads.metric_rows("train", 1190, 20)] == list(range(1190, 1200)) + list(range(1203, 1213))


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row25_one_call_downsamples_a_whole_series_and_keeps_every_spike(workdir: Path, server: Server) -> None:
    import random
    import subprocess
    import sys

    rng = random.Random(7)
    n = 300_000
    spikes = set(rng.sample(range(n), 25))
    # logged in a process of its own whose calls wait for the agent instead of dropping (a loaded machine
    # starves the agent: a drop would shift every later index, and this row is about the reads)
    logger = ("from ml_dash import Experiment\n"
              f"spikes = set({sorted(spikes)!r})\n"
              "with Experiment(prefix='alice/proj/long').run as exp:\n"
              "    train = exp.metrics('train')\n"
              f"    for i in range({n}):\n"
              "        loss = 1e6 if i in spikes else (float('nan') if i % 9973 == 0 else 0.5)\n"
              "        train.log(step=i, loss=loss, note='x' if i % 2 else None)\n"
              f"assert exp.stats()['streams']['metrics/train']['written'] == {n}, exp.stats()\n")  # after the end
    logged = subprocess.run([sys.executable, "-c", logger],
                            cwd=workdir, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ML_DASH_MAX_BLOCK_S": "60"})
    assert logged.returncode == 0, logged.stderr
    key = server.key("alice")
    synced = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", server.url,
                             "--api-key", key], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    status, body = server.request("GET", "/api/v1/experiments/alice/proj/long/metrics/train?buckets=1000", key=key)
    assert status == 200, body
    buckets = body["buckets"]
    assert 500 <= len(buckets) <= 1000 and sum(b["count"] for b in buckets) == n
    assert buckets[0]["first"] == 0 and buckets[-1]["last"] == n - 1
    assert all(a["last"] + 1 == b["first"] for a, b in itertools.pairwise(buckets))  # contiguous, no overlap
    spiked = {b["first"] for b in buckets if b["fields"]["loss"]["max"] == 1e6}
    # every spike, in its bucket, none elsewhere
    assert spiked == {next(b["first"] for b in buckets if b["first"] <= i <= b["last"]) for i in spikes}
    assert all(b["fields"]["loss"]["min"] == 0.5 for b in buckets)  # NaN never becomes a min or max
    assert all(b["fields"]["step"] == {"min": b["first"], "max": b["last"], "first": b["first"], "last": b["last"]}
               for b in buckets)
    assert all("note" not in b["fields"] for b in buckets)  # strings are not charted
    status, ranged = server.request("GET", "/api/v1/experiments/alice/proj/long/metrics/train?buckets=10"
                                           "&start=1000&end=2000", key=key)
    edges = [(b["first"], b["last"], b["count"]) for b in ranged["buckets"]]
    # buckets of 128 indices, aligned to multiples of 128 (so stored summaries fit them), clipped to the range
    assert edges == [(1000, 1023, 24)] + [(1024 + 128 * k, 1151 + 128 * k, 128) for k in range(7)] + [
        (1920, 1999, 80)]
    assert ranged["width"] == 128
    # a live chart's next read: its last bucket again and the new ones, at the width it holds
    status, tail = server.request("GET", "/api/v1/experiments/alice/proj/long/metrics/train?buckets=10000"
                                         f"&width={body['width']}&start={buckets[-1]['first']}&end={n}", key=key)
    assert status == 200 and tail["width"] == body["width"] and tail["buckets"] == buckets[-1:]
    for query, problem in (("width=100&end=2000", "width=100 must be below 64 or a multiple of 64"),
                           ("width=1088&end=2000", "width=1088 must be below 64 or a multiple of 1024"),
                           (f"width={2**62 - 64}&end=2000", f"width={2**62 - 64} must be below 64 or a multiple of 16384"),
                           ("width=64", "width= needs end="),
                           ("width=1&end=20000", "width=1 makes more than buckets=10000 buckets over 0:20000")):
        status, refused = server.request("GET", f"/api/v1/experiments/alice/proj/long/metrics/train?buckets=10000&{query}",
                                         key=key)
        assert status == 400 and problem in refused["error"], (query, refused)


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_row25_reads_of_a_huge_series_while_clients_ingest_all_answer_and_every_row_gets_in(server: Server) -> None:
    """Readers loop over pages at random offsets and whole-series buckets of a 300,000-row series
    while four runs ingest: every read answers correctly, /health keeps answering, and every writer's
    rows are stored and acknowledged. (How fast, under what load, is benchmarks/server.py's table.)"""
    import random
    import threading

    from ml_dash.format.wire import columns_block, encode_body

    key = server.key("alice")
    headers = {"Content-Encoding": "zstd"}

    def body(run: str, start: int, rows: int) -> bytes:
        steps = list(range(start, start + rows))
        block = columns_block(["step", "loss"], [steps, [s * 0.5 for s in steps]], ["2026-01-01T00:00:00Z"] * rows)
        return encode_body({"v": 2, "identity": {"run_id": run, "writer_id": run},
                            "streams": {"metrics/train": {"start": start, "blocks": [block]}}})

    big = 300_000
    for start in range(0, big, 100_000):
        assert server.request("POST", "/api/v1/runs/alice/p/big/events", body("big", start, 100_000), headers, key)[0] == 200
    done = threading.Event()
    failures: list[str] = []
    counts = {"reads": 0, "health": 0}

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not done.is_set():
            start = rng.randrange(big - 1000)
            status, page = server.request("GET", f"/api/v1/experiments/alice/p/big/metrics/train?start={start}"
                                                 "&limit=1000", key=key)
            if status != 200 or [r["data"]["step"] for r in page["rows"]] != list(range(start, start + 1000)):
                failures.append(f"page at {start}: {status}")
            status, out = server.request("GET", "/api/v1/experiments/alice/p/big/metrics/train?buckets=1000", key=key)
            if status != 200 or sum(b["count"] for b in out["buckets"]) != big:
                failures.append(f"buckets: {status}")
            counts["reads"] += 2

    def prober() -> None:
        while not done.is_set():
            if server.request("GET", "/health")[0] != 200:
                failures.append("health")
            counts["health"] += 1
            done.wait(0.05)

    acked: dict[str, int] = {}

    def writer(run: str) -> None:
        for start in range(0, 50_000, 5000):
            status, reply = server.request("POST", f"/api/v1/runs/alice/p/{run}/events", body(run, start, 5000),
                                           headers, key)
            if status != 200:
                failures.append(f"{run} at {start}: {status} {reply}")
                return
            acked[run] = reply["acked"]["metrics/train"]

    background = [threading.Thread(target=reader, args=(k,)) for k in range(3)] + [threading.Thread(target=prober)]
    writers = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(4)]
    for thread in background + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=300)
    done.set()
    for thread in background:
        thread.join(timeout=60)
    assert failures == []
    assert counts["reads"] > 0 and counts["health"] > 0
    assert acked == {f"w{k}": 50_000 for k in range(4)}
    for k in range(4):
        stored = server.metric_rows(f"alice/p/w{k}", key=key)
        assert [r["data"]["step"] for r in stored] == list(range(50_000))
