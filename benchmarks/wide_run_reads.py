"""What reading a run of 100,000 metric streams costs the server: the run list and the run document.

A run may hold up to 100,000 metric streams (``--max-metrics-per-run``). Everything runs on this machine
over loopback: an ``ml-dash server`` subprocess (port 0, its own data directory, one API key), the run
built through ingest (requests of 1,000 new streams, the per-request cap), then

* the run list with latest values (``GET /api/v1/experiments?latest=1``, what the UI's run table asks
  for): alone, and 10 at once (rounds of 10 repeated for at least 3 s; the mean round is printed);
* the run document (``GET /api/v1/experiments/{prefix}``, what the UI polls each second): its size
  and time, and its streams followed page by page (``streams_next``) where the server pages them;

while a separate process probes ``/health`` every 50 ms (the slowest answer per phase is printed).

Usage:  python benchmarks/wide_run_reads.py [--streams 100000] [--server-src DIR] [--json PATH]
        --server-src runs the server from another checkout (an export of an older commit), to compare
        before and after on the same machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from server_abuse import STAMP, probe, start_server  # the script's folder is on sys.path

from ml_dash.format.wire import NAMED_REPLY, encode_body

PREFIX = "mallory/wide/run"
STREAMS_PER_REQUEST = 1_000  # the server's cap on streams one request names
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, key: str) -> tuple[float, bytes]:
    """(seconds, body) of one GET."""
    began = time.perf_counter()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with direct.open(request, timeout=600) as response:
        body = response.read()
    return time.perf_counter() - began, body


def build_run(url: str, key: str, streams: int) -> float:
    """The run of ``streams`` metric streams (one row each), in requests of 1,000 streams; seconds taken."""
    began = time.perf_counter()
    block = {"keys": ["loss", "acc"], "cols": [[0.5], [0.9]], "created": [[STAMP, 1]]}
    for first in range(0, streams, STREAMS_PER_REQUEST):
        names = range(first, min(streams, first + STREAMS_PER_REQUEST))
        body = {"v": 2, "identity": {"run_id": "wide", "writer_id": "wide"}, **NAMED_REPLY,  # older servers ignore it
                "streams": {f"metrics/layer{i:06d}": {"start": 0, "blocks": [block]} for i in names}}
        request = urllib.request.Request(f"{url}/api/v1/runs/{PREFIX}/events", data=encode_body(body), method="POST",
                                         headers={"Authorization": f"Bearer {key}", "Content-Encoding": "zstd"})
        with direct.open(request, timeout=600) as response:
            response.read()
    return time.perf_counter() - began


class HealthProbe:
    """/health every 50 ms from another process, restarted per phase: the slowest answer of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.spawn = multiprocessing.get_context("spawn")

    def during(self, work: Any) -> tuple[Any, float]:
        done, slowest = self.spawn.Event(), self.spawn.Value("d", 0.0)
        failures, probes = self.spawn.Value("i", 0), self.spawn.Value("i", 0)
        prober = self.spawn.Process(target=probe, args=(self.url, done, slowest, failures, probes), daemon=True)
        prober.start()
        time.sleep(1.0)  # the prober is up (a spawned interpreter) before the work starts
        try:
            result = work()
        finally:
            done.set()
            prober.join(timeout=60)
        return result, slowest.value


def document_pages(url: str, key: str) -> tuple[float, int, int, int]:
    """(seconds, bytes of the document, pages followed, streams in all): the document and its stream pages."""
    base = f"{url}/api/v1/experiments/{PREFIX}"
    seconds, body = get(base, key)
    doc = json.loads(body)
    size, pages, streams = len(body), 1, dict(doc.get("streams", {}))
    after = doc.get("streams_next")
    while after is not None and pages < 10_000:
        took, raw = get(f"{base}/streams?after={quote(after)}", key)
        page = json.loads(raw)
        seconds += took
        pages += 1
        streams.update(page["streams"])
        after = page.get("next")
    return seconds, size, pages, len(streams)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-src", type=Path, help="run the server from this checkout")
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml-dash-wide-") as tmp:
        server, url, key = start_server(Path(tmp) / "data", Path(tmp) / "server.log", args.server_src)
        try:
            health = HealthProbe(url)
            built = build_run(url, key, args.streams)
            listing = f"{url}/api/v1/experiments?owner=mallory&project=wide&latest=1"
            (one, body), one_health = health.during(lambda: get(listing, key))
            with ThreadPoolExecutor(args.concurrent) as pool:
                def many() -> tuple[float, int]:
                    """10 lists at once, again and again for at least 3 s (so that /health is probed under
                    them even when they are fast): the mean time of a round, and the rounds."""
                    began, rounds = time.perf_counter(), 0
                    while rounds < 1_000 and (rounds == 0 or time.perf_counter() - began < 3.0):
                        list(pool.map(lambda _: get(listing, key), range(args.concurrent)))
                        rounds += 1
                    return (time.perf_counter() - began) / rounds, rounds
                (together, rounds), many_health = health.during(many)
            (doc_s, doc_bytes, pages, streams), doc_health = health.during(lambda: document_pages(url, key))
        finally:
            server.terminate()
            server.wait(timeout=120)
    latest = json.loads(body)["experiments"][0].get("latest", {})
    result = {"streams": args.streams, "build_s": built, "listing_s": one, "listing_bytes": len(body),
              "listing_latest_metrics": len(latest), "listing_health_max_s": one_health,
              "concurrent": args.concurrent, "listings_together_s": together, "rounds": rounds,
              "listings_health_max_s": many_health,
              "document_s": doc_s, "document_bytes": doc_bytes, "document_pages": pages, "document_streams": streams,
              "document_health_max_s": doc_health}
    rows = [
        ("run built through ingest", f"{built:.1f} s"),
        ("run list (latest=1), alone", f"{one:.2f} s, {len(body):,} bytes, {len(latest):,} metrics of latest"),
        ("  /health meanwhile, slowest", f"{one_health:.2f} s"),
        (f"{args.concurrent} run lists at once", f"{together:.2f} s (mean of {rounds} round(s))"),
        ("  /health meanwhile, slowest", f"{many_health:.2f} s"),
        ("run document (and its stream pages)",
         f"{doc_s:.2f} s, first reply {doc_bytes:,} bytes, {pages} page(s), {streams:,} streams"),
        ("  /health meanwhile, slowest", f"{doc_health:.2f} s"),
    ]
    width = max(len(a) for a, _ in rows)
    print(f"| {'what'.ljust(width)} | measured |")
    print(f"|{'-' * (width + 2)}|---|")
    for what, value in rows:
        print(f"| {what.ljust(width)} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
