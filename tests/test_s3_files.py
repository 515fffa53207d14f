"""Files through a real ``ml-dash server --blobs s3://...`` on a real SeaweedFS: uploads and ranged
downloads, a wrong sha256 refused, a server killed mid-upload leaving nothing under the content key,
a wrong secret or bucket at start (one line, exit 2), and the bucket unreachable mid-run (file
uploads get 503 with Retry-After and the SDK waits them out; metric ingest goes on)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment

from .fault_proxy import FaultProxy
from .server_process import Server, direct
from .services.s3 import S3Service
from .waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MiB = 1024 * 1024


def _server(data: Path, s3: S3Service, url: str, **env: str) -> Server:
    return Server(data, "--blobs", url, env={**os.environ, **s3.env(**env)})


def _key_of(url: str, sha: str) -> str:
    return f"{url.split('/', 3)[3]}/blobs/{sha}"


def _object_there(s3: S3Service, key: str) -> bool:
    async def head() -> bool:
        async with s3.client() as client:
            listed = await client.list_objects_v2(Bucket=s3.bucket, Prefix=key)
            return listed.get("KeyCount", 0) > 0

    return asyncio.run(head())


def _uploads(s3: S3Service, key: str) -> int:
    async def listed() -> int:
        async with s3.client() as client:
            return len((await client.list_multipart_uploads(Bucket=s3.bucket, Prefix=key)).get("Uploads", []))

    return asyncio.run(listed())


def _get(server: Server, path: str, key: str, **headers: str) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {key}", **headers})
    try:
        with direct.open(req, timeout=60) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def test_files_are_stored_in_the_bucket_and_read_back_whole_and_by_range(tmp_path: Path, s3_service: S3Service) -> None:
    url = s3_service.fresh_url()
    server = _server(tmp_path / "data", s3_service, url)
    key = server.key("alice")
    data = os.urandom(20 * MiB + 11)  # past one part: a multipart upload
    sha = hashlib.sha256(data).hexdigest()
    put = lambda body, declared: server.request("PUT", "/api/v1/runs/alice/p/r/files/model.bin", body,
                                                {"X-Content-SHA256": declared}, key)
    assert put(data, "0" * 64)[0] == 400  # a wrong sha256: refused, nothing under either name
    assert not _object_there(s3_service, _key_of(url, "0" * 64))
    assert not _object_there(s3_service, _key_of(url, sha))
    assert put(data, sha) == (200, {"path": "model.bin", "sha256": sha, "sizeBytes": len(data)})
    assert _object_there(s3_service, _key_of(url, sha))
    assert not (tmp_path / "data" / "blobs").exists()  # nothing of the files on the server's disk
    path = "/api/v1/experiments/alice/p/r/files/model.bin"
    status, whole, _ = _get(server, path, key)
    assert status == 200 and whole == data
    status, piece, headers = _get(server, path, key, Range="bytes=8388600-8388700")
    assert status == 206 and piece == data[8388600:8388701]
    assert headers["Content-Range"] == f"bytes 8388600-8388700/{len(data)}"
    status, tail, _ = _get(server, path, key, Range="bytes=-5")
    assert status == 206 and tail == data[-5:]
    assert _get(server, path, key, Range=f"bytes={len(data)}-")[0] == 416
    assert server.stop() == 0


def test_a_server_killed_mid_upload_leaves_nothing_under_the_content_key(tmp_path: Path,
                                                                         s3_service: S3Service) -> None:
    url = s3_service.fresh_url()
    server = _server(tmp_path / "data", s3_service, url)
    key = server.key("alice")
    data = os.urandom(20 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall((f"PUT /api/v1/runs/alice/p/r/files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {key}\r\nX-Content-SHA256: {sha}\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n").encode())
        conn.sendall(data[:12 * MiB])  # past the first part: a multipart upload is under way
        wait_for(lambda: _uploads(s3_service, _key_of(url, sha)) == 1, "the first part sent to S3")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    assert not _object_there(s3_service, _key_of(url, sha))  # the upload is left incomplete, invisible
    again = _server(tmp_path / "data", s3_service, url)
    status, _ = again.request("PUT", "/api/v1/runs/alice/p/r/files/big.bin", data, {"X-Content-SHA256": sha}, key)
    assert status == 200 and _object_there(s3_service, _key_of(url, sha))
    assert _get(again, "/api/v1/experiments/alice/p/r/files/big.bin", key)[1] == data
    assert again.stop() == 0


@pytest.mark.parametrize("problem", ["secret", "bucket"])
def test_a_wrong_secret_or_bucket_at_start_is_one_line_and_exit_2(tmp_path: Path, s3_service: S3Service,
                                                                   problem: str) -> None:
    url, env = s3_service.fresh_url(), s3_service.env()
    if problem == "secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-" + s3_service.secret_key
    else:
        url = url.replace(s3_service.bucket, "no-such-bucket")
    done = subprocess.run([sys.executable, "-m", "ml_dash.cli", "server", "--port", "0", "--data",
                           str(tmp_path / "data"), "--blobs", url], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ml-dash server: --blobs: "), done.stderr
    assert ("refused these credentials" if problem == "secret" else "no bucket 'no-such-bucket'") in lines[0]
    assert s3_service.secret_key not in done.stderr + done.stdout


def test_ml_dash_blobs_names_the_store_when_blobs_is_not_given(tmp_path: Path, s3_service: S3Service) -> None:
    url = s3_service.fresh_url()
    server = Server(tmp_path / "data", env={**os.environ, **s3_service.env(), "ML_DASH_BLOBS": url})
    key = server.key("alice")
    sha = hashlib.sha256(b"weights").hexdigest()
    assert server.request("PUT", "/api/v1/runs/alice/p/r/files/w.bin", b"weights", {"X-Content-SHA256": sha},
                          key)[0] == 200
    assert _object_there(s3_service, _key_of(url, sha))
    assert server.stop() == 0

@pytest.mark.slow  # about 20 s on a loaded machine: the server's S3 retries, then the file's Retry-After
def test_with_the_bucket_unreachable_files_wait_and_metrics_go_on(tmp_path: Path, workdir: Path,
                                                                  s3_service: S3Service) -> None:
    """The file upload is answered 503 with Retry-After (nothing stored), which the SDK waits out;
    metrics keep arriving; once the bucket is back the file arrives, exactly once."""
    proxy = FaultProxy(int(s3_service.endpoint.rsplit(":", 1)[1]))
    try:
        url = s3_service.fresh_url()
        server = _server(tmp_path / "data", s3_service, url, AWS_ENDPOINT_URL=proxy.url)
        key = server.key("alice")
        proxy.mode = "down"
        sha = hashlib.sha256(b"checkpoint").hexdigest()
        req = urllib.request.Request(server.url + "/api/v1/runs/alice/p/raw/files/c.bin", data=b"checkpoint",
                                     method="PUT", headers={"Authorization": f"Bearer {key}", "X-Content-SHA256": sha})
        with pytest.raises(urllib.error.HTTPError) as refused:
            direct.open(req, timeout=60)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
        assert "object store" in refused.value.read().decode()
        assert server.request("GET", "/ready") == (503, {"status": "unready", "failing": ["blobs"]})
        exp = Experiment(prefix="alice/p/run", remote=server.url, api_key=key)
        with exp.run:
            exp.files("ckpt").save(b"checkpoint", "c.bin")
            for step in range(50):
                exp.metrics("train").log(step=step, loss=1.0 / (step + 1))
            wait_for(lambda: len(server.metric_rows("alice/p/run", key=key)) == 50, "metrics stored while the bucket is away")
            assert server.request("GET", "/api/v1/experiments/alice/p/run/files", key=key)[1]["files"] == []
            proxy.mode = "pass"
            wait_for(lambda: server.request("GET", "/api/v1/experiments/alice/p/run/files", key=key)[1]["files"],
                     "the file stored once the bucket is back")
        assert server.request("GET", "/ready")[0] == 200
        files = server.request("GET", "/api/v1/experiments/alice/p/run/files", key=key)[1]["files"]
        assert [(f["path"], f["checksum"]) for f in files] == [("ckpt/c.bin", sha)]
        assert _get(server, "/api/v1/experiments/alice/p/run/files/ckpt/c.bin", key)[1] == b"checkpoint"
        assert server.stop() == 0
    finally:
        proxy.close()


@pytest.mark.slow  # about 30 s: every S3 answer waits 2 s
def test_with_a_slow_s3_files_still_arrive_and_metrics_do_not_wait_for_them(tmp_path: Path, workdir: Path,
                                                                            s3_service: S3Service) -> None:
    proxy = FaultProxy(int(s3_service.endpoint.rsplit(":", 1)[1]))
    try:
        url = s3_service.fresh_url()
        server = _server(tmp_path / "data", s3_service, url, AWS_ENDPOINT_URL=proxy.url)
        key = server.key("alice")
        proxy.set(mode="latency", latency_s=2.0)
        data = os.urandom(3 * MiB)
        sha = hashlib.sha256(data).hexdigest()
        answers: list[tuple[int, Any]] = []
        upload = threading.Thread(target=lambda: answers.append(server.request(
            "PUT", "/api/v1/runs/alice/p/raw/files/slow.bin", data, {"X-Content-SHA256": sha}, key)))
        upload.start()
        wait_for(lambda: proxy.requests > 0, "the upload reached the slow S3")
        exp = Experiment(prefix="alice/p/run", remote=server.url, api_key=key)
        with exp.run:
            for step in range(20):
                exp.metrics("train").log(step=step, loss=1.0)
        assert len(server.metric_rows("alice/p/run", key=key)) == 20  # stored whatever S3 is doing
        upload.join(timeout=120)
        assert answers == [(200, {"path": "slow.bin", "sha256": sha, "sizeBytes": len(data)})]
        assert _get(server, "/api/v1/experiments/alice/p/raw/files/slow.bin", key)[1] == data
        assert server.stop() == 0
    finally:
        proxy.close()


def test_a_server_on_postgresql_and_s3_writes_nothing_to_its_local_disk(tmp_path: Path, workdir: Path,
                                                                         s3_service: S3Service,
                                                                         postgres_url: str) -> None:
    """Issue 17's promise for the scaled-out form: with --db postgresql://... and --blobs s3://... the
    server keeps nothing of its own (any instance may answer any request)."""
    data, url = tmp_path / "data", s3_service.fresh_url()
    server = Server(data, "--db", postgres_url, "--blobs", url, env={**os.environ, **s3_service.env()})
    key = server.key("alice")
    exp = Experiment(prefix="alice/p/run", remote=server.url, api_key=key)
    with exp.run:
        exp.files("ckpt").save(b"weights", "w.bin")
        exp.metrics("train").log(step=0, loss=1.0)
        exp.log("hello")
    assert len(server.metric_rows("alice/p/run", key=key)) == 1
    assert _object_there(s3_service, _key_of(url, hashlib.sha256(b"weights").hexdigest()))
    assert server.stop() == 0
    assert not data.exists()  # not even an empty --data directory
