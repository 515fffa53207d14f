"""The SQLite backend says what its driver's failures mean in the storage's own terms
(server/storage/errors.py): a full disk is StorageFull and a write lock held past the wait is
StorageBusy, with nothing stored, so nothing above the backend reads sqlite3's exceptions."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ml_dash.format.wire import metric_blocks
from ml_dash.server.ingest.decode import build_batch
from ml_dash.server.storage import StorageBusy, open_storage
from ml_dash.server.storage.records import IngestBatch
from ml_dash.server.storage.sqlite import store as sqlite_store


def _batch(start: int, count: int) -> IngestBatch:
    made = [{"data": {"step": i, "x": i * 0.5}, "createdAt": "2026-12-01T00:00:00Z"} for i in range(start, start + count)]
    return build_batch("alice", "p", "r", {"identity": {"run_id": "r1", "writer_id": "w1"},
                                           "streams": {"metrics/x": {"start": start, "blocks": metric_blocks(made)}}},
                       max_events=10**7)


def test_a_full_disk_is_storage_full_and_stores_nothing(tmp_path: Path) -> None:
    # in a process of its own: the file size limit (the disk "fills") applies to the whole process
    script = textwrap.dedent(f"""
        import asyncio, resource, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from tests.test_sqlite_storage_errors import _batch
        from ml_dash.server.storage import StorageFull, open_storage

        async def main():
            storage = await open_storage({str(tmp_path / "db.sqlite3")!r})
            await storage.ingest(_batch(0, 10))
            size = max(p.stat().st_size for p in __import__("pathlib").Path({str(tmp_path)!r}).glob("db.sqlite3*"))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 32 * 1024, resource.RLIM_INFINITY))
            try:
                await storage.ingest(_batch(10, 200_000))
            except StorageFull as exc:
                print("StorageFull", exc)
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            exp = await storage.experiment("alice", "p", "r")
            streams, _, _ = await storage.stream_page(exp["id"], "", 1000)
            print("stored", streams)
            await storage.close()

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "StorageFull the database's disk is full" in out.stdout, out.stdout
    assert "stored {'metrics/x': 10}" in out.stdout  # nothing of the refused batch


def test_a_write_lock_held_past_the_wait_is_storage_busy_and_stores_nothing(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "LOCK_WAIT_S", 0.2)
    path = tmp_path / "db.sqlite3"

    async def main() -> None:
        storage = await open_storage(str(path))
        try:
            await storage.ingest(_batch(0, 10))
            other = sqlite3.connect(path, isolation_level=None)  # another process's writer, say
            other.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(StorageBusy):
                    await storage.ingest(_batch(10, 10))
            finally:
                other.execute("ROLLBACK")
                other.close()
            exp = await storage.experiment("alice", "p", "r")
            assert exp is not None and (await storage.stream_page(exp["id"], "", 1000))[0] == {"metrics/x": 10}
            assert (await storage.ingest(_batch(10, 10))).acked == {"metrics/x": 20}
        finally:
            await storage.close()

    asyncio.run(main())


def test_a_server_whose_database_another_process_holds_answers_503_with_retry_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from ml_dash.format.wire import encode_body
    from ml_dash.server.app import create_app
    from ml_dash.server.config import ServerConfig

    monkeypatch.setattr(sqlite_store, "LOCK_WAIT_S", 0.2)
    config = ServerConfig(data_dir=tmp_path, allow_user_name=True, ingest_workers=0)
    body = encode_body({"v": 2, "identity": {"run_id": "r1", "writer_id": "w1"},
                        "streams": {"metrics/x": {"start": 0, "blocks": metric_blocks([{"data": {"x": 1}, "createdAt": "2026-12-01T00:00:00Z"}])}}})

    async def main() -> tuple[int, str | None, int]:
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server(auto_decompress=False)
        client = TestClient(server)
        try:
            other = sqlite3.connect(config.database, isolation_level=None)  # another server process's writer
            other.execute("BEGIN IMMEDIATE")
            try:
                reply = await client.post("/api/v1/runs/alice/p/r/events", data=body, headers={
                    "X-ML-Dash-User": "alice", "Content-Encoding": "zstd", "Content-Type": "application/octet-stream"})
            finally:
                other.execute("ROLLBACK")
                other.close()
            again = await client.post("/api/v1/runs/alice/p/r/events", data=body, headers={
                "X-ML-Dash-User": "alice", "Content-Encoding": "zstd", "Content-Type": "application/octet-stream"})
            return reply.status, reply.headers.get("Retry-After"), again.status
        finally:
            await client.close()

    assert asyncio.run(main()) == (503, "1", 200)
