"""MLflow's web UI timed in the same headless Chromium as ml-dash's (benchmarks/ui.py imports this).

Everything runs on loopback: an ``mlflow server`` from MLflow's own venv (benchmarks/.peer-venv-mlflow,
SQLite store, one worker), its store loaded by direct SQL inserts (its REST client takes ~1.7 s a
run), and Debian's Chromium driven by Playwright. Times are medians of ``repeats``, from
``page.goto`` to the state waited for, the Python-to-browser round trip included.

Fixtures, the same as ml-dash's in benchmarks/ui.py:
  * experiment ``table``: 10,000 runs x 20 params (p00..p19) x 10 metrics (m0..m9, one value each);
  * experiment ``spiky``: one run with one metric ``loss`` of 100,000 points (steps 0..99,999),
    ``1.0 + (i % 7) * 0.01`` except 100.0 at the 12 indices of ``SPIKES``.

Measured:
  * first rows: the ``table`` experiment's runs list, navigation to the first run row painted;
  * chart drawn: the spiky run's ``loss`` chart, navigation to the line drawn, on the run page's
    "Model metrics" tab and on the full-page metric view;
  * spikes shown: how many of the 12 spikes are in the points MLflow fetched (network) and in the
    points handed to the chart (plotly's ``gd.data``).
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from _mlflow import MLFLOW_PYTHON, start_server, stop_server  # benchmarks/_mlflow.py (the folder is on sys.path)

CHROMIUM = "/usr/lib/chromium/chromium"
SPIKES = sorted(random.Random(9).sample(range(100_000), 12))  # as in benchmarks/ui.py's "spiky/run"
T0_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z: every fixture timestamp counts from here
# MLflow 3.x shows an experiment either as a GenAI app (traces, the default) or as classic model
# training (runs). The experiment tag mlflow.experimentKind records which; we set it on both
# experiments, but in 3.17.2 the UI ignores it (see ``ML_VIEW`` below).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


# -- the store ------------------------------------------------------------------------------------
def _run_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def create_schema(db: Path) -> None:
    """An empty MLflow store at ``db`` (alembic, through MLflow's own CLI: ~6 s)."""
    db.unlink(missing_ok=True)
    subprocess.run([MLFLOW_PYTHON, "-m", "mlflow", "db", "upgrade", f"sqlite:///{db}"], check=True,
                   capture_output=True, timeout=300)


def load_store(db: Path, runs: int, artifact_root: Path) -> dict[str, Any]:
    """Insert the two fixture experiments straight into the (empty, migrated) store at ``db``.

    Rows are what MLflow's own SqlAlchemyStore writes for create_run/log_batch: a ``runs`` row
    (``name`` is the run name; status, times in ms, lifecycle_stage, artifact_uri, user_id), the
    system tags the UI reads (mlflow.runName, mlflow.user, mlflow.source.*), ``params``, ``metrics``
    and, for each metric, its last value in ``latest_metrics`` (what the runs table shows).
    The ``workspace`` column of ``experiments`` defaults to 'default', the only workspace when the
    server runs without --enable-workspaces, so nothing is needed there.
    Returns the experiment ids and the spiky run's id.
    """
    rng = random.Random(2)
    con = sqlite3.connect(db)
    experiments, exp_tags, run_rows, tags, params, metrics, latest = [], [], [], [], [], [], []

    def experiment(exp_id: int, name: str) -> None:
        experiments.append((exp_id, name, f"{artifact_root}/{exp_id}", "active", T0_MS, T0_MS))
        exp_tags.append((EXPERIMENT_KIND[0], EXPERIMENT_KIND[1], exp_id))

    def run(exp_id: int, run_id: str, name: str, status: str, start: int, end: int | None) -> None:
        run_rows.append((run_id, name, "LOCAL", "bench.py", "", "bench", status, start, end, "", "active",
                         f"{artifact_root}/{exp_id}/{run_id}/artifacts", exp_id))
        tags.extend([("mlflow.runName", name, run_id), ("mlflow.user", "bench", run_id),
                     ("mlflow.source.name", "bench.py", run_id), ("mlflow.source.type", "LOCAL", run_id)])

    # experiment 0 ("Default") is what the server creates when it is missing; made here alike
    experiment(0, "Default")
    experiment(1, "table")
    for k in range(runs):
        run_id = _run_id(rng)
        status = rng.choice(["FINISHED", "FAILED", "RUNNING"])
        start = T0_MS + k * 60_000
        run(1, run_id, f"run-{k:05d}", status, start, None if status == "RUNNING" else start + 30_000)
        for j in range(20):
            value = rng.choice([rng.random(), rng.randrange(100), rng.choice(["adam", "sgd", "lion"])])
            params.append((f"p{j:02d}", str(value), run_id))
        for j in range(10):
            row = (f"m{j}", rng.random(), start + 1000, 0, 0, run_id)
            metrics.append(row)
            latest.append(row)

    experiment(2, "spiky")
    spiky_id = _run_id(rng)
    run(2, spiky_id, "spiky-run", "FINISHED", T0_MS, T0_MS + 100_000)
    spikes = set(SPIKES)
    for i in range(100_000):
        metrics.append(("loss", 100.0 if i in spikes else 1.0 + (i % 7) * 0.01, T0_MS + i, i, 0, spiky_id))
    latest.append(metrics[-1])

    with con:
        con.executemany("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
                        " creation_time, last_update_time) VALUES (?, ?, ?, ?, ?, ?)", experiments)
        con.executemany("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?)", exp_tags)
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
                        " status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,"
                        " experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_rows)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        con.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)"
                        " VALUES (?, ?, ?, ?, ?, ?)", metrics)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                        " VALUES (?, ?, ?, ?, ?, ?)", latest)
    con.close()
    return {"table": "1", "spiky": "2", "spiky_run": spiky_id}


