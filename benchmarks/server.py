"""Server benchmark: reads of huge series while clients ingest, against a real ``ml-dash server``.

Everything runs on this machine over loopback: an ``ml-dash server`` subprocess (port 0,
--allow-user-name), and each load in its own interpreter so that client work never runs on the
server's event loop or in the process measuring it. Read times are the server's own (its
``Server-Timing`` header: from the request's head to the response's), as the targets are; the
/health probe and the readers under load are timed by the client, network included.

* load      a 10,000,000-row and a 1,000,000-row series (step + 2 floats), in bodies of 100,000 rows
* page      GET .../metrics/{m}?start=S&limit=1000 at 200 random offsets of the 10M series
* buckets   ?buckets=1000 over the whole 1M series, the whole 10M series, and random 100k-row ranges
            (a chart zoomed in), median of 9 each
* ingest    20 runs at once, each 250,000 rows in bodies of 5,000 rows (what a live client sends): rows/s
* mixed     the same 20 writers while 5 readers loop over pages and whole-series buckets of the big
            series, and a prober GETs /health every 20 ms: its p99, and the writers' rows/s

Usage:  python benchmarks/server.py [--rows 10000000] [--server-src DIR] [--json PATH]
        --server-src runs the server from another checkout (e.g. a git worktree of an older commit),
        to compare before and after on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _server import start_server  # benchmarks/_server.py: the script's folder is on sys.path

HERE = Path(__file__).resolve()
TARGETS = {"page_p99_ms": 20.0, "buckets_1m_ms": 100.0, "health_p99_ms": 50.0, "ingest_rows_s": 200_000.0}
USER = {"X-ML-Dash-User": "bench"}


def child(mode: str, *args: str, timeout_s: float = 1800) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), "--child", mode, *args], stdout=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen, timeout_s: float = 1800) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {out[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


# -- bodies ---------------------------------------------------------------------------------------
def body(run: str, start: int, rows: int) -> bytes:
    from ml_dash.format.wire import columns_block, encode_body

    steps = list(range(start, start + rows))
    rng = random.Random(start)
    block = columns_block(["step", "loss", "acc"], [steps, [rng.random() for _ in steps],
                                                   [rng.random() for _ in steps]], ["2026-12-01T00:00:00Z"] * rows)
    return encode_body({"v": 2, "identity": {"run_id": run, "writer_id": run},
                        "streams": {"metrics/train": {"start": start, "blocks": [block]}}})


async def _write_run(session: Any, url: str, run: str, rows: int, batch: int, bodies: list[bytes]) -> int:
    headers = {**USER, "Content-Encoding": "zstd"}
    for k, payload in enumerate(bodies):
        async with session.post(f"{url}/api/v1/runs/bench/p/{run}/events", data=payload, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{run} batch {k}: {resp.status} {await resp.text()}")
    return rows


def child_write(url: str, runs: str, rows: str, batch: str) -> dict[str, Any]:
    """``runs`` comma-separated names, each ``rows`` rows in bodies of ``batch``; bodies are encoded
    before the clock starts, so the time is the server's."""
    import aiohttp

    names, n, size = runs.split(","), int(rows), int(batch)
    bodies = {name: [body(name, s, min(size, n - s)) for s in range(0, n, size)] for name in names}

    async def main() -> float:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            began = time.perf_counter()
            await asyncio.gather(*(_write_run(session, url, name, n, size, bodies[name]) for name in names))
            return time.perf_counter() - began

    elapsed = asyncio.run(main())
    return {"rows": n * len(names), "seconds": elapsed, "rows_s": n * len(names) / elapsed}


def child_read(url: str, run: str, rows: str, seconds: str) -> dict[str, Any]:
    """Five readers for ``seconds``: pages at random offsets and whole-series buckets, in turn."""
    import aiohttp

    n, until = int(rows), time.monotonic() + float(seconds)
    latencies: list[float] = []

    async def reader(session: Any, seed: int) -> None:
        rng = random.Random(seed)
        base = f"{url}/api/v1/experiments/bench/p/{run}/metrics/train"
        turn = 0
        while time.monotonic() < until:
            query = "?buckets=1000" if turn % 4 == 3 else f"?start={rng.randrange(n - 1000)}&limit=1000"
            began = time.perf_counter()
            async with session.get(base + query, headers=USER) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"read {query}: {resp.status}")
            latencies.append(time.perf_counter() - began)
            turn += 1

    async def main() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(reader(session, k) for k in range(5)))

    asyncio.run(main())
    return {"reads": len(latencies), "p50_ms": _ms(latencies, 50), "p99_ms": _ms(latencies, 99)}


def child_probe(url: str, seconds: str) -> dict[str, Any]:
    """GET /health every 20 ms on one kept-alive connection; the latencies."""
    import http.client

    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    until, latencies = time.monotonic() + float(seconds), []
    while time.monotonic() < until:
        began = time.perf_counter()
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - began)
        time.sleep(0.02)
    return {"probes": len(latencies), "p50_ms": _ms(latencies, 50), "p99_ms": _ms(latencies, 99),
            "max_ms": max(latencies) * 1e3}


