"""Server abuse benchmark: what one valid key can make an ``ml-dash server`` spend, all attacks at once.

Everything runs on this machine over loopback: an ``ml-dash server`` subprocess (port 0, its own
data directory, one API key), the attacks from this process's event loop, a /health prober on a
thread, and a sampler of the server's memory (the server process and its ingest workers, RSS summed).

* streams   one small body (about 80 KiB compressed) that creates 100,000 metric streams in one run
* nils      four bodies of about 2 KiB, each declaring 60 columns of 1,000,000 nils
* big       24 concurrent bodies of about 28 MiB (incompressible random floats, valid msgpack)
* trickle       (alone) two more keys each send two chunked bodies a byte every 0.5 s, never silent for
                the body timeout, while a third key posts a 2 MiB body every second for --trickle-s
* trickle-fast  (alone) the same, but each trickling body first sends 16 MiB less 512 KiB at once

Printed: peak RSS of the server (with its workers), the slowest /health answer, how many requests
got an HTTP status (and which), how many were cut without one, and the tracebacks in the server's
log. Targets (docs/server.md, "What one request and one key may cost"): RSS < 768 MiB, /health <= 0.5 s, every
request answered, no traceback.

Usage:  python benchmarks/server_abuse.py [--server-src DIR] [--big-mib 28] [--big-bodies 24]
        [--attacks streams,nils,big | trickle | trickle-fast] [--trickle-s 60] [--json PATH]
        --server-src runs the server from another checkout (e.g. an export of an older commit), to
        compare before and after on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from ml_dash.format.wire import encode_body

TARGETS = {"rss_mib": 768.0, "health_max_s": 0.5}
STAMP = "2026-12-01T00:00:00Z"


def start_server(data: Path, log: Path, source: Path | None, *extra: str) -> tuple[subprocess.Popen, str, str]:
    """(the server process, its URL, an API key for owner ``mallory``)."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the other checkout as it is
    cli = [sys.executable, "-m", "ml_dash.cli"]
    cwd = str(source) if source is not None else None  # python -m puts the working directory first on the path
    key = subprocess.run([*cli, "keys", "create", "--owner", "mallory", "--data", str(data)], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True, timeout=120).stdout.strip().splitlines()[-1]
    with open(log, "w") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen([*cli, "server", "--host", "127.0.0.1", "--port", "0", "--data", str(data), *extra],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=cwd)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r} {log.read_text()[-2000:]}")
    return proc, line.split()[4], key


# -- the bodies -----------------------------------------------------------------------------------
def _identity(run: str) -> dict[str, str]:
    return {"run_id": run, "writer_id": run}


def streams_body(count: int = 100_000) -> bytes:
    block = {"keys": ["v"], "cols": [[1]], "created": [[STAMP, 1]]}
    streams = {f"metrics/s{i}": {"start": 0, "blocks": [block]} for i in range(count)}
    return encode_body({"v": 2, "identity": _identity("streams"), "streams": streams})


def nils_body(run: str, rows: int = 1_000_000, columns: int = 60) -> bytes:
    nils = [None] * rows
    block = {"keys": [f"c{k}" for k in range(columns)], "cols": [nils] * columns, "created": [[STAMP, rows]]}
    return encode_body({"v": 2, "identity": _identity(run), "streams": {"metrics/nil": {"start": 0, "blocks": [block]}}})


def big_body(mib: float) -> bytes:
    """Valid msgpack that zstd cannot shrink: 3 columns of random doubles and one of random ints."""
    rows = int(mib * 1024 * 1024 / 32)  # 9 bytes per float, 5 per uint32
    raw = os.urandom(rows * 8 * 3)
    floats = list(struct.unpack(f"<{rows * 3}d", raw))
    ints = list(struct.unpack(f"<{rows}I", os.urandom(rows * 4)))
    block = {"keys": ["a", "b", "c", "n"], "cols": [floats[0::3], floats[1::3], floats[2::3], ints],
             "created": [[STAMP, rows]]}
    return encode_body({"v": 2, "identity": _identity("big"), "streams": {"metrics/big": {"start": 0, "blocks": [block]}}})


