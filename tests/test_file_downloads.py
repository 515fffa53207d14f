"""Downloads of a run's files, streamed from the blob store (routes/files.py, http/ranges.py), against a
real server: whole, one byte range, ETag revalidation, HEAD, and content gone from the store."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ml_dash import Experiment

from .server_process import LocalUi, Server, direct

CONTENT = os.urandom(3 * 1024 * 1024 + 17)  # more than one piece of a blob read (1 MiB)
SHA = hashlib.sha256(CONTENT).hexdigest()
FILE = "/api/v1/experiments/alice/p/r/files/weights.bin"


def _get(server: Server, key: str, method: str = "GET", path: str = FILE, auth: str = "Bearer",
         **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.url + path, method=method, headers={"Authorization": f"{auth} {key}", **headers})
    try:
        with direct.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _uploaded(server: Server) -> str:
    key = server.key("alice")
    status, _ = server.request("PUT", "/api/v1/runs/alice/p/r/files/weights.bin", CONTENT,
                               {"X-Content-SHA256": SHA}, key)
    assert status == 200
    return key


def test_a_download_streams_the_whole_file_or_one_byte_range(server: Server) -> None:
    key = _uploaded(server)
    status, headers, body = _get(server, key)
    assert (status, body) == (200, CONTENT)
    assert headers["ETag"] == f'"{SHA}"' and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == "attachment" and headers["X-Content-Type-Options"] == "nosniff"
    size = len(CONTENT)
    for asked, start, end in [("bytes=2-5", 2, 6), ("bytes=1048570-", 1048570, size), ("bytes=-3", size - 3, size),
                              ("bytes=0-99999999", 0, size), (f"bytes={size - 1}-{size - 1}", size - 1, size)]:
        status, headers, body = _get(server, key, Range=asked)
        assert (status, body) == (206, CONTENT[start:end]), asked
        assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", asked
        assert int(headers["Content-Length"]) == end - start
    status, headers, _ = _get(server, key, Range=f"bytes={size}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    # several ranges, or a range of another version (If-Range), get the whole content
    assert _get(server, key, Range="bytes=0-1,4-5")[::2] == (200, CONTENT)
    assert _get(server, key, Range="bytes=0-1", **{"If-Range": '"0000"'})[::2] == (200, CONTENT)
    assert _get(server, key, Range="bytes=0-1", **{"If-Range": f'"{SHA}"'})[::2] == (206, CONTENT[:2])


def test_a_download_revalidates_by_etag_and_answers_head_without_a_body(server: Server) -> None:
    key = _uploaded(server)
    status, headers, body = _get(server, key, **{"If-None-Match": f'"{SHA}"'})
    assert (status, body) == (304, b"") and headers["ETag"] == f'"{SHA}"'
    status, headers, body = _get(server, key, "HEAD")
    assert (status, body, int(headers["Content-Length"])) == (200, b"", len(CONTENT))


def test_a_file_whose_content_is_gone_from_the_store_is_a_404_naming_it(server: Server) -> None:
    key = _uploaded(server)
    blob = next(p for p in (server.data / "blobs").rglob(SHA))
    blob.unlink()
    status, _, body = _get(server, key)
    assert status == 404 and b"weights.bin" in body


def test_ml_dash_ui_streams_a_local_runs_file_from_its_directory_with_ranges(workdir: Path) -> None:
    exp = Experiment(prefix="alice/local/run")
    with exp.run:
        exp.files("data").save(CONTENT, "weights.bin")
    ui = LocalUi(workdir / ".dash")
    try:
        assert ui.token is not None
        path = "/api/v1/experiments/alice/local/run/files/data/weights.bin"
        status, headers, body = _get(ui, ui.token, path=path, auth="token")
        assert (status, body, headers["ETag"]) == (200, CONTENT, f'"{SHA}"')
        status, _, body = _get(ui, ui.token, path=path, auth="token", Range="bytes=1000-1999")
        assert (status, body) == (206, CONTENT[1000:2000])
    finally:
        ui.stop()
