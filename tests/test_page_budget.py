"""A read page is bounded by its size as well as its rows (a real server process): wide metric rows
and large log lines come in shorter pages that carry ``next``, and every reader follows it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ml_dash.format.wire import metric_blocks
from ml_dash.remote.reads import ServerReads

from .app_server import AppServer
from .server_process import Server

ROWS, FIELDS = 30_000, 60  # 1.8M values: past one page's value budget (500,000)
RUN = "/api/v1/experiments/alice/p/wide"


def _wide_rows(start: int, n: int) -> list[dict[str, Any]]:
    return [{"data": {"step": i, **{f"f{k}": float(i + k) for k in range(FIELDS - 1)}},
             "createdAt": "2026-11-26T00:00:00.000000Z"} for i in range(start, start + n)]


def _load_wide_run(server: Server, key: str) -> None:
    for start in range(0, ROWS, 5_000):
        body = {"v": 2, "identity": {"run_id": "r", "writer_id": "w"},
                "streams": {"metrics/train": {"start": start, "blocks": metric_blocks(_wide_rows(start, 5_000))},
                            "metrics/narrow": {"start": start, "blocks": metric_blocks(
                                [{"data": {"step": i, "loss": 1.0}, "createdAt": "t"} for i in range(start, start + 5_000)])}}}
        assert server.ingest("alice/p/wide", body, key)[0] == 200


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_a_page_of_wide_rows_is_cut_by_its_values_and_next_leads_to_every_row_once(app_server: AppServer) -> None:
    key = app_server.key("alice")
    _load_wide_run(app_server, key)
    status, page = app_server.request("GET", f"{RUN}/metrics/train?start=0&limit=100000", key=key)
    assert status == 200 and 0 < len(page["rows"]) < ROWS
    assert page["next"] == page["rows"][-1]["index"] + 1  # the first row not sent
    seen: list[int] = []
    start = 0
    for _ in range(100):  # following next by hand
        status, page = app_server.request("GET", f"{RUN}/metrics/train?start={start}&limit=100000", key=key)
        seen += [r["index"] for r in page["rows"]]
        if "next" not in page:
            break
        start = page["next"]
    assert seen == list(range(ROWS))
    assert [r["data"]["step"] for r in app_server.metric_rows("alice/p/wide", key=key)] == list(range(ROWS))
    reads = ServerReads(app_server.url, "alice/p/wide", key, None)  # what ml-dash pull and remote reads use
    rows = reads.metric_rows("train", 0, None)
    assert [r["index"] for r in rows] == list(range(ROWS)) and len(rows[-1]["data"]) == FIELDS
    assert [r["index"] for r in reads.metric_rows("train", 100, 20_000)] == list(range(100, 20_100))
    # a narrow metric's page is whole: the budget does not shrink ordinary pages
    status, narrow = app_server.request("GET", f"{RUN}/metrics/narrow?start=0&limit=100000", key=key)
    assert len(narrow["rows"]) == ROWS and "next" not in narrow
    # a final page that fits carries no next either
    status, tail = app_server.request("GET", f"{RUN}/metrics/train?start={ROWS - 10}&limit=100000", key=key)
    assert len(tail["rows"]) == 10 and "next" not in tail


def test_a_log_page_of_large_lines_is_cut_by_its_bytes_and_followed(app_server: AppServer) -> None:
    key = app_server.key("alice")
    line = os.urandom(150 * 1024).hex()  # 300 KiB that do not compress (the server refuses bombs)
    for start in range(32):  # 32 lines of 300 KiB: about 9.4 MiB, past one page's 8 MiB
        rows = [{"timestamp": "t", "level": "info", "message": f"{start + i}:{line}"} for i in range(1)]
        body = {"v": 2, "identity": {"run_id": "r", "writer_id": "w"}, "streams": {"logs": {"start": start, "rows": rows}}}
        reply = app_server.ingest("alice/p/wide", body, key)
        assert (reply[0], reply[1].get("acked")) == (200, {"logs": start + 1}), reply[1].get("error")
    status, page = app_server.request("GET", f"{RUN}/logs?start=0&limit=100000", key=key)
    assert status == 200 and 0 < len(page["logs"]) < 32
    assert page["next"] == page["logs"][-1]["sequenceNumber"] + 1
    lines = ServerReads(app_server.url, "alice/p/wide", key, None).logs(None)
    assert [int(x["message"].split(":")[0]) for x in lines] == list(range(32))
    assert [x["sequenceNumber"] for x in lines] == list(range(32))