# -- measuring ------------------------------------------------------------------------------------
class Sampler(threading.Thread):
    """The server's memory, its ingest workers' included, every 50 ms: the peak of their summed RSS, and
    the sum of each process's own peak (VmHWM, which no sample can miss: an upper bound of the first)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            time.sleep(0.05)

    def sample(self) -> None:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
                with open(f"/proc/{proc.pid}/status") as status:
                    hwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
                self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), hwm)
            except (psutil.Error, OSError, StopIteration):
                pass
        self.peak = max(self.peak, total)


def probe(url: str, done: Any, slowest: Any, failures: Any, probes: Any) -> None:
    """GET /health every 50 ms on a fresh connection until ``done`` is set (a process of its own, so the
    attacker's work never delays a probe): the slowest answer and the failures."""
    host, port = url.split("//")[1].split(":")
    while not done.is_set():
        began = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
        except OSError:
            ok = False
        slowest.value = max(slowest.value, time.perf_counter() - began)
        probes.value += 1
        failures.value += not ok
        time.sleep(0.05)


async def post(session: aiohttp.ClientSession, url: str, key: str, run: str, payload: bytes,
               outcomes: Counter, owner: str = "mallory") -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Encoding": "zstd"}
    try:
        async with session.post(f"{url}/api/v1/runs/{owner}/abuse/{run}/events", data=payload, headers=headers) as resp:
            await resp.read()
            retry = " Retry-After" if resp.status == 503 and "Retry-After" in resp.headers else ""
            outcomes[f"{resp.status}{retry}"] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        outcomes[f"no answer ({type(exc).__name__})"] += 1
        if os.environ.get("ABUSE_DEBUG"):
            print(f"{run}: {exc!r}", file=sys.stderr)


def bodies(which: set[str], big_mib: float, big_bodies: int) -> list[tuple[str, str, bytes]]:
    """(attack, run, body) for every request, encoded before the clock starts."""
    out = []
    if "streams" in which:
        out.append(("streams", "streams", streams_body()))
    if "nils" in which:
        out += [("nils", f"nils-{k}", nils_body(f"nils-{k}")) for k in range(4)]
    if "big" in which:
        payload = big_body(big_mib)
        print(f"big bodies: {len(payload) / 2**20:.1f} MiB each", file=sys.stderr)
        out += [("big", f"big-{k}", payload) for k in range(big_bodies)]
    return out


def create_key(data: Path, owner: str, source: Path | None) -> str:
    env = dict(os.environ, **({"PYTHONPATH": str(source), "PYTHONDONTWRITEBYTECODE": "1"} if source else {}))
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", "keys", "create", "--owner", owner, "--data", str(data)],
                          env=env, cwd=str(source) if source else None, capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip().splitlines()[-1]


async def _trickle_one(url: str, key: str, owner: str, run: str, first_bytes: int, until: float) -> str:
    """A chunked ingest body: ``first_bytes`` at once, then a byte every 0.5 s until ``until`` or an answer;
    its status line (or how it ended without one)."""
    host, port = url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST /api/v1/runs/{owner}/t/{run}/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Encoding: zstd\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    writer.write(head + (f"{first_bytes:x}\r\n".encode() + bytes(first_bytes) + b"\r\n" if first_bytes else b""))
    try:
        await writer.drain()
        status = asyncio.ensure_future(reader.readline())
        while time.monotonic() < until and not status.done():
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.wait([status], timeout=0.5)
        if status.done():
            return status.result().decode().split(" ", 2)[1] if status.result() else "closed"
        status.cancel()
        return "still held at the end"
    except OSError as exc:
        return f"no answer ({type(exc).__name__})"
    finally:
        writer.close()


async def trickle_attack(url: str, keys: dict[str, str], victim_key: str, first_bytes: int, seconds: float
                         ) -> dict[str, Counter]:
    """Two keys trickling two bodies each while a third posts a valid 2 MiB body every second."""
    until = time.monotonic() + seconds
    # they trickle past the victim's last try: one let go as that try began would let it in
    tricklers = [asyncio.ensure_future(_trickle_one(url, key, owner, f"t{k}", first_bytes, until + 10.0))
                 for owner, key in keys.items() for k in range(2)]
    await asyncio.sleep(1.0)  # the trickling bodies are read first
    payload = big_body(2.0)  # more than the 1 MiB that 4 bodies of 16 MiB less 512 KiB leave
    victim: Counter = Counter()
    first_accepted: list[float] = []
    began = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        k = 0
        while time.monotonic() < until:
            outcome: Counter = Counter()
            await post(session, url, victim_key, f"victim-{k}", payload, outcome, owner="victim")
            victim.update(outcome)
            if "200" in outcome and not first_accepted:
                first_accepted.append(time.monotonic() - began)
            k += 1
            await asyncio.sleep(1.0)
    ends = Counter(await asyncio.gather(*tricklers))
    accepted = f"first after {first_accepted[0]:.1f} s" if first_accepted else f"none in {seconds:.0f} s"
    return {"victim (2 MiB bodies)": victim, "victim accepted": Counter({accepted: 1}),
            "trickling bodies": Counter({f"{k}": n for k, n in ends.items()})}


async def attack(url: str, key: str, requests: list[tuple[str, str, bytes]]) -> dict[str, Counter]:
    results: dict[str, Counter] = {name: Counter() for name, _, _ in requests}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(post(session, url, key, run, payload, results[name]) for name, run, payload in requests))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-src", type=Path, help="run the server from this checkout")
    ap.add_argument("--attacks", default="streams,nils,big")
    ap.add_argument("--big-mib", type=float, default=28.0, help="size of each big body (MiB on the wire)")
    ap.add_argument("--big-bodies", type=int, default=24)
    ap.add_argument("--trickle-s", type=float, default=60.0, help="how long the trickle attacks last")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--log", type=Path, help="keep the server's log (stderr) here")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="pass ARG to `ml-dash server` (repeatable), e.g. --server-arg=--ingest-workers=4")
    args = ap.parse_args()
    which = set(args.attacks.split(","))
    trickle = {"trickle": 0, "trickle-fast": 16 * 2**20 - 512 * 1024}.get(args.attacks)
    requests = bodies(which, args.big_mib, args.big_bodies)
    spawn = multiprocessing.get_context("spawn")
    done, slowest, failures, probes = spawn.Event(), spawn.Value("d", 0.0), spawn.Value("i", 0), spawn.Value("i", 0)
    with tempfile.TemporaryDirectory(prefix="ml-dash-abuse-") as tmp:
        log = Path(tmp) / "server.log"
        server, url, key = start_server(Path(tmp) / "data", log, args.server_src, *args.server_arg)
        sampler = Sampler(server.pid)
        prober = spawn.Process(target=probe, args=(url, done, slowest, failures, probes), daemon=True)
        try:
            sampler.start()
            prober.start()
            time.sleep(2.0)
            idle = sampler.peak
            began = time.monotonic()
            if trickle is None:
                outcomes = asyncio.run(attack(url, key, requests))
            else:
                keys = {owner: create_key(Path(tmp) / "data", owner, args.server_src) for owner in ("mallory", "trudy")}
                victim = create_key(Path(tmp) / "data", "victim", args.server_src)
                outcomes = asyncio.run(trickle_attack(url, keys, victim, trickle, args.trickle_s))
            seconds = time.monotonic() - began
            time.sleep(1.0)
            sampler.sample()
        finally:
            sampler.done.set()
            done.set()
            prober.join(timeout=60)
            server.terminate()
            server.wait(timeout=120)
        tracebacks = log.read_text().count("Traceback")
        if args.log:
            args.log.write_text(log.read_text())
    prober_result = {"slowest": slowest.value, "failures": failures.value, "probes": probes.value}
    answered = sum(n for c in outcomes.values() for k, n in c.items()
                   if not k.startswith(("no answer", "first after", "none in", "still held")))
    total = sum(sum(c.values()) for c in outcomes.values())
    result = {"rss_mib": sampler.peak / 2**20, "hwm_sum_mib": sum(sampler.peaks.values()) / 2**20,
              "idle_rss_mib": idle / 2**20, "health_max_s": prober_result["slowest"],
              "health_failures": prober_result["failures"], "probes": prober_result["probes"], "answered": answered,
              "requests": total,
              "tracebacks": tracebacks, "seconds": seconds,
              "outcomes": {name: dict(c) for name, c in outcomes.items()}}
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("server RSS, peak (workers included; idle before)", f"{r['rss_mib']:.0f} MiB ({r['idle_rss_mib']:.0f})",
         f"< {TARGETS['rss_mib']:.0f} MiB"),
        ("  the sum of each process's own peak (VmHWM)", f"{r['hwm_sum_mib']:.0f} MiB", ""),
        ("/health, slowest of the probes (failures)", f"{r['health_max_s']:.2f} s of {r['probes']} ({r['health_failures']})",
         f"<= {TARGETS['health_max_s']} s"),
        ("requests answered with an HTTP status", f"{r['answered']} of {r['requests']}", "all"),
        ("tracebacks in the server's log", str(r["tracebacks"]), "0"),
        ("wall time of the attacks", f"{r['seconds']:.1f} s", ""),
    ]
    rows += [(f"  {name}: outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(c.items())), "")
             for name, c in sorted(r["outcomes"].items())]
    width = max(len(a) for a, _, _ in rows)
    print(f"| {'what'.ljust(width)} | measured | target |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for what, value, target in rows:
        print(f"| {what.ljust(width)} | {value} | {target} |")


if __name__ == "__main__":
    sys.exit(main())
