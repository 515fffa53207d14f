"""Archival from the command line: ``ml-dash server --archive-after`` archives in the background and serves
the same rows; ``ml-dash archive`` runs a pass and says what it moved (metric rows and log lines); bad durations exit 2 naming the
flag; a missing archived object is answered with a clear error, never other rows (real processes)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ml_dash.format.wire import metric_blocks
from ml_dash.server.storage import open_storage

from .server_process import Server, direct
from .test_storage_contract import batch, lines
from .waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PREFIX = "alice/proj/run"
ROWS = 20_000
LINES = 1500


def body(start: int, count: int) -> dict[str, Any]:
    made = [{"data": {"step": i, "loss": (i * 7919) % 1000 / 7}, "createdAt": "2026-12-01T00:00:00Z"}
            for i in range(start, start + count)]
    return {"v": 2, "identity": {"run_id": "run1", "writer_id": "w1"},
            "streams": {"metrics/train": {"start": start, "blocks": metric_blocks(made)}}}


def chunks_in_database(data: Path) -> int:
    with sqlite3.connect(f"file:{data / 'ml-dash.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM metric_chunks").fetchone()[0])


def lines_in_database(data: Path) -> int:
    with sqlite3.connect(f"file:{data / 'ml-dash.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM log_rows").fetchone()[0])


def reads(server: Server, key: str) -> list[Any]:
    out: list[Any] = [server.metric_rows(PREFIX, "train", key=key)]
    for query in ("buckets=100", "buckets=1000", "start=4000&limit=1000", "start=19990&limit=50",
                  "start=1000&end=9000&buckets=50"):
        out.append(server.request("GET", f"/api/v1/experiments/{PREFIX}/metrics/train?{query}", key=key))
    out.append(server.request("GET", f"/api/v1/compare/metrics/train?runs={PREFIX}&buckets=300", key=key))
    for query in ("", "?start=700&limit=50", "?q=line%2012", "?tail=1&limit=9", "?level=info&limit=3000"):
        out.append(server.request("GET", f"/api/v1/experiments/{PREFIX}/logs{query}", key=key))
    return out


def test_the_server_archives_in_the_background_and_answers_the_same_reads(tmp_path: Path) -> None:
    token = tmp_path / "metrics-token"
    token.write_text("t" * 32)
    server = Server(tmp_path, "--archive-after", "1s", "--archive-every", "1s", "--metrics-token-file", str(token))
    try:
        key = server.key("alice")
        for start in range(0, ROWS, 5000):
            assert server.ingest(PREFIX, body(start, 5000), key)[0] == 200
        said = {"v": 2, "identity": {"run_id": "run1", "writer_id": "w1"},
                "streams": {"logs": lines(0, [("INFO", f"line {k}") for k in range(LINES)])}}
        assert server.ingest(PREFIX, said, key)[0] == 200
        before = reads(server, key)
        assert len(before[0]) == ROWS and all(status == 200 for status, _ in before[1:])
        wait_for(lambda: chunks_in_database(tmp_path) == lines_in_database(tmp_path) == 0,
                 "the background archiver to move every chunk and log line")
        assert reads(server, key) == before
        scraped = direct.open(urllib.request.Request(server.url + "/metrics", headers={
            "Authorization": "Bearer " + "t" * 32}), timeout=30).read().decode()
        assert f"ml_dash_archived_rows_total {float(ROWS)}" in scraped
        assert f"ml_dash_archived_log_lines_total {float(LINES)}" in scraped
        assert 'ml_dash_archive_passes_total{outcome="done"}' in scraped
        objects = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file() and len(p.name) == 64]
        assert objects
        for found in objects:  # the archive's objects lost (a bucket emptied by mistake)
            found.unlink()
        status, answer = server.request("GET", f"/api/v1/experiments/{PREFIX}/metrics/train?start=0&limit=10", key=key)
        assert status == 500 and "does not hold" in answer["error"] and "rows 0.." in answer["error"]
    finally:
        server.stop()


def test_ml_dash_archive_moves_old_chunks_once_and_says_what_it_moved(tmp_path: Path) -> None:
    async def ingest() -> None:
        storage = await open_storage(str(tmp_path / "ml-dash.sqlite3"))
        try:
            for start in range(0, ROWS, 5000):
                await storage.ingest(batch({"metrics/train": body(start, 5000)["streams"]["metrics/train"]},
                                           prefix=("alice", "proj", "run")))
            await storage.ingest(batch({"logs": lines(0, [("INFO", f"line {k}") for k in range(LINES)])},
                                       prefix=("alice", "proj", "run")))
        finally:
            await storage.close()

    asyncio.run(ingest())

    def archive(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ml_dash.cli", "archive", "--data", str(tmp_path), *extra],
                              capture_output=True, text=True, timeout=120)

    young = archive("--older-than", "1h")
    assert young.returncode == 0 and young.stdout.startswith("archived 0 chunks"), young
    done = archive("--older-than", "0s")
    assert done.returncode == 0 and f"({ROWS:,} rows) and {LINES:,} log lines" in done.stdout, done
    assert "into 2 objects" in done.stdout, done  # one of metric chunks, one of log lines
    assert chunks_in_database(tmp_path) == 0
    again = archive("--older-than", "0s")
    assert again.returncode == 0 and again.stdout.startswith("archived 0 chunks"), again


@pytest.mark.parametrize("command", [["archive", "--older-than", "3x"], ["archive", "--older-than", "-1d"],
                                     ["server", "--archive-after", "5"], ["server", "--archive-every", "0s"]])
def test_a_bad_duration_exits_2_naming_the_flag(tmp_path: Path, command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ml_dash.cli", *command, "--data", str(tmp_path), "--port", "0"]
                          if command[0] == "server" else [sys.executable, "-m", "ml_dash.cli", *command, "--data",
                                                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and command[1] in done.stderr and "\n" == done.stderr[-1], done
