"""Files in remote mode: streamed, sha256-verified, content-addressed, exactly once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.request
from pathlib import Path

from ml_dash import Experiment

from .app_server import AppServer
from .optional import nn
from .server_process import Server, direct


def _download(server: Server, path: str, key: str) -> bytes:
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {key}"})
    with direct.open(req, timeout=30) as resp:
        return resp.read()


def test_saved_and_uploaded_files_reach_the_server(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    (workdir / "model.pth").write_bytes(b"weights" * 1000)
    exp = Experiment(prefix="alice/proj/run", remote=app_server.url, api_key=key)
    with exp.run:
        exp.files("models").save(nn.Linear(3, 3), "net.pth")
        exp.files("model.pth", prefix="/models")
    _status, listing = app_server.request("GET", "/api/v1/experiments/alice/proj/run/files", key=key)
    files = {f["path"]: f for f in listing["files"]}
    assert set(files) == {"models/net.pth", "models/model.pth"}
    for path, entry in files.items():
        local = (exp.directory / "files" / path).read_bytes()
        assert entry["checksum"] == hashlib.sha256(local).hexdigest() and entry["sizeBytes"] == len(local)
        assert _download(app_server, f"/api/v1/experiments/alice/proj/run/files/{path}", key) == local


def test_identical_content_is_stored_once(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    for name in ("a", "b"):
        exp = Experiment(prefix=f"alice/proj/{name}", remote=app_server.url, api_key=key)
        with exp.run:
            exp.files("data").save(b"same bytes" * 100, "blob.bin")
    blobs = [p for p in (app_server.data / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(blobs) == 1


def test_row11_put_rejects_a_wrong_checksum_traversal_and_other_owners(server: Server) -> None:
    alice, bob = server.key("alice"), server.key("bob")
    body = b"content"
    good = hashlib.sha256(body).hexdigest()
    put = lambda path, sha, key: server.request(
        "PUT", f"/api/v1/runs/alice/p/r/files/{path}", body, {"X-Content-SHA256": sha}, key)
    assert put("x.bin", "0" * 64, alice)[0] == 400
    assert put("x.bin", "nothex", alice)[0] == 400
    assert put("..%2F..%2Fescape.bin", good, alice)[0] in (400, 404)
    assert put("x.bin", good, bob)[0] == 403
    assert put("x.bin", good, alice) == (200, {"path": "x.bin", "sha256": good, "sizeBytes": len(body)})
    assert not list((server.data / "blobs" / "tmp").iterdir())  # failed uploads leave nothing behind
    assert not any(p.name == "escape.bin" for p in server.data.parent.rglob("*"))


def test_sync_uploads_files_once(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    exp = Experiment(prefix="alice/proj/local")
    with exp.run:
        exp.files("m").save(b"abc", "x.bin")
    run = lambda: subprocess.run([sys.executable, "-m", "ml_dash.cli", "sync", ".dash", "--remote", app_server.url,
                                  "--api-key", key], cwd=workdir, capture_output=True, text=True, timeout=120)
    first, second = run(), run()
    assert first.returncode == 0 and "1 files sent" in first.stdout
    assert second.returncode == 0 and "0 files sent" in second.stdout
