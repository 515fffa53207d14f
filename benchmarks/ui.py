"""Web UI benchmark: issue 9's table (G1-G9) in headless Chromium against a real ``ml-dash server``.

Everything runs on this machine over loopback: an ``ml-dash server`` subprocess (port 0,
--allow-user-name) loaded by a generator with the fixture data below (straight wire-format bodies,
so loading takes seconds), and Debian's Chromium driven by Playwright. Times are medians of
``--repeats`` (5), measured from the action in the page to the state it waits for, the
Python-to-browser round trip included (a few ms).

Fixtures: project ``table``: 10,000 runs x 20 params x 10 metrics; ``big/series``: one series of
1,000,000 points; ``overlay``: 20 runs x 100,000 points; ``charts/run``: 50 metrics of 2,000
points; ``logs/run``: 1,000,000 log lines (1 in 100 a warning); ``spiky/run``: 100,000 points with 12
spikes at random indices.

Screenshots of the main views go to ``--screenshots`` (default benchmarks/screenshots).

Side by side: if MLflow is installed in benchmarks/.peer-venv-mlflow (as for benchmarks/remote.py),
the same 10,000 runs and the same spiky series are loaded into MLflow's server and its UI is timed in
the same browser (benchmarks/_mlflow_ui.py): first rows of the run list, chart drawn, spikes shown,
and the ratios.

Usage:  python benchmarks/ui.py [--repeats 5] [--runs 10000] [--no-mlflow] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _mlflow_ui  # benchmarks/_mlflow_ui.py, MLflow's UI on the same fixtures
from _server import start_server  # benchmarks/_server.py: the script's folder is on sys.path

HERE = Path(__file__).resolve()
SPIKES = sorted(random.Random(9).sample(range(100_000), 12))  # in the 100,000-point series "spiky/run"
CHROMIUM = "/usr/lib/chromium/chromium"
USER = {"X-ML-Dash-User": "bench"}
STAMP = "2026-12-01T00:00:00Z"
TARGETS_MS = {"G1": 800, "G2": 150, "G3": 500, "G4": 300, "G5": 800, "G5 tooltip": 16, "G6": 1500,
              "G6 long task": 200, "G7 p95": 2000, "G8 tail": 500, "G8 filter": 300}


# -- fixtures ---------------------------------------------------------------------------------------
def _identity(run: str) -> dict[str, str]:
    return {"run_id": run.replace("/", "-")[-64:], "writer_id": "bench"}


def _series_block(start: int, n: int, rng: random.Random, fields: tuple[str, ...] = ("loss",)) -> dict[str, Any]:
    from ml_dash.format.wire import columns_block

    steps = list(range(start, start + n))
    cols = [steps] + [[1.0 / (1 + s) + rng.random() * 0.01 for s in steps] for _ in fields]
    return columns_block(["step", *fields], cols, [STAMP] * n)


def _bodies() -> list[tuple[str, bytes]]:
    """(run, body) for every fixture but the run table's (made in :func:`_table_bodies`)."""
    from ml_dash.format.wire import columns_block, encode_body

    rng = random.Random(1)
    out = []
    run_fields = {"status": "COMPLETED", "created_at": STAMP, "started_at": STAMP, "ended_at": STAMP}
    for start in range(0, 1_000_000, 100_000):
        out.append(("big/series", encode_body({"v": 2, "identity": _identity("big/series"), "run": run_fields,
                                                "streams": {"metrics/train": {"start": start,
                                                                              "blocks": [_series_block(start, 100_000, rng)]}}})))
    for k in range(20):
        run = f"overlay/run-{k:02d}"
        out.append((run, encode_body({"v": 2, "identity": _identity(run), "run": run_fields, "params": {"k": k},
                                      "streams": {"metrics/train": {"start": 0, "blocks": [_series_block(0, 100_000, rng)]}}})))
    spiky = [100.0 if i in set(SPIKES) else 1.0 + (i % 7) * 0.01 for i in range(100_000)]
    out.append(("spiky/run", encode_body({"v": 2, "identity": _identity("spiky/run"), "run": run_fields, "streams": {
        "metrics/train": {"start": 0, "blocks": [columns_block(["step", "loss"], [list(range(100_000)), spiky],
                                                               [STAMP] * 100_000)]}}})))
    streams = {f"metrics/m{k:02d}": {"start": 0, "blocks": [_series_block(0, 2000, rng)]} for k in range(50)}
    out.append(("charts/run", encode_body({"v": 2, "identity": _identity("charts/run"), "run": run_fields,
                                           "streams": streams})))
    for start in range(0, 1_000_000, 50_000):
        rows = [{"timestamp": STAMP, "level": "warn" if i % 100 == 0 else "info",
                 "message": f"step {i} needle-{i % 9973} loss {rng.random():.4f}"} for i in range(start, start + 50_000)]
        out.append(("logs/run", encode_body({"v": 2, "identity": _identity("logs/run"), "run": run_fields,
                                             "streams": {"logs": {"start": start, "rows": rows}}})))
    return out


