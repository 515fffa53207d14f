"""A run of 100,000 metric streams (the most a run may hold) costs a read of the run list or of the run
document a bounded page, not the run (issue 14, point 4): the list carries a few latest values per run
(and those asked for by name), the document one page of streams with ``streams_next``, and every reader
that follows the pages (the SDK's, the tests' helper, the web UI) still gets every stream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ml_dash.format.wire import metric_blocks
from ml_dash.remote.reads import ServerReads
from ml_dash.server.config import ServerConfig
from ml_dash.server.storage.chunks import prepare_rows
from ml_dash.server.storage.pages import FILTER_SCAN, LIST_LATEST_METRICS, MAX_LIST_VALUES, STREAM_PAGE
from ml_dash.server.storage.records import IngestBatch
from ml_dash.server.storage.sqlite.store import SQLiteStorage

from .browser import Tab
from .made_once import made_once
from .server_process import Server, direct
from .sites import ServerSite

WIDE = 100_000
LATEST = {"loss": 0.5, "acc": 0.9}


def _name(i: int) -> str:
    return f"layer{i:06d}"


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server's data directory holding alice/p/wide (100,000 metrics of one row each) and alice/p/small
    (three metrics), built through the storage API in one batch (the server takes 1,000 new streams a
    request; a storage has no such cap), in a few seconds, once per test run (tests/made_once.py)."""
    return made_once(tmp_path_factory, "wide-run", _build_wide_data)


def _build_wide_data(data: Path) -> None:
    async def build() -> None:
        storage = SQLiteStorage(ServerConfig(data_dir=data).database)
        await storage.open()
        try:
            row = prepare_rows(0, metric_blocks([{"data": LATEST, "createdAt": "2026-12-01T00:00:00Z"}]))
            await storage.ingest(IngestBatch("alice", "p", "wide", run_id="w", writer_id="w", named_reply=True,
                                             metrics={_name(i): row for i in range(WIDE)}))
            await storage.ingest(IngestBatch("alice", "p", "small", run_id="s", writer_id="s",
                                             metrics={m: row for m in ("eval", "train", "system")}))
        finally:
            await storage.close()

    # on a thread of its own: a browser test (Playwright's sync API) may have left an event loop running here
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, build()).result()


@pytest.fixture
def wide(wide_data: Path) -> Iterator[tuple[Server, str]]:
    """A real server over that data, and alice's key."""
    server = Server(wide_data)
    try:
        yield server, server.key("alice")
    finally:
        server.stop()


def _runs(server: Server, key: str, query: str = "") -> tuple[int, dict[str, Any]]:
    status, body = server.request("GET", f"/api/v1/experiments?owner=alice&project=p{query}", key=key)
    return status, {e["name"]: e for e in body.get("experiments", [])} if status == 200 else body


def test_the_run_list_carries_a_bounded_part_of_a_wide_runs_latest_values(wide: tuple[Server, str]) -> None:
    server, key = wide
    status, runs = _runs(server, key, "&latest=1")
    assert status == 200
    latest = runs["wide"]["latest"]
    assert list(latest) == [_name(i) for i in range(LIST_LATEST_METRICS)]  # the first few by name
    assert runs["wide"]["latest_more"] is True  # and it says that more exist
    assert sum(map(len, latest.values())) <= MAX_LIST_VALUES
    assert runs["small"]["latest"] == {m: LATEST for m in ("eval", "system", "train")}  # a usual run: all of it
    assert "latest_more" not in runs["small"]

    # a column of a metric past the first few: asked for by name, carried besides them
    status, runs = _runs(server, key, f"&latest=1&latest_metrics={_name(WIDE - 1)},{_name(50_000)},nosuch")
    assert status == 200 and runs["wide"]["latest"][_name(WIDE - 1)] == LATEST
    assert runs["wide"]["latest"][_name(50_000)] == LATEST
    assert len(runs["wide"]["latest"]) == LIST_LATEST_METRICS + 2
    assert "latest" not in _runs(server, key)[1]["wide"]  # none unasked

    status, body = _runs(server, key, "&latest=1&latest_metrics=a/b")
    assert status == 400 and "latest_metrics" in body["error"]
    status, body = _runs(server, key, "&latest=1&latest_metrics=" + ",".join(f"m{i}" for i in range(33)))
    assert status == 400 and "at most 32" in body["error"]


def test_the_run_document_carries_one_page_of_streams_and_following_next_yields_every_stream(
        wide: tuple[Server, str]) -> None:
    server, key = wide
    status, doc = server.request("GET", "/api/v1/experiments/alice/p/wide", key=key)
    assert status == 200
    assert list(doc["streams"]) == [f"metrics/{_name(i)}" for i in range(STREAM_PAGE)]
    assert doc["streams_next"] == f"metrics/{_name(STREAM_PAGE - 1)}"
    assert set(doc["latest"]) == {_name(i) for i in range(STREAM_PAGE)}  # the page's metrics, not the run's

    status, whole = server.document("alice/p/wide", key=key)  # the tests' helper follows the pages
    assert status == 200 and whole["streams"] == {f"metrics/{_name(i)}": 1 for i in range(WIDE)}
    assert len(whole["latest"]) == WIDE and whole["latest"][_name(WIDE - 1)] == LATEST

    sdk = ServerReads(server.url, "alice/p/wide", key, None).experiment()  # pull, resume and sync read this
    assert sdk is not None and sdk["streams"] == whole["streams"] and "streams_next" not in sdk
    assert len(sdk["latest"]) == WIDE

    status, small = server.request("GET", "/api/v1/experiments/alice/p/small", key=key)
    assert status == 200 and len(small["streams"]) == 3 and "streams_next" not in small


