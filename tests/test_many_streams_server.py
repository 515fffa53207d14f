"""Runs of thousands of metrics on the read side (issue 14): ``ml-dash sync``, the server's API, ``ml-dash ui``
(its index follows the runs at a cost of a stat per stream, nothing for an ended run) and the web UI (a
page of charts at a time, never a request per metric of the run).

The 20,000-metric test is the slow one of this file (about a minute and a half here): marked ``slow``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ml_dash import Experiment
from ml_dash._run.reading import find_runs
from ml_dash.server import local_index
from ml_dash.server.local_index import LocalIndex
from ml_dash.server.storage.sqlite.store import SQLiteStorage

from .browser import Tab
from .conftest import python_script
from .server_process import LocalUi, Server
from .sites import Site
from .waiting import wait_for


def _wide_run(prefix: str, metrics: int, rows: int = 1, **options: Any) -> Experiment:
    exp = Experiment(prefix=prefix, **options)
    with exp.run:
        for step in range(rows):
            for i in range(metrics):
                exp.metrics(f"layer{i}").log(v=i, step=step)
    return exp


# -- ml-dash ui's index ---------------------------------------------------------------------------------
def _index_passes(root: Path, passes: list[Any], monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Run the index over ``root`` once per item of ``passes`` (each a callable run before its pass, or None);
    the stream files each pass read."""
    reads: list[list[str]] = []
    real = local_index._read_on
    monkeypatch.setattr(local_index, "_read_on", lambda stream, *a: reads[-1].append(stream) or real(stream, *a))

    async def main() -> None:
        storage = SQLiteStorage(root.parent / "index.sqlite")
        await storage.open()
        try:
            index = LocalIndex(root, storage)
            for before in passes:
                if before is not None:
                    before()
                reads.append([])
                await index.refresh(force=True)
        finally:
            await storage.close()

    # on a thread of its own: a browser test of this module (Playwright's sync API) may have left an
    # event loop running on this one, and asyncio.run refuses to start under a running loop
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, main()).result()
    return reads