# -- the server -----------------------------------------------------------------------------------
# -- the browser ----------------------------------------------------------------------------------
# Routes (hash router). ``workflowType=machine_learning`` puts the UI in its "Model training" mode:
# MLflow 3.17.2 decides GenAI vs. model training from a global switch (the URL's workflowType,
# else localStorage "mlflow.workflowType_v1", default "genai"), not from the experiment's
# mlflow.experimentKind tag (its feature flag for the switch is hard-wired on in the bundle), so
# ``#/experiments/<id>`` opens the GenAI overview even with the tag set to custom_model_development.
ML_VIEW = "workflowType=machine_learning"


def runs_list_route(exp_id: str) -> str:
    """The experiment's runs table (an AG Grid), what the experiment page opens to in ML mode."""
    return f"/#/experiments/{exp_id}/runs?{ML_VIEW}"


def run_metrics_route(exp_id: str, run_id: str) -> str:
    """The run page's "Model metrics" tab: one plotly chart card per metric (here just ``loss``)."""
    return f"/#/experiments/{exp_id}/runs/{run_id}/model-metrics?{ML_VIEW}"


def metric_page_route(exp_id: str, run_id: str, key: str) -> str:
    """The full-page metric view: one plotly chart, plus a latest/min/max table. Built like the
    bundle's Routes.getMetricPageRoute; note ``metric`` is a JSON string (``"loss"``, quoted), and
    the path is ``/metric`` (``/metric/<key>`` shows "Error during metric page load: invalid URL")."""
    q = (f'runs=["{run_id}"]&metric="{key}"&experiments=["{exp_id}"]&plot_metric_keys=["{key}"]'
         "&plot_layout={}&x_axis=step&y_axis_scale=linear&line_smoothness=1&show_point=false"
         f"&deselected_curves=[]&last_linear_y_axis_range=[]&{ML_VIEW}")
    return "/#/metric?" + q.replace('"', "%22")


# "first rows": a run-name link (an <a href="#/experiments/<id>/runs/<run id>"> whose text is the
# run name, run-NNNNN) inside an AG Grid row (.ag-row), laid out with a non-empty box (checked on
# animation frames). The grid puts all rows of the page it has (100) in the DOM at once (observed:
# 100 run links), so this is the first rows painted. Below the grid: "100 matching runs", "Load more".
FIRST_ROW_JS = """() => [...document.querySelectorAll('.ag-row a[href*="/runs/"]')].some(
    (a) => /^run-\\d{5}$/.test(a.textContent.trim()) && a.getBoundingClientRect().height > 0)"""
RUNS_SHOWN_JS = r"""() => {
    const names = new Set([...document.querySelectorAll('.ag-row a[href*="/runs/"]')]
        .map((a) => a.textContent.trim()).filter((t) => /^run-\d{5}$/.test(t)));
    const count = (document.body.innerText.match(/(\d[\d,]*) matching runs/) || [])[0] || null;
    const loadMore = [...document.querySelectorAll('button')].some((b) => b.textContent.trim() === 'Load more');
    return {rows_with_run_links: names.size, count_text: count, load_more_button: loadMore};
}"""
# "chart drawn": MLflow draws metric charts with plotly (react-plotly), a div.js-plotly-plot whose
# ``data`` holds the traces; drawn = a trace with points and its SVG line (path.js-line) has a path.
CHART_DRAWN_JS = """() => { const g = document.querySelector('.js-plotly-plot');
    return !!(g && g.data && g.data.some((d) => d.y && d.y.length > 0) &&
        [...g.querySelectorAll('.scatterlayer path.js-line')].some((p) => (p.getAttribute('d') || '').length > 1)); }"""