def test_the_run_document_still_answers_304_while_nothing_changed(wide: tuple[Server, str]) -> None:
    server, key = wide

    def get(path: str, held: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {key}", **({"If-None-Match": held} if held else {})}
        try:
            with direct.open(urllib.request.Request(server.url + path, headers=headers), timeout=30) as resp:
                return resp.status, resp.headers["ETag"]
        except urllib.error.HTTPError as err:
            return err.code, err.headers["ETag"]

    for path in ("/api/v1/experiments/alice/p/wide",
                 f"/api/v1/experiments/alice/p/wide/streams?after={quote('metrics/' + _name(5000))}"):
        status, tag = get(path)
        assert status == 200 and get(path, tag) == (304, tag)


def test_a_page_of_streams_is_bounded_and_a_filter_pages_through_its_scan(wide: tuple[Server, str]) -> None:
    server, key = wide
    base = "/api/v1/experiments/alice/p/wide/streams"
    assert server.request("GET", f"{base}?limit={STREAM_PAGE + 1}", key=key)[0] == 400
    status, page = server.request("GET", f"{base}?limit=10&after={quote('metrics/' + _name(WIDE - 5))}", key=key)
    assert status == 200 and list(page["streams"]) == [f"metrics/{_name(i)}" for i in range(WIDE - 4, WIDE)]
    assert "next" not in page

    # a filter that matches only near the end: each page examines at most FILTER_SCAN streams and says
    # where to go on, so following next finds every match
    found: dict[str, int] = {}
    after, pages = "", 0
    while after is not None and pages < 100:
        status, page = server.request("GET", f"{base}?q=LAYER09999&after={quote(after)}", key=key)
        assert status == 200 and len(page["streams"]) <= STREAM_PAGE
        found.update(page["streams"])
        after, pages = page.get("next"), pages + 1
    assert found == {f"metrics/{_name(i)}": 1 for i in range(WIDE - 10, WIDE)}
    assert pages == -(-WIDE // FILTER_SCAN)


def test_the_web_ui_shows_a_wide_run_in_its_table_and_every_metric_on_its_page(
        wide: tuple[Server, str], tab: Tab) -> None:
    server, _ = wide
    site = ServerSite(server)
    site.open(tab)
    page = tab.page
    page.goto(server.url + "/?owner=alice&project=p")
    page.locator("[data-run='alice/p/wide']").wait_for()
    page.locator("[data-run='alice/p/small']").wait_for()
    # a column of a metric past the first few of the run: the table asks the server for it by name
    page.goto(server.url + f"/?owner=alice&project=p&cols=metric:{_name(WIDE - 1)}/loss")
    page.wait_for_function("() => (document.querySelector(\"[data-run='alice/p/wide']\") || {}).innerText"
                           "?.includes('0.5')")  # numbers for people (format.js): 0.5, not 0.50000
    assert any("latest_metrics=" + _name(WIDE - 1) in u for u in tab.requests)
    page.goto(server.url + "/?run=alice/p/wide")
    page.wait_for_function("() => (document.querySelector('.shown-bar') || {}).innerText"
                           f"?.includes('24 of {WIDE} metrics shown')")
    page.fill("input[name=mq]", _name(WIDE - 1))  # a metric of the last page of streams
    page.wait_for_function(f"() => [...document.querySelectorAll('figure.chart')].some((f) => f.dataset.metric === "
                           f"'{_name(WIDE - 1)}')")
    assert tab.errors == []


def test_a_server_whose_stream_pages_never_end_or_are_malformed_is_not_followed_for_ever() -> None:
    from ml_dash.errors import MLDashError

    from .evil_server import EvilServer

    doc = {"run_id": "r", "streams": {"metrics/a": 1}, "latest": {}, "streams_next": "metrics/a"}
    looping = EvilServer({"/api/v1/experiments/alice/p/r": doc,
                          "/api/v1/experiments/alice/p/r/streams": {"streams": {"metrics/b": 2}, "next": "metrics/a"}})
    try:
        got = ServerReads(looping.url, "alice/p/r", None, "alice", timeout_s=10).experiment()
        assert got is not None and got["streams"] == {"metrics/a": 1, "metrics/b": 2}  # a next going back: the end
        assert len(looping.requests) == 2
    finally:
        looping.close()
    broken = EvilServer({"/api/v1/experiments/alice/p/r": doc, "/api/v1/experiments/alice/p/r/streams": {"streams": []}})
    try:
        with pytest.raises(MLDashError, match="without a map of streams"):
            ServerReads(broken.url, "alice/p/r", None, "alice", timeout_s=10).experiment()
    finally:
        broken.close()
