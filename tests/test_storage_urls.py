"""Storage and blob stores by URL (server/storage/factory.py, server/blobs/factory.py): what each
URL opens, the errors that name an unknown scheme, and the server and ``keys`` commands taking them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash.server.blobs.factory import open_blobs
from ml_dash.server.storage import StorageURLError, open_storage

from .server_process import Server


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("form", ["url", "plain"])
def test_a_sqlite_url_and_a_plain_path_open_the_same_database(tmp_path: Path, form: str) -> None:
    db = tmp_path / "sub dir" / "meta.sqlite3"
    url = f"sqlite://{(tmp_path / 'sub%20dir' / 'meta.sqlite3').as_posix()}" if form == "url" else str(db)

    async def main() -> list[str]:
        storage = await open_storage(url)
        try:
            await storage.grant("alice", "bob")
            return [o["owner"] for o in await storage.owners("bob")]
        finally:
            await storage.close()

    assert asyncio.run(main()) == ["alice", "bob"]
    assert db.is_file()  # percent-escapes decoded: the path the URL names, not its spelling


@pytest.mark.parametrize("url, named", [
    ("mysql://ml:s3cret@db.example/ml", "'mysql'"),
    ("s3://bucket/prefix", "'s3'"),
    ("sqlite://relative.db", "sqlite:///ABSOLUTE/PATH"),
    ("sqlite:///data.db?mode=ro", "no host, no options"),
    ("", "empty"),
])
def test_an_unsupported_or_malformed_storage_url_is_refused_naming_it_and_what_is_supported(url: str, named: str) -> None:
    with pytest.raises(StorageURLError) as caught:
        asyncio.run(open_storage(url))
    message = str(caught.value)
    assert named in message and "sqlite:///ABSOLUTE/PATH" in message
    assert "s3cret" not in message  # a password in a URL is never repeated


@pytest.mark.parametrize("url", ["postgresql://ml:s3cret@db.example/", "postgresql:///ml", "postgres://ml@db/a/b",
                                 "postgresql://ml@db/ml?pool_size=0", "postgresql://ml:s3cret@db:99999/ml"])
def test_a_malformed_postgresql_url_is_refused_naming_its_form_without_its_password(url: str) -> None:
    with pytest.raises(StorageURLError) as caught:
        asyncio.run(open_storage(url))
    message = str(caught.value)
    assert "postgresql://USER@HOST:PORT/DATABASE" in message or "pool_size" in message
    assert "s3cret" not in message


@pytest.mark.parametrize("url, named", [("gs://bucket/blobs", "'gs'"), ("file://host/dir", "no host"),
                                        ("s3://AKIA:s3cret@bucket/blobs", "no credentials")])
def test_an_unsupported_blob_url_is_refused_naming_it(url: str, named: str) -> None:
    with pytest.raises(StorageURLError) as caught:
        asyncio.run(open_blobs(url))
    assert named in str(caught.value) and ("file:///ABSOLUTE/DIR" in str(caught.value) or "s3://BUCKET" in
                                           str(caught.value))
    assert "s3cret" not in str(caught.value)


def test_server_and_keys_take_db_and_blobs_urls_outside_the_data_directory(tmp_path: Path) -> None:
    db, blobs = tmp_path / "meta" / "ml.sqlite3", tmp_path / "content"
    made = _cli("keys", "create", "--owner", "alice", "--data", str(tmp_path / "data"), "--db", f"sqlite://{db}")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    srv = Server(tmp_path / "data", "--db", f"sqlite://{db}", "--blobs", f"file://{blobs}")
    try:
        status, _ = srv.request("PUT", "/api/v1/runs/alice/p/r/files/x.bin", b"abc",
                                {"X-Content-SHA256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
                                key)
        assert status == 200
    finally:
        srv.stop()
    assert [p.name for p in blobs.rglob("ba7816*")] == ["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]
    assert not (tmp_path / "data" / "ml-dash.sqlite3").exists()  # the key and the file's record went to --db
    listed = _cli("keys", "list", "--owner", "alice", "--data", str(tmp_path / "data"), "--db", f"sqlite://{db}")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 2, listed.stdout + listed.stderr


def test_the_commands_refuse_an_unknown_scheme_and_a_missing_database_without_creating_one(tmp_path: Path) -> None:
    served = _cli("server", "--data", str(tmp_path / "d"), "--db", "mysql://ml:s3cret@db/ml", "--port", "0")
    assert served.returncode == 2 and "'mysql'" in served.stderr and "s3cret" not in served.stderr
    blobs = _cli("server", "--data", str(tmp_path / "d"), "--blobs", "gs://bucket", "--port", "0")
    assert blobs.returncode == 2 and "--blobs" in blobs.stderr and "'gs'" in blobs.stderr and "s3://" in blobs.stderr
    keyed = _cli("server", "--data", str(tmp_path / "d"), "--blobs", "s3://AKIA:s3cret@bucket/p", "--port", "0")
    assert keyed.returncode == 2 and "AWS_" in keyed.stderr and "s3cret" not in keyed.stderr
    missing = tmp_path / "nowhere.sqlite3"
    listed = _cli("keys", "list", "--owner", "alice", "--data", str(tmp_path / "d"), "--db", f"sqlite://{missing}")
    assert listed.returncode == 2 and "no database there" in listed.stderr and not missing.exists()