def _table_bodies(runs: int) -> list[tuple[str, bytes]]:
    from ml_dash.format.wire import columns_block, encode_body

    rng = random.Random(2)
    out = []
    for k in range(runs):
        run = f"table/run-{k:05d}"
        params = {f"p{j:02d}": rng.choice([rng.random(), rng.randrange(100), rng.choice(["adam", "sgd", "lion"])])
                  for j in range(20)}
        streams = {f"metrics/m{j}": {"start": 0, "blocks": [columns_block(["value"], [[rng.random()]], [STAMP])]}
                   for j in range(10)}
        out.append((run, encode_body({"v": 2, "identity": _identity(run), "params": params,
                                      "run": {"status": rng.choice(["COMPLETED", "FAILED", "RUNNING"]),
                                              "tags": [rng.choice(["a", "b", "c"])], "created_at": STAMP},
                                      "streams": streams})))
    return out


async def _send(url: str, bodies: list[tuple[str, bytes]], concurrency: int = 6) -> None:
    """POST every body; a run's bodies in order (its batches must arrive in order), runs in parallel."""
    import aiohttp

    by_run: dict[str, list[bytes]] = {}
    for run, payload in bodies:
        by_run.setdefault(run, []).append(payload)
    queue: asyncio.Queue = asyncio.Queue()
    for item in by_run.items():
        queue.put_nowait(item)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def worker() -> None:
            while not queue.empty():
                run, payloads = queue.get_nowait()
                for payload in payloads:
                    async with session.post(f"{url}/api/v1/runs/bench/{run}/events", data=payload,
                                            headers={**USER, "Content-Encoding": "zstd"}) as resp:
                        if resp.status != 200:
                            raise RuntimeError(f"{run}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- measurements -------------------------------------------------------------------------------------
def _timed(action: Any, until: str, page: Any, arg: Any = None) -> float:
    """Milliseconds from ``action()`` to the page function ``until`` holding."""
    began = time.perf_counter()
    action()
    page.wait_for_function(until, arg=arg, timeout=60_000)
    return (time.perf_counter() - began) * 1e3


def _median(values: list[float]) -> float:
    return statistics.median(values)


def measure(url: str, repeats: int, runs: int, shots: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    r: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script("""window.__longest = 0; try { new PerformanceObserver((list) => {
            for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration); })
            .observe({ type: 'longtask', buffered: true }); } catch (_) {}""")
        page = context.new_page()
        page.goto(url + "/")
        page.fill("input[name=user]", "bench")
        page.click("button[type=submit]")
        page.get_by_role("heading", name="Owners").wait_for()

        # G1: the run list of 10,000 runs, first rows painted, from navigation
        table = url + "/?owner=bench&project=table"
        r["G1"] = _median([_timed(lambda: page.goto(table), "() => document.querySelector('[data-run]')", page)
                           for _ in range(repeats)])
        page.wait_for_function(f"() => document.querySelector('.count').textContent.includes('of {runs} runs')",
                               timeout=120_000)
        page.screenshot(path=str(shots / "run-list.png"))
        # G2: filter, sort, add a column over all of them
        first_run = "() => document.querySelector('[data-run]') && document.querySelector('[data-run]').dataset.run"
        filters, sorts, columns = [], [], []
        for k in range(repeats):
            filters.append(_timed(lambda k=k: page.fill("[data-search]", f"run-0{k}12"),
                                  "() => document.querySelectorAll('[data-run]').length <= 10", page))
            page.fill("[data-search]", "")
            page.wait_for_function(f"() => document.querySelector('.count').textContent.startsWith('{runs} of')")
            before = page.evaluate(first_run)
            sorts.append(_timed(lambda: page.locator(".row.head span", has_text="created").click(),
                                f"() => ({first_run})() !== {json.dumps(before)} || location.search.includes('sort')",
                                page))
            columns.append(_timed(lambda k=k: page.select_option(".toolbar select >> nth=1", f"param:p{k:02d}"),
                                  f"() => [...document.querySelectorAll('.row.head span')].some(s => s.textContent.startsWith('p{k:02d}'))",
                                  page))
        r["G2 filter"], r["G2 sort"], r["G2 column"] = _median(filters), _median(sorts), _median(columns)
        r["G2"] = max(r["G2 filter"], r["G2 sort"], r["G2 column"])

        # G3: one 1,000,000-point series: from navigation to drawn, API call included
        big = url + "/?run=bench/big/series"
        caption = "figure.chart[data-field=loss] figcaption"
        drawn = f"() => (document.querySelector('{caption}') || {{}}).textContent?.includes('points')"
        r["G3"] = _median([_timed(lambda: page.goto(big), drawn, page) for _ in range(repeats)])
        page.screenshot(path=str(shots / "run.png"))
        # G4: zoom, the visible range asked for again and drawn (on the row index axis, whose selection
        # maps to indices exactly: the caption's first index is the one selected)
        by_index = big + "&x=index"
        page.goto(by_index)
        page.wait_for_function(drawn)
        zooms = []
        for k in range(repeats):
            lo = 100_000 * (k + 1)
            zooms.append(_timed(lambda lo=lo: page.evaluate("""(lo) => { const u = document.querySelector(
                    'figure.chart[data-field=loss]').__uplot; const a = u.valToPos(lo, 'x'), b = u.valToPos(lo + 50000, 'x');
                    u.setSelect({left: a, width: b - a, top: 0, height: 10}); }""", lo),
                "(lo) => document.querySelector('figure.chart[data-field=loss] figcaption').textContent"
                ".includes('indices ' + lo)", page, lo))
            page.goto(by_index)
            page.wait_for_function(drawn)
        r["G4"] = _median(zooms)

        # a series with spikes: navigation to drawn, and how many spikes the drawn points hold
        spiky = url + "/?run=bench/spiky/run"
        r["spiky"] = _median([_timed(lambda: page.goto(spiky), drawn, page) for _ in range(repeats)])
        r["spikes shown"] = page.evaluate("""(spikes) => { const u = document.querySelector(
            'figure.chart[data-field=loss]').__uplot; const [xs, hi] = [u.data[0], u.data[1]];
            // a spike is shown when the point standing for its index (the first at or after it) reaches 100
            return spikes.filter((i) => { const k = xs.findIndex((x) => x >= i); return k >= 0 && hi[k] >= 100; }).length; }""",
            SPIKES)

        # G5: 20 runs x 100,000 points overlaid, and the tooltip per cursor move
        compare = url + "/?compare=" + ",".join(f"bench/overlay/run-{k:02d}" for k in range(20))
        overlay = ("() => { const f = document.querySelector('figure.overlay[data-field=loss]');"
                   " return f && f.__uplot && f.querySelector('figcaption').textContent.includes('points'); }")
        r["G5"] = _median([_timed(lambda: page.goto(compare), overlay, page) for _ in range(repeats)])
        r["G5 tooltip"] = page.evaluate("""() => { const u = document.querySelector('figure.overlay[data-field=loss]').__uplot;
            const times = []; for (let k = 0; k < 200; k++) { const t = performance.now();
              u.setCursor({left: (k * 7) % u.bbox.width / devicePixelRatio, top: 50}); times.push(performance.now() - t); }
            times.sort((a, b) => a - b); return times[Math.floor(times.length * 0.95)]; }""")
        page.screenshot(path=str(shots / "compare.png"))

        # G6: a run page with 50 metric charts: the first 12 drawn, and the longest task meanwhile
        charts = url + "/?run=bench/charts/run"
        twelve = "() => [...document.querySelectorAll('figure.chart figcaption')].filter(c => c.textContent.includes('points')).length >= 12"
        g6, longest = [], []
        for _ in range(repeats):
            g6.append(_timed(lambda: page.goto(charts), twelve, page))
            # every chart the page shows drawn (a page of 24 metrics: the step is their x, no chart)
            page.wait_for_function("() => { const c = [...document.querySelectorAll('figure.chart figcaption')];"
                                   " return c.length >= 24 && c.every((x) => x.textContent.includes('points')); }",
                                   timeout=60_000)
            longest.append(page.evaluate("() => window.__longest"))
        r["G6"], r["G6 long task"] = _median(g6), max(longest)

        # G8: 1,000,000 log lines: the tail shown, then a level filter and a search over all of them
        logs = url + "/?run=bench/logs/run"
        tail = "() => (document.querySelector('.log-box') || {}).dataset?.lines === '1000' && document.querySelector('.log-lines li')"
        tails, levels, searches = [], [], []
        for k in range(repeats):
            tails.append(_timed(lambda: page.goto(logs), tail, page))
            levels.append(_timed(lambda: page.select_option(".logs select", "warn"),
                                 "() => [...document.querySelectorAll('.log-lines li')].every(l => l.className === 'log-warn')"
                                 " && document.querySelector('.log-box').dataset.lines === '1000'", page))
            page.select_option(".logs select", "")
            needle = f"needle-{1000 + k}"
            searches.append(_timed(lambda needle=needle: page.fill(".logs input", needle + " "),
                                   f"() => {{ const l = document.querySelectorAll('.log-lines li'); return l.length > 0 && "
                                   f"[...l].every(x => x.textContent.includes('{needle} ')); }}", page))
            page.fill(".logs input", "")
        r["G8 tail"] = _median(tails)
        r["G8 filter"] = max(_median(levels), _median(searches))
        r["G8 level"], r["G8 search"] = _median(levels), _median(searches)
        browser.close()
    return r


def measure_live(url: str, samples: int = 20) -> list[float]:
    """G7: a point logged by a remote-mode run, until the open run page shows it (ms each)."""
    from playwright.sync_api import sync_playwright

    from ml_dash import Experiment

    latencies = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        exp = Experiment(prefix="bench/live/run", remote=url, user_name="bench", local_path=Path(tmp) / "run")
        exp.run.start()
        exp.metrics("train").log(step=0, loss=1.0)
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("input[name=user]", "bench")
        page.click("button[type=submit]")
        page.get_by_role("heading", name="Owners").wait_for()
        page.goto(url + "/?run=bench/live/run")
        page.wait_for_function("() => (document.querySelector('figure.chart[data-field=loss] figcaption') || {})"
                               ".textContent?.includes('indices 0–0')", timeout=30_000)
        for i in range(1, samples + 1):
            time.sleep(random.Random(i).uniform(0.0, 1.0))  # points arrive at any phase of the polls
            began = time.perf_counter()
            exp.metrics("train").log(step=i, loss=1.0)
            page.wait_for_function(f"() => document.querySelector('figure.chart[data-field=loss] figcaption')"
                                   f".textContent.includes('indices 0–{i}')", timeout=30_000)
            latencies.append((time.perf_counter() - began) * 1e3)
        exp.run.complete()
        browser.close()
    return latencies


def ui_weight_kb() -> float:
    static = HERE.parent.parent / "ml_dash" / "ui" / "static"
    return sum(len(gzip.compress(p.read_bytes(), 9)) for p in static.rglob("*") if p.is_file()) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10_000, help="runs in the run table")
    ap.add_argument("--screenshots", type=Path, default=HERE.parent / "screenshots")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-mlflow", action="store_true", help="skip MLflow's UI even if its venv exists")
    args = ap.parse_args()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ml-dash-ui-bench-") as tmp:
        server, url = start_server(Path(tmp) / "data")
        try:
            began = time.perf_counter()
            asyncio.run(_send(url, _table_bodies(args.runs) + _bodies()))
            load_s = time.perf_counter() - began
            print(f"fixtures loaded in {load_s:.1f} s", file=sys.stderr)
            results = measure(url, args.repeats, args.runs, args.screenshots)
            results["load_s"] = load_s
            live = sorted(measure_live(url))
            results["G7 p95"] = live[min(len(live) - 1, int(len(live) * 0.95))]
            results["G7 median"] = statistics.median(live)
        finally:
            server.terminate()
            server.wait(timeout=60)

    results["G9 KB"] = ui_weight_kb()
    if _mlflow_ui.available() and not args.no_mlflow:
        with tempfile.TemporaryDirectory(prefix="ml-dash-ui-bench-mlflow-") as tmp:
            results["mlflow"] = _mlflow_ui.compare(Path(tmp), args.runs, args.repeats, args.screenshots)
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    def row(key: str, what: str, value: str, target: str, ok: bool) -> str:
        return f"| {key} | {what} | {value} | {target} | {'ok' if ok else 'MISSED'} |"

    def ms(key: str, what: str, target_key: str | None = None, extra: str = "") -> str:
        target = TARGETS_MS[target_key or key]
        return row(key, what, f"{r[key]:.0f} ms{extra}", f"<= {target} ms", r[key] <= target)

    print(f"| # | what (median of {args.repeats}) | measured | target | |")
    print("|---|---|---:|---|---|")
    for line in (
        ms("G1", f"run list of {args.runs:,} runs x 20 params x 10 metrics: first rows painted"),
        ms("G2", "filter, sort or add a column: repaint (the slowest of the three)",
           extra=f" (filter {r['G2 filter']:.0f}, sort {r['G2 sort']:.0f}, column {r['G2 column']:.0f})"),
        ms("G3", "one 1,000,000-point series: navigation to drawn, API call included"),
        ms("G4", "zoom: the visible range asked for again and drawn"),
        ms("G5", "20 runs x 100,000 points overlaid"),
        row("G5", "tooltip per cursor move (p95 of 200)", f"{r['G5 tooltip']:.1f} ms", "<= 16 ms", r["G5 tooltip"] <= 16),
        ms("G6", "a run page with 50 metric charts: the first 12 drawn"),
        row("G6", "the longest task meanwhile", f"{r['G6 long task']:.0f} ms", "<= 200 ms", r["G6 long task"] <= 200),
        row("G7", "live: a logged point visible, p95 of 20 (median)", f"{r['G7 p95']:.0f} ms ({r['G7 median']:.0f})",
            "<= 2000 ms", r["G7 p95"] <= 2000),
        ms("G8 tail", "1,000,000 log lines: the tail shown"),
        ms("G8 filter", "level filter, search over all of them (the slower)",
           extra=f" (level {r['G8 level']:.0f}, search {r['G8 search']:.0f})"),
        row("G9", "UI weight, gzipped", f"{r['G9 KB']:.1f} KB", "<= 150 KB", r["G9 KB"] <= 150),
    ):
        print(line)
    print(f"| | a 100,000-point series with {len(SPIKES)} spikes: navigation to drawn | {r['spiky']:.0f} ms | "
          f"{r['spikes shown']} of {len(SPIKES)} spikes in the drawn points | |")
    print(f"| | fixtures loaded over the API | {r['load_s']:.0f} s | | |")
    if "mlflow" in r:
        print_mlflow(r, args)


def print_mlflow(r: dict[str, Any], args: argparse.Namespace) -> None:
    """ml-dash beside MLflow on the same runs and the same spiky series, in the same browser."""
    m = r["mlflow"]
    rows, chart, page = m["first rows"], m["chart drawn"], m["metric page"]
    print()
    print(f"| same fixtures, same browser (median of {args.repeats}) | ml-dash | MLflow {m['mlflow_version']} | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| run list of {args.runs:,} runs: first rows painted | {r['G1']:.0f} ms | {rows['ms']:.0f} ms "
          f"| {rows['ms'] / r['G1']:.1f}x |")
    print(f"| runs the list holds | {args.runs:,} (pages of 1,000 as they come) | {rows['runs_fetched']} "
          f"({rows['shown']['count_text']}, then 'Load more') | |")
    for name, c in (("run page", chart), ("metric page", page)):
        print(f"| 100,000-point series with {len(SPIKES)} spikes, {name}: chart drawn | {r['spiky']:.0f} ms "
              f"| {c['ms']:.0f} ms | {c['ms'] / r['spiky']:.1f}x |")
    print(f"| spikes in the drawn chart | {r['spikes shown']} of {len(SPIKES)} | {chart['spikes_plotted']} of "
          f"{len(SPIKES)} ({chart['points_plotted']} points, {chart['sampled_points_fetched']} fetched; the metric "
          f"page: {page['spikes_plotted']}) | |")


if __name__ == "__main__":
    sys.exit(main())