PLOTTED_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].flatMap((g) => g.data.map((d) => ({
    name: d.name, mode: d.mode, points: d.y.length, x_min: Math.min(...d.x), x_max: Math.max(...d.x),
    y_max: Math.max(...d.y), x_at_100: d.x.filter((x, k) => d.y[k] >= 100) })))"""


class ApiLog:
    """Every REST call a page makes (/ajax-api/ and /api/), with its size; metric-history and
    runs/search bodies are kept (parsed) to count the points and runs the page received."""

    KEEP = ("/metrics/get-history", "/runs/search")

    def __init__(self, page: Any, base: str) -> None:
        self.base = base
        self.reset()
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_done)
        page.on("requestfailed", self._on_done)
        page.on("response", self._on_response)

    def reset(self) -> None:
        """Forget the calls so far; times count from now (call it right before the navigation)."""
        self.entries: list[dict[str, Any]] = []
        self.pending: set[Any] = set()
        self.t0 = self.last_activity = time.time() * 1e3

    def _is_api(self, url: str) -> bool:
        return url.startswith(self.base) and "api/" in urlparse(url).path

    def _on_request(self, req: Any) -> None:
        if self._is_api(req.url):
            self.pending.add(req)
            self.last_activity = time.time() * 1e3

    def _on_done(self, req: Any) -> None:
        if req in self.pending:
            self.pending.discard(req)
            self.last_activity = time.time() * 1e3

    def _on_response(self, resp: Any) -> None:
        if not self._is_api(resp.url):
            return
        parsed = urlparse(resp.url)
        from playwright.sync_api import Error as PlaywrightError

        try:
            body = resp.body()
        except PlaywrightError:  # the page went away before the body was read
            body = b""
        # when the response ended, from Chromium's own timing (the Python handler may run later)
        timing = resp.request.timing
        end = timing["startTime"] + max(timing.get("responseEnd", -1), 0)
        entry = {"ms": end - self.t0, "method": resp.request.method, "path": parsed.path,
                 "query": parsed.query, "status": resp.status, "bytes": len(body)}
        if any(k in parsed.path for k in self.KEEP) and body:
            try:
                entry["json"] = json.loads(body)
            except ValueError:
                pass
        self.entries.append(entry)

    def wait_quiet(self, page: Any, quiet_ms: float = 2000, timeout_s: float = 90) -> None:
        """Until no API call is in flight and none started or ended for ``quiet_ms``: the page's
        follow-up fetches (e.g. the metric page's history pages, one after another) are done."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.pending and time.time() * 1e3 - self.last_activity >= quiet_ms:
                return
            page.wait_for_timeout(250)  # Playwright dispatches the page's events meanwhile

    def summary(self) -> list[dict[str, Any]]:
        """Calls grouped by method and path: count, bytes, and when the last one arrived."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for e in self.entries:
            g = groups.setdefault((e["method"], e["path"]), {"method": e["method"], "path": e["path"], "calls": 0,
                                                            "bytes": 0, "last_ms": 0.0, "statuses": set()})
            g["calls"] += 1
            g["bytes"] += e["bytes"]
            g["last_ms"] = round(max(g["last_ms"], e["ms"]))
            g["statuses"].add(e["status"])
        return [{**g, "statuses": sorted(g["statuses"])} for g in groups.values()]


def measure(page: Any, api: ApiLog, url: str, ready_js: str, repeats: int,
            timeout_ms: float = 120_000) -> dict[str, Any]:
    """Median ms from ``page.goto(url)`` to ``ready_js`` holding, over ``repeats`` full page loads.

    Each load starts from about:blank, so it is a real document load (the app boots and fetches
    again; only the browser's HTTP cache is warm). An untimed first load warms that cache; its time
    is reported as ``first_ms``. After each load we wait for the API calls to go quiet, so the
    log of the last load (``api``) holds everything that page fetched.
    """
    times = []
    for _ in range(repeats + 1):
        page.goto("about:blank")
        api.reset()
        began = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=timeout_ms)
        page.wait_for_function(ready_js, timeout=timeout_ms)
        times.append((time.perf_counter() - began) * 1e3)
        api.wait_quiet(page)
    return {"ms": statistics.median(times[1:]), "all_ms": [round(t) for t in times[1:]], "first_ms": round(times[0]),
            "api": api.summary(),
            "api_settled_ms": round(max((e["ms"] for e in api.entries), default=0.0))}


def history_points(api: ApiLog, endpoint: str) -> dict[int, float]:
    """step -> value of metric 'loss' in the responses of ``endpoint`` (a path suffix) of the last load."""
    points: dict[int, float] = {}
    for e in api.entries:
        if e["path"].endswith(endpoint) and "json" in e:
            for m in e["json"].get("metrics", []):
                if m.get("key") == "loss":
                    points[int(m.get("step", 0))] = float(m["value"])
    return points


def spikes_in(points: dict[int, float]) -> int:
    return sum(1 for s in SPIKES if points.get(s, 0.0) >= 100)


def measure_chart(page: Any, api: ApiLog, url: str, repeats: int) -> dict[str, Any]:
    """Chart drawn, plus the spikes in what was fetched (network) and in what plotly was given.

    The charts fetch ``metrics/get-history-bulk-interval?max_results=320`` (MLflow samples 320 steps
    evenly, keeping first and last); the full-page metric view also pages through the whole history
    with ``metrics/get-history?max_results=25000`` (for its min/max table) but plots the sample.
    """
    r = measure(page, api, url, CHART_DRAWN_JS, repeats)
    sampled = history_points(api, "/metrics/get-history-bulk-interval")
    full = history_points(api, "/metrics/get-history")
    interval_queries = [e["query"] for e in api.entries if "get-history-bulk-interval" in e["path"]]
    plotted = page.evaluate(PLOTTED_JS)
    plotted_spikes = {x for t in plotted for x in t["x_at_100"]}
    r.update({
        "sampled_points_fetched": len(sampled), "spikes_in_sampled": spikes_in(sampled),
        "sampled_query": interval_queries[-1] if interval_queries else None,
        "full_points_fetched": len(full), "spikes_in_full": spikes_in(full) if full else None,
        "traces": [{k: v for k, v in t.items() if k != "x_at_100"} for t in plotted],
        "points_plotted": max((t["points"] for t in plotted), default=0),
        "spikes_plotted": len(plotted_spikes & set(SPIKES)),
    })
    return r


def run_browser(url: str, ids: dict[str, Any], repeats: int, shots: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(120_000)
            api = ApiLog(page, url)

            table = measure(page, api, url + runs_list_route(ids["table"]), FIRST_ROW_JS, repeats)
            table["shown"] = page.evaluate(RUNS_SHOWN_JS)
            searches = [e for e in api.entries if e["path"].endswith("/runs/search") and "json" in e]
            table["runs_fetched"] = sum(len(e["json"].get("runs", [])) for e in searches)
            table["more_pages"] = any(e["json"].get("next_page_token") for e in searches)
            page.screenshot(path=str(shots / "mlflow-runs.png"))
            out["first rows"] = table

            exp, run = ids["spiky"], ids["spiky_run"]
            out["chart drawn"] = measure_chart(page, api, url + run_metrics_route(exp, run), repeats)
            page.screenshot(path=str(shots / "mlflow-run-metrics.png"))
            out["metric page"] = measure_chart(page, api, url + metric_page_route(exp, run, "loss"), repeats)
            page.screenshot(path=str(shots / "mlflow-metric-page.png"))
        finally:
            browser.close()
    return out


# -- the comparison -------------------------------------------------------------------------------
def available() -> bool:
    """Whether MLflow is installed in its venv (``python -m venv benchmarks/.peer-venv-mlflow`` and
    ``pip install mlflow`` there)."""
    return MLFLOW_PYTHON.exists()


def compare(workdir: Path, runs: int, repeats: int, shots: Path) -> dict[str, Any]:
    """Load the fixtures into a fresh MLflow store under ``workdir``, serve it, and time its UI."""
    db = workdir / "mlflow.db"
    r: dict[str, Any] = {"runs": runs, "repeats": repeats, "spikes": SPIKES}
    began = time.perf_counter()
    create_schema(db)
    r["schema_s"] = time.perf_counter() - began
    began = time.perf_counter()
    ids = load_store(db, runs, workdir / "artifacts")
    r["load_s"] = time.perf_counter() - began
    print(f"mlflow store: schema {r['schema_s']:.1f} s, inserts {r['load_s']:.1f} s", file=sys.stderr)
    began = time.perf_counter()
    server, url = start_server(f"sqlite:///{db}", workdir, extra=("--default-artifact-root", str(workdir / "artifacts"),
                                                                 "--no-serve-artifacts"))
    try:
        r["server_start_s"] = time.perf_counter() - began
        with urllib.request.urlopen(url + "/version", timeout=30) as resp:
            r["mlflow_version"] = resp.read().decode().strip()
        r.update(run_browser(url, ids, repeats, shots))
    finally:
        stop_server(server)
    return r