def test_the_local_index_reads_only_streams_that_grew_and_nothing_of_an_ended_run(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _wide_run("alice/p/ended", 300)
    live = Experiment(prefix="alice/p/live")
    live.run.start()
    try:
        for i in range(300):
            live.metrics(f"layer{i}").log(v=i)
        live.flush()

        def grow() -> None:
            live.metrics("layer7").log(v=-1)
            live.flush()

        reads = _index_passes(workdir / ".dash", [None, None, grow], monkeypatch)
    finally:
        live.run.complete()
    assert len(reads[0]) == 2 * 300  # every stream once
    assert reads[1] == []  # nothing grew: no file opened (the ended run's streams not even looked at)
    assert reads[2] == ["metrics/layer7"]


def test_finding_runs_does_not_walk_into_a_runs_own_folders(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _wide_run("alice/p/wide", 500)
    listed: list[str] = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(str(path)) or real(path))
    assert list(find_runs(workdir / ".dash")) == [exp.directory]
    assert len(listed) <= 5, listed[:10]  # .dash, alice, p, the run (not its 500 metric folders)


# -- the web UI: a page of charts at a time ---------------------------------------------------------------
def _metrics_drawn(page: Any) -> set[str]:
    return set(page.evaluate("() => [...document.querySelectorAll('figure.chart')].map((f) => f.dataset.metric)"))


def test_a_run_of_many_metrics_shows_a_page_of_charts_at_a_time_behind_a_filter(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/p/wide")
    with exp.run:
        for i in range(60):
            exp.metrics(f"layer{i}").log(v=float(i), step=0)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/p/wide")
    # one chart a metric: its step is the x axis, not a chart of its own (xaxis.js)
    page.wait_for_function("() => document.querySelectorAll('figure.chart canvas').length === 24")
    assert len(_metrics_drawn(page)) == 24
    asked = {urlsplit(u).path.rsplit("/", 1)[-1] for u in tab.requests if "/metrics/" in urlsplit(u).path}
    assert len(asked) == 24, sorted(asked)  # one metric's charts share their reads; no read of the others
    assert "24 of 60 metrics shown" in page.locator(".shown-bar").inner_text()
    page.fill("input[name=mq]", "layer5")
    page.wait_for_function("() => new Set([...document.querySelectorAll('figure.chart')]"
                           ".map((f) => f.dataset.metric)).size === 11")
    assert _metrics_drawn(page) == {"layer5", *(f"layer5{i}" for i in range(10))}
    assert "11 of 11 metrics shown (60 in all)" in page.locator(".shown-bar").inner_text()
    page.fill("input[name=mq]", "")
    page.get_by_role("button", name="show 24 more metrics (36 not shown)").click()
    page.wait_for_function("() => new Set([...document.querySelectorAll('figure.chart')]"
                           ".map((f) => f.dataset.metric)).size === 48")
    assert "mn=48" in page.url  # the view is in the URL, as every view's state
    assert tab.errors == []


# -- 20,000 metrics: written, synced, served --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_of_20000_metrics_is_written_synced_and_served_by_the_server_and_by_ml_dash_ui(
        tmp_path: Path) -> None:
    """Issue 14: any number of metric streams. 20,000 names, 2 rows each, under a 1,024-descriptor limit;
    ``ml-dash sync`` to a real server; the run document and a metric page through the server's API and
    through ``ml-dash ui``."""
    names, rows = 20_000, 2
    result = python_script(f"""
        import json, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        from ml_dash import Experiment
        exp = Experiment(prefix="alice/p/wide")
        exp.run.start()
        for step in range({rows}):
            for i in range({names}):
                exp.metrics(f"layer{{i}}").log(v=i, step=step)
        ended = exp.run.complete(timeout_s=600)
        streams = exp.stats()["streams"]
        print(json.dumps({{"ended": ended, "dropped": sum(sum(s["dropped"].values()) for s in streams.values()),
                          "written": sum(s["written"] for n, s in streams.items() if n.startswith("metrics/"))}}))
    """, tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"ended": True, "dropped": 0, "written": names * rows}
    run_dir = tmp_path / ".dash/alice/p/wide"
    assert json.loads((run_dir / "experiment.json").read_text())["status"] == "COMPLETED"

    server = Server(tmp_path / "server-data")
    try:
        key = server.key("alice")
        (tmp_path / "key").write_text(key)
        sync = subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", str(run_dir), "--remote", server.url,
                               "--api-key-file", str(tmp_path / "key")], capture_output=True, text=True, timeout=600)
        assert sync.returncode == 0 and f"{names * rows}/{names * rows} rows" in sync.stdout, sync.stdout + sync.stderr
        status, doc = server.document("alice/p/wide", key=key)
        assert status == 200 and doc["status"] == "COMPLETED"
        assert sum(1 for s in doc["streams"] if s.startswith("metrics/")) == names
        status, page = server.request("GET", f"/api/v1/experiments/alice/p/wide/metrics/layer{names - 1}?limit=10",
                                      key=key)
        assert status == 200 and [r["data"]["step"] for r in page["rows"]] == list(range(rows))
    finally:
        server.stop()

    ui = LocalUi(tmp_path / ".dash")
    try:
        def indexed() -> bool:  # each read lets the index's pass go on
            status, doc = ui.document("alice/p/wide")
            return status == 200 and sum(n for s, n in doc["streams"].items() if s.startswith("metrics/")) == names * rows

        wait_for(indexed, "ml-dash ui indexing the 20,000 metrics")
        status, page = ui.request("GET", f"/api/v1/experiments/alice/p/wide/metrics/layer{names - 1}?limit=10")
        assert status == 200 and [r["data"]["step"] for r in page["rows"]] == list(range(rows))
    finally:
        ui.stop()


def test_an_owner_project_or_run_named_files_is_found_and_a_run_saved_as_a_file_is_not(workdir: Path) -> None:
    """Every folder named ``files`` was skipped, so ``alice/files/run`` (and ``files/p/r``, ``alice/p/files``)
    never showed in ``ml-dash ui`` or ``ml-dash ls``; a run's own ``files`` folder stays unwalked: an
    ``experiment.json`` saved there as a file is no run."""
    runs = []
    for prefix in ("alice/files/run", "files/p/r", "alice/p/files"):
        exp = Experiment(prefix=prefix, local_path=".dash")
        with exp.run:
            exp.metrics("train").log(loss=1.0)
        runs.append(exp.directory)
    saver = Experiment(prefix="alice/p/saver", local_path=".dash")
    with saver.run:
        saver.files("backup").save((runs[0] / "experiment.json").read_bytes(), "experiment.json")
    assert sorted(find_runs(workdir / ".dash")) == sorted([*runs, saver.directory])