def _ms(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * 1e3


# -- measurements in the parent -------------------------------------------------------------------
def timed_get(url: str, path: str) -> tuple[float, dict[str, Any]]:
    """(seconds the server spent, from its Server-Timing header, else as the client saw them; the
    decoded reply). Servers before this benchmark send no such header."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    began = time.perf_counter()
    with opener.open(urllib.request.Request(url + path, headers=USER), timeout=600) as resp:
        body = resp.read()
        seen = time.perf_counter() - began
        timing = resp.headers.get("Server-Timing", "")
    payload = json.loads(body)
    return (float(timing.split("dur=")[1]) / 1e3 if "dur=" in timing else seen), payload


def measure_reads(url: str, big: int, mid: int) -> dict[str, Any]:
    rng = random.Random(1)
    base = "/api/v1/experiments/bench/p/{run}/metrics/train"
    pages = []
    for _ in range(200):
        start = rng.randrange(big - 1000)
        seconds, payload = timed_get(url, base.format(run="big") + f"?start={start}&limit=1000")
        assert [r["index"] for r in payload["rows"]] == list(range(start, start + 1000))
        pages.append(seconds)

    def buckets(run: str, query: str, rows: int) -> list[float]:
        times = []
        for _ in range(9):
            seconds, payload = timed_get(url, base.format(run=run) + query)
            assert sum(b["count"] for b in payload["buckets"]) == rows, "buckets miss rows"
            times.append(seconds)
        return times

    zoom = []
    for _ in range(9):
        start = rng.randrange(big - 100_000)
        seconds, payload = timed_get(url, base.format(run="big") + f"?buckets=1000&start={start}&end={start + 100_000}")
        assert sum(b["count"] for b in payload["buckets"]) == 100_000
        zoom.append(seconds)
    return {"page_p50_ms": _ms(pages, 50), "page_p99_ms": _ms(pages, 99),
            "buckets_1m_ms": statistics.median(buckets("mid", "?buckets=1000", mid)) * 1e3,
            "buckets_10m_ms": statistics.median(buckets("big", "?buckets=1000", big)) * 1e3,
            "buckets_zoom_ms": statistics.median(zoom) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the big series")
    ap.add_argument("--writer-rows", type=int, default=250_000, help="rows per run of the 20 writers")
    ap.add_argument("--server-src", type=Path, help="run the server from this checkout")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, *rest = args.child
        print(json.dumps({"write": child_write, "read": child_read, "probe": child_probe}[mode](*rest)))
        return 0

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ml-dash-server-bench-") as tmp:
        server, url = start_server(Path(tmp) / "data", args.server_src)
        try:
            print(f"loading {args.rows:,} + 1,000,000 rows ...", file=sys.stderr)
            load = result_of(child("write", url, "big", str(args.rows), "100000"))
            results["load_rows_s"] = load["rows_s"]
            result_of(child("write", url, "mid", "1000000", "100000"))
            results.update(measure_reads(url, args.rows, 1_000_000))
            writers = [f"w{k}" for k in range(20)]
            print("20 writers alone ...", file=sys.stderr)
            alone = result_of(child("write", url, ",".join(writers), str(args.writer_rows), "5000"))
            results["ingest_rows_s"] = alone["rows_s"]
            print("20 writers, 5 readers and a /health prober ...", file=sys.stderr)
            mixed_writers = [f"m{k}" for k in range(20)]
            seconds = str(max(5.0, alone["seconds"] * 1.5))
            probe = child("probe", url, seconds)
            readers = child("read", url, "big", str(args.rows), seconds)
            mixed = result_of(child("write", url, ",".join(mixed_writers), str(args.writer_rows), "5000"))
            results["mixed_ingest_rows_s"] = mixed["rows_s"]
            health, reads = result_of(probe), result_of(readers)
            results.update({"health_p50_ms": health["p50_ms"], "health_p99_ms": health["p99_ms"],
                            "health_max_ms": health["max_ms"], "health_probes": health["probes"],
                            "mixed_reads": reads["reads"], "mixed_read_p99_ms": reads["p99_ms"]})
        finally:
            server.terminate()
            server.wait(timeout=60)
    print_table(results, args.rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(r: dict[str, Any], rows: int) -> None:
    def verdict(key: str, higher_is_better: bool = False) -> str:
        target = TARGETS[key]
        ok = r[key] >= target if higher_is_better else r[key] <= target
        return f"{'<=' if not higher_is_better else '>='} {target:,.0f} {'ok' if ok else 'MISSED'}"

    lines = [
        ("load: one run, bodies of 100,000 rows", f"{r['load_rows_s']:,.0f} rows/s", ""),
        (f"page of 1,000 rows at a random offset of {rows:,} (p50)", f"{r['page_p50_ms']:.1f} ms", ""),
        (f"page of 1,000 rows at a random offset of {rows:,} (p99)", f"{r['page_p99_ms']:.1f} ms",
         verdict("page_p99_ms")),
        ("1,000,000 rows -> 1,000 buckets (median)", f"{r['buckets_1m_ms']:.1f} ms", verdict("buckets_1m_ms")),
        (f"{rows:,} rows -> 1,000 buckets (median)", f"{r['buckets_10m_ms']:.1f} ms", ""),
        ("a 100,000-row range -> 1,000 buckets (median)", f"{r['buckets_zoom_ms']:.1f} ms", ""),
        ("ingest, 20 runs at once (bodies of 5,000 rows)", f"{r['ingest_rows_s']:,.0f} rows/s",
         verdict("ingest_rows_s", higher_is_better=True)),
        ("ingest, 20 runs while 5 readers read", f"{r['mixed_ingest_rows_s']:,.0f} rows/s", ""),
        ("  the readers' requests (p99)", f"{r['mixed_reads']} reads, {r['mixed_read_p99_ms']:.0f} ms", ""),
        ("  /health meanwhile (p50 / p99 / max)",
         f"{r['health_p50_ms']:.1f} / {r['health_p99_ms']:.1f} / {r['health_max_ms']:.0f} ms", verdict("health_p99_ms")),
    ]
    width = max(len(a) for a, _, _ in lines)
    print(f"| {'what'.ljust(width)} | measured | target |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for what, value, target in lines:
        print(f"| {what.ljust(width)} | {value} | {target} |")


if __name__ == "__main__":
    sys.exit(main())
