"""What the PostgreSQL backend does beyond the backend contract (tests/test_storage_contract.py runs that
on it): migrations applied once when instances start together, run documents kept exactly, a lost or
stopped database answered 503 with Retry-After and nothing lost, deadlocks retried, and the commands'
one-line refusals of a database they cannot use. Against a real PostgreSQL 15 (tests/services/postgres.py).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ml_dash.format.wire import metric_blocks
from ml_dash.server.ingest.decode import build_batch
from ml_dash.server.storage import StorageError, StorageUnavailable, open_storage
from ml_dash.server.storage.postgres.schema import SCHEMA_VERSION
from ml_dash.server.storage.records import IngestBatch

from .app_server import AppServer
from .server_process import Server
from .services.postgres import PASSWORD_ROLE, PostgresCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RUN = ("alice", "proj", "run")


def batch(start: int, count: int, writer: str = "w1", **extra: Any) -> IngestBatch:
    rows = [{"data": {"step": i}, "createdAt": "2026-12-01T00:00:00Z"} for i in range(start, start + count)]
    body = {"identity": {"run_id": "run1", "writer_id": writer},
            "streams": {"metrics/loss": {"start": start, "blocks": metric_blocks(rows)}}, **extra}
    return build_batch(*RUN, body, max_events=10**7)


async def _schema_rows(url: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT version, description FROM ml_dash_schema ORDER BY version")]
    finally:
        await conn.close()


def test_instances_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    async def main() -> None:
        storages = await asyncio.gather(*(open_storage(postgres_url) for _ in range(6)))
        try:
            await storages[0].ingest(batch(0, 3))
            for storage in storages:  # every one of them works on the one schema
                exp = await storage.experiment(*RUN)
                assert exp is not None and (await storage.metric_rows(exp["id"], "loss", 0, 10))[0][2]["index"] == 2
        finally:
            for storage in storages:
                await storage.close()
        assert [v for v, _ in await _schema_rows(postgres_url)] == list(range(1, SCHEMA_VERSION + 1))

    asyncio.run(main())


def test_a_database_of_a_newer_schema_is_refused_and_left_alone(postgres_url: str) -> None:
    async def main() -> None:
        storage = await open_storage(postgres_url)
        await storage.close()
        import asyncpg

        conn = await asyncpg.connect(postgres_url)
        await conn.execute("INSERT INTO ml_dash_schema (version, description) VALUES ($1, 'from the future')",
                           SCHEMA_VERSION + 1)
        await conn.close()
        with pytest.raises(StorageError, match=f"version {SCHEMA_VERSION + 1}, newer"):
            await open_storage(postgres_url)
        assert len(await _schema_rows(postgres_url)) == SCHEMA_VERSION + 1

    asyncio.run(main())


def test_run_fields_and_params_come_back_exactly_nul_characters_big_floats_and_key_order_included(
        postgres_url: str) -> None:
    """PostgreSQL's text and JSONB refuse NUL, and JSONB sorts keys and prints 1e300 as an integer: the run's
    document is kept as the client sent it, the JSONB columns only serve the filters."""
    params = {"zeta": 1e300, "alpha": "a\x00b", "nested": {"b": 1.0, "a": [None, True, "\x00"]}}
    run = {"description": "line\x00two", "tags": ["t\x00", "plain"], "metadata": {"k\x00": 2},
           "hostname": "gpu\x001", "status": "RUNNING"}

    async def main() -> None:
        storage = await open_storage(postgres_url)
        try:
            await storage.ingest(batch(0, 1, run=run, params=params))
            exp = await storage.experiment(*RUN)
            assert exp is not None
            assert exp["params"] == params and list(exp["params"]) == ["zeta", "alpha", "nested"]
            assert type(exp["params"]["zeta"]) is float and list(exp["params"]["nested"]) == ["b", "a"]
            assert (exp["description"], exp["tags"], exp["metadata"], exp["hostname"]) == \
                ("line\x00two", ["t\x00", "plain"], {"k\x00": 2}, "gpu\x001")
            for tag, found in (("t\x00", ["run"]), ("plain", ["run"]), ("t\ufffd", []), ("t", [])):
                listed = await storage.list_experiments("alice", None, None, tag, 10, 0)
                assert [e["name"] for e in listed] == found, tag
        finally:
            await storage.close()

    asyncio.run(main())


def test_connections_cut_by_the_database_are_a_storage_unavailable_then_the_pool_reconnects(
        postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    async def main() -> None:
        storage = await open_storage(postgres_url)
        try:
            await storage.ingest(batch(0, 5))
            name = postgres_url.rsplit("/", 1)[1]
            postgres_cluster.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
                                   "AND pid <> pg_backend_pid()")
            outcomes = []
            for start in (5, 5, 5):  # a resend after a failure: the same rows again
                try:
                    outcomes.append((await storage.ingest(batch(start, 5))).acked)
                except StorageUnavailable:
                    outcomes.append("unavailable")
            assert outcomes[-1] == {"metrics/loss": 10}, outcomes
            assert set(map(str, outcomes)) <= {"unavailable", str({"metrics/loss": 10})}
            exp = await storage.experiment(*RUN)
            assert exp is not None
            rows, _ = await storage.metric_rows(exp["id"], "loss", 0, 100)
            assert [r["index"] for r in rows] == list(range(10))
        finally:
            await storage.close()

    asyncio.run(main())


def test_row_postgres_stopped_mid_run_is_a_503_with_retry_after_and_nothing_is_lost_after_its_restart(
        tmp_path: Path) -> None:
    """The fault row: the database stops while a server ingests; every request meanwhile gets 503 with
    Retry-After (which clients honour), none a 500; after the restart the resends are stored once."""
    cluster = PostgresCluster.start()
    try:
        url = cluster.new_database()
        server = AppServer(tmp_path / "data", db=url, allow_user_name=True)
        user = {"X-ML-Dash-User": "alice"}
        try:
            status, reply = _ingest(server, 0, 10, user)
            assert status == 200 and reply["acked"] == {"metrics/loss": 10}
            cluster.restart(stop_only=True)
            for _ in range(3):
                status, reply, retry_after = _ingest_with_headers(server, 10, 10, user)
                assert status == 503 and retry_after is not None and int(retry_after) >= 1, (status, reply)
                assert "retry later" in reply["error"] and "password" not in reply["error"]
            status, _reply, _ = _read_with_headers(server, user)
            assert status == 503
            assert server.request("GET", "/ready") == (503, {"status": "unready", "failing": ["database"]})
            cluster.start_again()
            assert server.request("GET", "/ready")[0] == 200
            status, reply = _ingest(server, 10, 10, user)
            assert status == 200 and reply["acked"] == {"metrics/loss": 20}, reply
            status, reply = _ingest(server, 10, 10, user)  # a resend of what was acknowledged: once
            assert status == 200 and reply["acked"] == {"metrics/loss": 20}
            rows = server.metric_rows("alice/p/r", "loss", headers=user)
            assert [r["index"] for r in rows] == list(range(20))
        finally:
            server.stop()
    finally:
        cluster.stop()


def _body(start: int, count: int) -> dict[str, Any]:
    rows = [{"data": {"step": i}, "createdAt": "2026-12-01T00:00:00Z"} for i in range(start, start + count)]
    return {"v": 2, "reply": "named", "identity": {"run_id": "run1", "writer_id": "w1"},
            "streams": {"metrics/loss": {"start": start, "blocks": metric_blocks(rows)}}}


def _ingest(server: AppServer, start: int, count: int, headers: dict[str, str]) -> tuple[int, Any]:
    status, reply, _ = _ingest_with_headers(server, start, count, headers)
    return status, reply


def _ingest_with_headers(server: AppServer, start: int, count: int,
                         headers: dict[str, str]) -> tuple[int, Any, str | None]:
    import json
    import urllib.error
    import urllib.request

    from ml_dash.format.wire import encode_body

    from .server_process import direct

    req = urllib.request.Request(server.url + "/api/v1/runs/alice/p/r/events", data=encode_body(_body(start, count)),
                                 method="POST", headers={**headers, "Content-Encoding": "zstd",
                                                         "Content-Type": "application/octet-stream"})
    try:
        with direct.open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Retry-After")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), err.headers.get("Retry-After")


def _read_with_headers(server: AppServer, headers: dict[str, str]) -> tuple[int, Any, str | None]:
    import json
    import urllib.error
    import urllib.request

    from .server_process import direct

    req = urllib.request.Request(server.url + "/api/v1/experiments/alice/p/r", headers=headers)
    try:
        with direct.open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), resp.headers.get("Retry-After")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), err.headers.get("Retry-After")


def test_a_deadlock_between_two_transactions_is_retried_and_both_commit(postgres_url: str) -> None:
    """Two transactions locking two rows in opposite orders: PostgreSQL aborts one (40P01); the storage
    runs it again, so both succeed and the caller never sees the deadlock."""
    from ml_dash.server.storage.postgres.store import PostgresStorage

    async def main() -> None:
        storage = await open_storage(postgres_url)
        assert isinstance(storage, PostgresStorage)
        try:
            await storage.add_key("00000000000a", "a", "x" * 64)
            await storage.add_key("00000000000b", "b", "x" * 64)
            both_hold_one = asyncio.Barrier(2)
            attempts = {"ab": 0, "ba": 0}

            def locker(first: str, second: str, name: str) -> Any:
                async def fn(conn: Any) -> None:
                    attempts[name] += 1
                    await conn.execute("SELECT 1 FROM api_keys WHERE key_id = $1 FOR UPDATE", first)
                    if attempts[name] == 1:
                        await both_hold_one.wait()
                    await conn.execute("SELECT 1 FROM api_keys WHERE key_id = $1 FOR UPDATE", second)
                    await conn.execute("UPDATE api_keys SET revoked_at = 1 WHERE key_id = $1", second)
                return fn

            await asyncio.wait_for(asyncio.gather(storage._write(locker("00000000000a", "00000000000b", "ab")),
                                                  storage._write(locker("00000000000b", "00000000000a", "ba"))), 60)
            assert sorted(attempts.values()) == [1, 2]  # one of them met the deadlock and ran again
            keys = [k for owner in "ab" for k in await storage.keys(owner)]
            assert [k["revoked_at"] for k in keys] == [1, 1]
        finally:
            await storage.close()

    asyncio.run(main())


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_the_commands_refuse_a_database_they_cannot_use_in_one_line_exit_2_without_the_password(
        postgres_cluster: PostgresCluster, postgres_url: str, tmp_path: Path) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    with socket.socket() as held:  # a port bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        unreachable = f"postgresql://ml:s3cret@127.0.0.1:{held.getsockname()[1]}/ml"
        wrong_password = postgres_cluster.password_url(database, "s3cret")
        no_database = postgres_cluster.url("no_such_database")
        for url, says in ((unreachable, "refused"), (wrong_password, "password authentication failed"),
                          (no_database, "does not exist")):
            for command in (["server", "--port", "0", "--data", str(tmp_path / "d"), "--db", url],
                            ["keys", "list", "--owner", "alice", "--data", str(tmp_path / "d"), "--db", url]):
                done = _cli(*command)
                lines = done.stderr.strip().splitlines()
                assert done.returncode == 2 and len(lines) == 1 and says in lines[0].lower(), (command, done.stderr)
                assert "s3cret" not in done.stderr + done.stdout and "--db" in lines[0]
    postgres_cluster.admin(f'ALTER DATABASE "{database}" OWNER TO {PASSWORD_ROLE}')
    right = postgres_cluster.password_url(database, "right")  # the same role with its password: works
    assert _cli("keys", "list", "--owner", "alice", "--data", str(tmp_path / "d"), env={"ML_DASH_DB": right}).returncode == 0
    server = Server(tmp_path / "d", "--db", right)
    try:
        assert server.request("GET", "/health")[0] == 200
    finally:
        server.stop()
    banner = f"{server.url} (database {right.replace(':right@', ':***@')}, files in"
    assert banner in server.banner and "right@" not in server.banner + server.stdout + server.stderr, server.banner


def test_ml_dash_db_names_the_database_of_server_and_keys(postgres_url: str, tmp_path: Path) -> None:
    made = _cli("keys", "create", "--owner", "alice", "--data", str(tmp_path / "d"), env={"ML_DASH_DB": postgres_url})
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]

    async def owner() -> str | None:
        storage = await open_storage(postgres_url)
        try:
            return await storage.key_owner(key.split("_")[1], __import__("hashlib").sha256(
                key.split("_", 2)[2].encode()).hexdigest())
        finally:
            await storage.close()

    assert asyncio.run(owner()) == "alice"


def test_a_request_of_many_streams_costs_the_statements_of_a_request_of_one(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round trips to the database are what a request costs on PostgreSQL (SQLite's are function calls):
    the statements of an ingest do not grow with its streams (1,000 streams once cost ~7,000 of them,
    2.4-3.5 s a request)."""
    import asyncpg

    counted = {"statements": 0}
    for method in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        real = getattr(asyncpg.connection.Connection, method)

        def counting(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            counted["statements"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.connection.Connection, method, counting)

    def wide(streams: int, start: int) -> IngestBatch:  # each width its own run, with the same history
        rows = [{"data": {"v": 1.0}, "createdAt": "2026-12-01T00:00:00Z"}]
        body = {"identity": {"run_id": "run1", "writer_id": "w1"}, "reply": "named",
                "streams": {**{f"metrics/m{i:04d}": {"start": start, "blocks": metric_blocks(rows)} for i in range(streams)},
                            "logs": {"start": start, "rows": [{"message": "m", "level": "info"}]},
                            "metrics/void": {"start": start, "void": 1, "reason": "bad"}}}
        return build_batch("alice", "proj", f"wide{streams}", body, max_events=10**7)

    async def statements_of(storage: Any, streams: int, start: int) -> int:
        before = counted["statements"]
        await storage.ingest(wide(streams, start))
        return counted["statements"] - before

    async def main() -> None:
        storage = await open_storage(postgres_url)
        try:
            for streams in (1, 500):  # the runs exist; their later requests extend the writers' ranges
                for start in (0, 1):
                    await storage.ingest(wide(streams, start))
            one, many = await statements_of(storage, 1, 2), await statements_of(storage, 500, 2)
            assert many == one, (one, many)
            exp = await storage.experiment("alice", "proj", "wide500")
            assert exp is not None
            assert (await storage.metric_rows(exp["id"], "m0499", 0, 10))[0][-1]["index"] == 2
        finally:
            await storage.close()

    asyncio.run(main())
