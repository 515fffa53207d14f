"""``ml-dash migrate`` (server/migrate/): an embedded deployment copied to another pair of stores (SQLite + a
directory, PostgreSQL + S3) answers every read through the HTTP API exactly as the source did, with the
same API keys; a second run copies nothing and says so; a real ``kill -9`` mid-way, then a rerun, ends
with the same reads; a target holding another run or key under the source's names is refused (exit 2,
naming it) with nothing copied. Real server and migrate processes, real services."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ml_dash.server.blobs import open_blobs
from ml_dash.server.config import ServerConfig
from ml_dash.server.serve import create_key
from ml_dash.server.storage import open_storage
from ml_dash.server.storage.archive import ArchivePolicy, archive_all

from .server_process import STARTED, Server, direct
from .test_storage_contract import batch, lines, rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RUNS = 16
ROWS = 3000  # rows of "loss" a run, the first 2000 archived before the rest arrive
LINES = 120


@dataclass(frozen=True)
class Target:
    db: str
    blobs: str
    env: dict[str, str]


@pytest.fixture(params=[pytest.param("sqlite+file"), pytest.param("postgresql+s3")])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "sqlite+file":
        return Target(f"sqlite://{tmp_path / 'target' / 'moved.sqlite3'}", f"file://{tmp_path / 'target' / 'blobs'}",
                      dict(os.environ))
    s3 = request.getfixturevalue("s3_service")
    return Target(request.getfixturevalue("postgres_url"), s3.fresh_url(), {**os.environ, **s3.env()})


def prefix(i: int) -> tuple[str, str, str]:
    return ("alice" if i % 4 else "bob", f"proj{i % 3}", f"run-{i:02d}")


async def _build(data: Path) -> dict[str, str]:
    """A deployment of RUNS runs (metrics and logs part archived, params, tags, files), keys, a grant, a session."""
    keys = {owner: await create_key(ServerConfig(data), owner) for owner in ("alice", "bob")}
    storage = await open_storage(str(data / "ml-dash.sqlite3"))
    blobs = await open_blobs(str(data / "blobs"))
    try:
        await storage.grant("alice", "bob")
        await storage.add_session("ab" * 32, "alice", time.time() + 3600, None)
        for i in range(RUNS):
            run = prefix(i)
            await storage.ingest(batch({"metrics/loss": rows(0, 2000, tag=i)}, run_id=f"id-{i}", prefix=run,
                                       run={"status": "RUNNING", "tags": [f"t{i % 2}", "all"], "description": f"run {i}"},
                                       params={"lr": 0.1 * i, "name": f"n{i}"}))
            messages = [("ERROR" if k % 7 == 0 else "INFO", f"line {k} of run {i} {'needle' if k % 11 == 0 else ''}")
                        for k in range(LINES)]
            await storage.ingest(batch({"logs": lines(0, messages)}, run_id=f"id-{i}", prefix=run))
            content = f"file of run {i}\n".encode() * 100
            sha = hashlib.sha256(content).hexdigest()
            await blobs.put(_once(content), sha, len(content))
            await storage.put_file(*run, "outputs/model.txt", sha, len(content), {"path": "outputs/model.txt"})
        # the first 2000 rows and LINES lines of each run; the rest stay in the database
        await archive_all(storage.archive_tier(), blobs, ArchivePolicy(0.0))
        for i in range(RUNS):
            messages = [("WARNING", f"late line {k} needle") for k in range(LINES, LINES + 30)]
            await storage.ingest(batch({"logs": lines(LINES, messages)}, run_id=f"id-{i}", prefix=prefix(i)))
            await storage.ingest(batch({"metrics/loss": rows(2000, ROWS - 2000, tag=i), "metrics/wide": rows(0, 500, fields=3)},
                                       run_id=f"id-{i}", prefix=prefix(i), run={"status": "COMPLETED"}))
    finally:
        await blobs.close()
        await storage.close()
    return keys


async def _once(data: bytes) -> Any:
    yield data


def raw_get(server: Server, path: str, key: str) -> tuple[int, bytes]:
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with direct.open(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def reads(server: Server, keys: dict[str, str]) -> dict[str, Any]:
    """Every kind of read, through the HTTP API, as each owner: run lists (filters, latest values), owners and
    projects, each run's document, metric pages anywhere and buckets, compare, logs (pages, level, search,
    tail), file lists and bytes."""
    out: dict[str, Any] = {}
    for owner, key in keys.items():
        for query in ("", "?latest=1", "?status=COMPLETED", "?tag=t1", "?project=proj1&limit=3&offset=1", "?prefix=run-1"):
            out[f"{owner} list {query}"] = server.request("GET", f"/api/v1/experiments{query}", key=key)
        out[f"{owner} owners"] = server.request("GET", "/api/v1/owners", key=key)
        out[f"{owner} projects"] = server.request("GET", f"/api/v1/projects?owner={owner}", key=key)
    for i in range(RUNS):
        run = "/".join(prefix(i))
        key = keys[prefix(i)[0]]
        base = f"/api/v1/experiments/{run}"
        out[f"{run} doc"] = server.document(run, key=key)
        for query in ("start=0&limit=5000", "start=1990&limit=20", "start=2999&limit=5", "buckets=100",
                      "start=100&end=2500&buckets=40"):
            out[f"{run} loss {query}"] = server.request("GET", f"{base}/metrics/loss?{query}", key=key)
        out[f"{run} wide"] = server.request("GET", f"{base}/metrics/wide?start=0&limit=500", key=key)
        for query in ("", "?start=50&limit=20", "?level=ERROR", "?q=needle", "?q=NEEDLE&level=ERROR", "?tail=1&limit=7"):
            out[f"{run} logs {query}"] = server.request("GET", f"{base}/logs{query}", key=key)
        out[f"{run} files"] = server.request("GET", f"{base}/files", key=key)
        out[f"{run} file bytes"] = raw_get(server, f"{base}/files/{quote('outputs/model.txt')}", key)
    runs = ",".join("/".join(prefix(i)) for i in range(0, RUNS, 4))
    out["compare"] = server.request("GET", f"/api/v1/compare/metrics/loss?runs={runs}&buckets=50", key=keys["bob"])
    return out


def migrate(source: Path, target: Target, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "migrate", "--data", str(source), "--db", target.db,
                           "--blobs", target.blobs, *extra], capture_output=True, text=True, timeout=300, env=target.env)


def served(tmp_path: Path, target: Target) -> Server:
    return Server(tmp_path / "target-server", "--db", target.db, "--blobs", target.blobs, env=target.env)


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """A source deployment, its keys, and its reads through a server on it (stopped before the migration)."""
    data = tmp_path / "source"
    keys = asyncio.run(_build(data))
    server = Server(data)
    try:
        before = reads(server, keys)
    finally:
        server.stop()
    return data, keys, before


def _assert_reads(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after.keys() == before.keys()
    for name, answer in before.items():
        assert answer[0] == 200, (name, answer)
        assert after[name] == answer, name


def listed_in(db_url: str) -> list[str]:
    """The prefixes of the runs the database at ``db_url`` holds (at most 100)."""
    async def listed() -> list[str]:
        storage = await open_storage(db_url)
        try:
            return [e["prefix"] for e in await storage.list_experiments(None, None, None, None, 100, 0)]
        finally:
            await storage.close()

    return asyncio.run(listed())

def test_a_migration_copies_everything_and_every_read_is_identical_with_the_same_keys(
        tmp_path: Path, source: tuple[Path, dict[str, str], dict[str, Any]], target: Target) -> None:
    data, keys, before = source
    done = migrate(data, target)
    assert done.returncode == 0, done
    assert f"copied {RUNS} runs" in done.stdout and f"{RUNS} archived metric chunks, {RUNS} archived log frames" in done.stdout, done.stdout
    assert "keys: 2 copied" in done.stdout and "grants: 1 copied" in done.stdout and "sessions: 1 copied" in done.stdout
    server = served(tmp_path, target)
    try:
        _assert_reads(before, reads(server, keys))
        assert server.request("GET", "/api/v1/experiments", key="ml-dash-no-such-key")[0] == 401
        new_run = {"v": 2, "identity": {"run_id": "new", "writer_id": "w"}, "streams": {"metrics/loss": rows(0, 10)}}
        assert server.ingest("alice/later/run", new_run, keys["alice"])[0] == 200  # ids after the copied ones
    finally:
        server.stop()
    again = migrate(data, target)
    assert again.returncode == 0, again
    assert "nothing to copy" in again.stdout and f"runs: 0 copied, {RUNS} already in the target" in again.stdout, again.stdout
    assert "blobs: 0 copied" in again.stdout and "keys: 0 copied, 2 already there" in again.stdout


def test_a_kill_9_mid_migration_then_a_rerun_finishes_with_every_read_identical(
        tmp_path: Path, source: tuple[Path, dict[str, str], dict[str, Any]], target: Target) -> None:
    data, keys, before = source
    proc = subprocess.Popen([sys.executable, "-m", "ml_dash.cli", "migrate", "--data", str(data), "--db", target.db,
                             "--blobs", target.blobs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=target.env)
    STARTED.append(proc)
    copied = 0
    for line in proc.stdout or ():  # bounded: the process prints a line a run, then ends
        if " copied " in line and line.startswith("["):
            copied += 1
            if copied == 2:
                proc.send_signal(signal.SIGKILL)  # mid-way: runs copied, a run perhaps half-written
                break
    assert proc.wait(timeout=120) == -signal.SIGKILL
    rerun = migrate(data, target)
    assert rerun.returncode == 0, rerun
    resumed = int(rerun.stdout.split("runs: ", 1)[1].split(" copied", 1)[0].replace(",", ""))
    skipped = int(rerun.stdout.split("copied, ", 1)[1].split(" already", 1)[0].replace(",", ""))
    assert resumed + skipped == RUNS and resumed > 0 and skipped >= 2, rerun.stdout  # it went on from where it stopped
    server = served(tmp_path, target)
    try:
        _assert_reads(before, reads(server, keys))
    finally:
        server.stop()


def test_a_target_holding_another_run_under_a_name_is_refused_naming_it_and_nothing_is_copied(
        tmp_path: Path, source: tuple[Path, dict[str, str], dict[str, Any]], target: Target) -> None:
    data, _keys, _before = source

    async def other_run() -> None:
        storage = await open_storage(target.db)
        try:
            await storage.ingest(batch({"metrics/loss": rows(0, 10)}, run_id="someone-else", prefix=prefix(5)))
        finally:
            await storage.close()

    asyncio.run(other_run())
    refused = migrate(data, target)
    assert refused.returncode == 2, refused
    assert "/".join(prefix(5)) in refused.stderr and "someone-else" in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and "nothing of it was copied" in refused.stderr

    assert listed_in(target.db) == ["/".join(prefix(5))]


def test_a_target_holding_another_key_under_an_id_is_refused_naming_it(
        tmp_path: Path, source: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    data, _keys, _before = source
    target = Target(f"sqlite://{tmp_path / 'target.sqlite3'}", f"file://{tmp_path / 'target-blobs'}", dict(os.environ))

    async def clash() -> str:
        source_storage = await open_storage(str(data / "ml-dash.sqlite3"))
        storage = await open_storage(target.db)
        try:
            held = (await source_storage.keys("alice"))[0]["key_id"]
            await storage.add_key(held, "mallory", "0" * 64)
            return held
        finally:
            await storage.close()
            await source_storage.close()

    held = asyncio.run(clash())
    refused = migrate(data, target)
    assert refused.returncode == 2 and held in refused.stderr and "mallory" in refused.stderr, refused
    assert "0" * 64 not in refused.stderr + refused.stdout  # a secret's hash is never printed


@pytest.mark.parametrize("flags", [[], ["--db", "sqlite:///tmp/x.sqlite3"], ["--blobs", "file:///tmp/x"]])
def test_a_migration_without_both_targets_exits_2_naming_the_flags(tmp_path: Path, flags: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ML_DASH_DB", "ML_DASH_BLOBS")}
    done = subprocess.run([sys.executable, "-m", "ml_dash.cli", "migrate", "--data", str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "--db and --blobs" in done.stderr, done


def test_a_migration_onto_its_own_source_is_refused(tmp_path: Path,
                                                    source: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    data, _keys, _before = source
    done = migrate(data, Target(f"sqlite://{data / 'ml-dash.sqlite3'}", f"file://{tmp_path / 'elsewhere'}", dict(os.environ)))
    assert done.returncode == 2 and "the source's own database" in done.stderr, done


def test_a_blob_the_source_lacks_stops_the_migration_naming_it_and_the_runs_before_stay_whole(
        tmp_path: Path, source: tuple[Path, dict[str, str], dict[str, Any]]) -> None:
    data, _keys, _before = source
    target = Target(f"sqlite://{tmp_path / 'target.sqlite3'}", f"file://{tmp_path / 'target-blobs'}", dict(os.environ))
    content = b"file of run 9\n" * 100  # run-09's file (see _build): its blob lost from the source's directory
    sha = hashlib.sha256(content).hexdigest()
    lost = [p for p in (data / "blobs").rglob(sha + "*") if p.is_file()]
    assert len(lost) == 1
    lost[0].unlink()
    stopped = migrate(data, target)
    assert stopped.returncode == 1 and sha in stopped.stderr and "alice/proj0/run-09" in stopped.stderr, stopped
    assert "run it again" in stopped.stderr
    copied = [line for line in stopped.stdout.splitlines() if line.startswith("[")]
    assert copied and all("run-09" not in line for line in copied)

    assert sorted(listed_in(target.db)) == sorted(line.split(" copied ", 1)[1].split(":", 1)[0] for line in copied)
