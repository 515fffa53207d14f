"""The web UI in a real browser (tests/browser.py): each row's test against a real ``ml-dash server``
on 127.0.0.1 and against ``ml-dash ui`` over local runs (tests/sites.py); the session, CSP and file
serving tests against the server."""

from __future__ import annotations

import http.client
import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ml_dash import Experiment
from ml_dash.format.wire import metric_blocks

from .app_server import AppServer
from .browser import Tab, follow_a_live_run, wait_for_chart, wait_for_status
from .server_process import Server
from .sites import ServerSite, Site

XSS = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=2</script>"


def _run(site: Site, prefix: str, rows: int = 2000, **fields: Any) -> Experiment:
    exp = site.experiment(prefix, **fields)
    with exp.run:
        exp.params.set(lr=0.001, model={"depth": 8})
        train = exp.metrics("train")
        for i in range(rows):
            train.log(step=i, loss=1.0 / (i + 1))
        exp.log("started", level="info")
        exp.log("diverging", level="warn")
        exp.files("cfg").save_text('{"a": 1}', to="config.json")
    return exp


def test_sign_in_browse_to_a_run_and_see_its_charts_params_logs_and_files(site: Site, tab: Tab) -> None:
    _run(site, "alice/proj/run-1", tags=["baseline"], description="the first run")
    site.open(tab)
    page = tab.page
    if isinstance(site, ServerSite):  # signed in: a session cookie, never the key
        cookie = next(c for c in page.context.cookies() if c["name"] == f"ml_dash_session_{site.server.port}")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"  # no script can read it, no site can send it
        assert site.key not in json.dumps(page.context.cookies())
    else:  # signed in through the printed URL: the token left the URL for this origin's storage, no cookie
        assert page.context.cookies() == []  # a cookie would be sent to every port of the host
        assert page.evaluate("() => localStorage.getItem('ml-dash-ui-token')") == site.token
        # no token in the address bar; one owner's one project: the start page opened its run list
        assert page.url in (site.url + "/", site.url + "/?owner=alice&project=proj")
        assert page.get_by_role("button", name="Sign out").count() == 0
    page.get_by_role("link", name="alice", exact=True).click()
    page.get_by_role("link", name="proj", exact=True).click()
    page.locator("[data-run='alice/proj/run-1']").click()
    page.locator("figure.chart[data-field=loss] canvas").first.wait_for()
    assert page.locator("h2").inner_text() == "run-1"
    assert page.locator(".badge").first.inner_text() == "COMPLETED"
    assert "the first run" in page.locator(".description").inner_text()
    assert page.locator(".params th", has_text="model.depth").count() == 1
    assert page.locator(".log-lines li").count() == 2
    page.select_option(".logs select", "warn")
    page.wait_for_function("() => document.querySelectorAll('.log-lines li').length === 1")
    assert "diverging" in page.locator(".log-lines li").inner_text()
    assert page.locator(".files td", has_text="cfg/config.json").count() == 1
    page.get_by_role("button", name="preview").click()
    assert page.locator(".preview pre").inner_text().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert tab.errors == []


def test_every_user_string_is_rendered_as_text_and_nothing_runs(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/xss/run", description=XSS, tags=["t" + SCRIPT])
    with exp.run:
        exp.params.set(**{"k" + XSS: SCRIPT, "plain": XSS})
        exp.metrics("train").log(**{"f" + XSS: 1.0, "step": 0})
        exp.log(XSS + SCRIPT, level="error")
        exp.files("f").save_text(SCRIPT, to="page.html")
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/xss/run")
    page.locator(".log-lines li").first.wait_for()
    page.get_by_role("button", name="preview").click()
    page.locator(".preview pre").wait_for()
    body = page.locator("body").inner_text()
    for text in (XSS, SCRIPT, "t" + SCRIPT, "k" + XSS):
        assert text in body  # shown, as text
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0 and page.locator("main script").count() == 0
    page.goto(site.url + "/?owner=alice&project=xss")
    page.locator("[data-run='alice/xss/run']").wait_for()
    assert page.evaluate("window.__xss") is None


def test_the_url_holds_the_view_and_a_reload_brings_it_back(site: Site, tab: Tab) -> None:
    for k, lr in enumerate([0.1, 0.01, 0.001, 0.0001]):
        exp = site.experiment(f"alice/grid/lr-{k}", tags=["even" if k % 2 == 0 else "odd"])
        with exp.run:
            exp.params.set(lr=lr, depth=k)
            exp.metrics("train").log(loss=lr, step=0)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?owner=alice&project=grid")
    page.locator("[data-run]").first.wait_for()
    page.fill("input.wide", "lr < 0.05, garbage ~~ x")  # a part that is no condition is said, not ignored
    page.locator(".not-understood", has_text="garbage ~~ x").wait_for()
    page.fill("input.wide", "lr < 0.05")
    assert page.locator(".not-understood").count() == 0
    page.select_option(".toolbar select >> nth=1", "param:depth")  # the column chooser
    page.locator(".row.head span", has_text="depth").click()  # sort by it
    page.locator(".row.head span", has_text="depth").click()  # descending
    rows = lambda: [r.get_attribute("data-run") for r in page.locator("[data-run]").all()]
    page.wait_for_function("() => document.querySelectorAll('[data-run]').length === 3")
    shown = rows()
    assert shown == ["alice/grid/lr-3", "alice/grid/lr-2", "alice/grid/lr-1"]
    url = page.url
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('[data-run]').length === 3")
    assert page.url == url and rows() == shown
    assert page.locator("input.wide").input_value() == "lr < 0.05"
    page.go_back()  # history: each choice is a step
    page.wait_for_function("() => document.querySelector('.row.head') && !location.search.includes('desc=1')")


def test_the_run_table_filters_and_sorts_by_latest_metric_values(site: Site, tab: Tab) -> None:
    for k in range(4):
        exp = site.experiment(f"alice/table/run-{k}")
        with exp.run:
            for step in range(50):
                exp.metrics("train").log(step=step, loss=10.0 - k - step / 100)  # the last loss: 9.51 - k
            exp.metrics("eval").log(acc=k / 10)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?owner=alice&project=table")
    page.locator("[data-run]").first.wait_for()
    page.select_option(".toolbar select >> nth=1", "metric:train/loss")
    page.fill("input.wide", "train/loss < 8")
    page.wait_for_function("() => document.querySelectorAll('[data-run]').length === 2")
    page.locator(".row.head span", has_text="train/loss").click()
    rows = [r.get_attribute("data-run") for r in page.locator("[data-run]").all()]
    assert rows == ["alice/table/run-3", "alice/table/run-2"]  # 6.51 before 7.51
    assert page.locator("[data-run='alice/table/run-3'] span", has_text="6.51").count() == 1  # as people write it


def test_grouping_by_a_param_puts_a_header_before_each_group_which_folds_and_stays_folded(
        site: Site, tab: Tab) -> None:
    # "1" and "01" look equal to the numeric sort: still two groups, each in one piece
    for name, opt in (("a", "sgd"), ("b", "adam"), ("c", None), ("d", "adam"), ("e", XSS), ("f", "1"), ("g", "01"),
                      ("h", "1")):
        exp = site.experiment(f"alice/groups/{name}")
        with exp.run:
            exp.params.set(**({"opt": opt} if opt else {"lr": 0.1}))
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?owner=alice&project=groups")
    page.locator("[data-run]").first.wait_for()
    page.select_option(".toolbar select >> nth=2", "opt")

    def rows() -> list[str]:
        return ["# " + r.inner_text().replace("\n", " ") if r.get_attribute("data-group") is not None
                else r.get_attribute("data-run").split("/")[-1] for r in page.locator(".body .row").all()]

    page.locator("[data-group]").first.wait_for()
    assert rows() == ["# ▾ opt = (none) 1 run", "c", f"# ▾ opt = {XSS} 1 run", "e", "# ▾ opt = 01 1 run", "g",
                      "# ▾ opt = 1 2 runs", "h", "f", "# ▾ opt = adam 2 runs", "d", "b", "# ▾ opt = sgd 1 run", "a"]
    page.locator("[data-group=adam]").click()
    page.wait_for_function("() => !document.querySelector('[data-run=\"alice/groups/b\"]')")
    assert rows() == ["# ▾ opt = (none) 1 run", "c", f"# ▾ opt = {XSS} 1 run", "e", "# ▾ opt = 01 1 run", "g",
                      "# ▾ opt = 1 2 runs", "h", "f", "# ▸ opt = adam 2 runs", "# ▾ opt = sgd 1 run", "a"]
    assert page.locator(".count").inner_text() == "8 of 8 runs"  # folded runs still match the filter
    page.reload()
    page.locator("[data-group]").first.wait_for()
    assert "# ▸ opt = adam 2 runs" in rows() and "b" not in rows()  # the URL holds the fold
    assert page.evaluate("() => window.__xss") is None  # the param value was text, never HTML
    page.locator("[data-group=adam]").click()
    page.locator("[data-run='alice/groups/d']").wait_for()


def test_compare_overlays_metrics_diffs_params_and_draws_the_scatter_and_parallel_views(
        site: Site, tab: Tab) -> None:
    for k in range(3):
        exp = site.experiment(f"alice/cmp/run-{k}")
        with exp.run:
            exp.params.set(lr=10.0 ** -k, depth=8, optimizer="adam" if k else "sgd")
            for step in range(2000):
                exp.metrics("train").log(step=step, loss=(k + 1) / (step + 1))
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?owner=alice&project=cmp")
    for k in range(3):
        page.get_by_label(f"select run-{k}").check()
    assert page.url.count("run-") == 3  # the selection is in the URL
    page.get_by_role("button", name="Compare 3").click()
    page.locator("figure.overlay[data-field=loss] canvas").first.wait_for()
    assert page.evaluate("() => document.querySelector('figure.overlay[data-field=loss]').__uplot.series.length") == 10
    assert page.locator(".diff tr.differs th").all_inner_texts() == ["lr", "optimizer"]
    page.get_by_label("only the params that differ").check()
    assert page.locator(".diff tbody tr").count() == 2
    coloured = """(selector) => { const c = document.querySelector(selector); const d = c.getContext('2d')
        .getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let k = 0; k < d.length; k += 4) if (d[k + 3] > 0 && Math.abs(d[k] - d[k + 2]) > 60) n++; return n; }"""
    page.select_option("select[name=sx]", "param:lr")
    page.select_option("select[name=sy]", "metric:train/loss")
    assert page.evaluate(coloured, ".scatter canvas") > 0  # the runs' coloured points
    assert page.evaluate(coloured, ".parallel canvas") > 0  # and their lines
    url = page.url
    page.reload()
    page.locator("figure.overlay[data-field=loss] canvas").first.wait_for()
    assert page.url == url and page.locator(".diff tbody tr").count() == 2
    page.locator(".crumbs a", has_text="cmp").click()  # back to the project the runs came from
    page.locator("[data-run='alice/cmp/run-0']").wait_for()
    assert tab.errors == []


def test_a_chart_draws_every_spike_of_a_long_series(site: Site, tab: Tab) -> None:
    """Spikes at random positions of a 200,000-row series are in the buckets the chart asked for, and
    lit in the drawn canvas near their x positions (the min/max band)."""
    rng = random.Random(3)
    n = 200_000
    spikes = sorted(rng.sample(range(n), 6))
    exp = site.experiment("alice/spiky/run")
    with exp.run:
        train = exp.metrics("train")
        for i in range(n):
            train.log(loss=100.0 if i in spikes else 1.0 + (i % 7) * 0.01)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/spiky/run")
    canvas = page.locator("figure.chart[data-field=loss] canvas").first
    canvas.wait_for()
    page.wait_for_function("() => document.querySelector('figure.chart[data-field=loss] figcaption').textContent"
                           ".includes('points')")
    # for each index, the blue (line and band) pixels above half the spike's height in its pixel column,
    # by uPlot's own scales; grid lines and labels are grey, the background is empty
    lit = """(indices) => {
        const fig = document.querySelector('figure.chart[data-field=loss]');
        const u = fig.__uplot;
        const canvas = fig.querySelector('canvas');
        const ctx = canvas.getContext('2d');
        const top = Math.ceil(u.valToPos(50, 'y', true));
        return indices.map((i) => {
            const x = Math.round(u.valToPos(i, 'x', true));
            const px = ctx.getImageData(Math.max(0, x - 3), 0, 7, top).data;
            let blue = 0;
            for (let k = 0; k < px.length; k += 4) if (px[k + 3] > 0 && px[k + 2] - px[k] > 40) blue++;
            return blue;
        });
    }"""
    found = page.evaluate(lit, spikes)
    far = [i for i in range(5_000, n, 20_011) if all(abs(i - s) > 5_000 for s in spikes)]
    assert far and page.evaluate(lit, far) == [0] * len(far)  # the check sees nothing where there is none
    assert all(count > 0 for count in found), list(zip(spikes, found))


def test_zoom_x_axes_and_exports_of_a_chart(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/zoom/run")
    with exp.run:
        for i in range(50_000):
            exp.metrics("train").log(step=10 * i, loss=float(i % 100))
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/zoom/run&x=index")  # the row index first (the default is the step)
    caption = "figure.chart[data-field=loss] figcaption"
    page.wait_for_function(f"() => (document.querySelector('{caption}') || {{}}).textContent?.includes('min/max')")
    # drag-select a narrow range: the chart asks for it again and, at <= 2 points per pixel, shows raw rows
    page.evaluate("""() => { const u = document.querySelector('figure.chart[data-field=loss]').__uplot;
        u.setSelect({left: u.valToPos(20000, 'x'), width: u.valToPos(20300, 'x') - u.valToPos(20000, 'x'),
                     top: 0, height: 10}); }""")
    page.wait_for_function(f"() => document.querySelector('{caption}').textContent.includes('raw')")
    zoom = page.evaluate("() => new URLSearchParams(location.search).get('z.train/loss')")
    first, end = map(int, zoom.split(":"))
    assert 19_990 <= first <= 20_000 and 20_300 <= end <= 20_310, zoom
    assert f"indices {first}–{end - 1}" in page.locator(caption).inner_text()
    with page.expect_download() as csv_download:
        page.locator(caption).get_by_role("button", name="CSV").click()
    lines = Path(csv_download.value.path()).read_text().splitlines()
    assert lines[0] == "index_first,index_last,step,wall_time,min,max,last" and len(lines) == end - first + 1
    assert lines[1].split(",")[:3] == [str(first), str(first), str(10 * first)]
    with page.expect_download() as png_download:
        page.locator(caption).get_by_role("button", name="PNG").click()
    assert Path(png_download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.select_option("select[name=x]", "step")
    page.wait_for_function("() => new URLSearchParams(location.search).get('x') === null")  # the step: the default
    page.wait_for_function("() => { const u = document.querySelector('figure.chart[data-field=loss]').__uplot;"
                           f" return u && u.scales.x.min >= {10 * first - 10} && u.series[0].label === 'step'; }}")
    page.reload()  # the zoom and the axis come back with the URL
    page.wait_for_function(f"() => (document.querySelector('{caption}') || {{}}).textContent?.includes('raw')")
    assert page.locator("select[name=x]").input_value() == "step"
    span = end - first
    page.locator(caption).get_by_role("button", name="pan right").click()  # by half the visible range
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('z.train/loss') === "
                           f"'{first + (span + 1) // 2}:{first + (span + 1) // 2 + span}'")
    page.locator(caption).get_by_role("button", name="reset zoom").click()
    page.wait_for_function(f"() => document.querySelector('{caption}').textContent.includes('indices 0–49999')")
    for mode, label in (("mean", "running mean"), ("ema", "EMA")):  # drawn over the line, not instead of it
        page.select_option("select[name=sm]", mode)
        page.locator("input[name=smooth]").fill("0.9")
        page.wait_for_function("(label) => { const u = document.querySelector('figure.chart[data-field=loss]').__uplot;"
                               " return u && u.series.length === 5 && u.series[4].label === label"
                               " && u.series[3].label === 'loss'; }", arg=label)
        smoothed = page.evaluate("() => document.querySelector('figure.chart[data-field=loss]').__uplot.data[4]")
        assert all(v is not None and 0 <= v <= 99 for v in smoothed)  # within the series' range
    assert tab.errors == []


def test_log_search_and_level_filter_cover_the_whole_run_not_the_loaded_tail(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/logs/run")
    with exp.run:
        exp.log("needle 100% found_here", level="warn")  # index 0: far outside the last 1,000 lines
        for i in range(3000):
            exp.log(f"line {i}", level="info")
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/logs/run")
    page.wait_for_function("() => (document.querySelector('.log-box') || {}).dataset?.lines === '1000'")
    assert page.locator(".log-lines li").count() < 100  # only the lines in view are in the page
    assert "line 2999" in page.locator(".log-lines").inner_text()  # scrolled to the end, as a tail
    assert "needle" not in page.locator(".log-lines").inner_text()
    page.fill(".logs input", "100% found_")  # LIKE's wildcards are plain characters here
    page.wait_for_function("() => document.querySelectorAll('.log-lines li').length === 1")
    assert "needle 100% found_here" in page.locator(".log-lines").inner_text()
    page.fill(".logs input", "")
    page.select_option(".logs select", "warn")
    page.wait_for_function("() => document.querySelectorAll('.log-lines li').length === 1")
    page.select_option(".logs select", "")
    page.fill(".logs input", "10_")  # no message holds "10_" (unescaped, "_" would match "line 100" and more)
    page.wait_for_function("() => document.querySelectorAll('.log-lines li').length === 0")
    assert tab.errors == []


def test_a_live_run_shows_new_points_and_its_end(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/live/run")
    exp.run.start()
    for i in range(100):
        exp.metrics("train").log(step=i, loss=1.0)
    exp.flush()
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/live/run")
    follow_a_live_run(page, exp, 100, 50)


def test_a_live_run_asks_only_for_its_new_points_and_lines_and_draws_what_the_server_holds(
        site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/live/long")
    exp.run.start()
    rng = random.Random(3)
    train = exp.metrics("train")
    logged = 0

    def log(rows: int) -> None:
        nonlocal logged
        for _ in range(rows):
            train.log(step=logged, loss=rng.random() + (50.0 if logged % 997 == 0 else 0.0))
            logged += 1
        exp.log(f"a line before {logged}")  # more than one new line a poll: the tail keeps following
        exp.log(f"logged {logged} rows")
        exp.flush()

    for k in range(40):  # more lines than the box shows: its end is scrolled to
        exp.log(f"line {k}")
    log(20_000)  # more than two points a pixel: buckets
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/live/long")
    wait_for_status(page, "RUNNING")
    wait_for_chart(page, "loss", "min/max")
    wait_for_chart(page, "loss", "indices 0–19999")
    page.wait_for_function("() => document.querySelector('.log-lines').textContent.includes('logged 20000 rows')")
    before = len(tab.requests)
    for _ in range(3):
        log(3000)
        wait_for_chart(page, "loss", f"indices 0–{logged - 1}")
        page.wait_for_function("(n) => document.querySelector('.log-lines').textContent.includes(`logged ${n} rows`)",
                               arg=logged)
        # and the box follows the tail: scrolled to its end
        page.wait_for_function("() => { const b = document.querySelector('.log-box');"
                               " return b.scrollTop + b.clientHeight >= b.scrollHeight - 2; }")
    asked = [urlsplit(u) for u in tab.requests[before:]]
    metric = [parse_qs(u.query) for u in asked if u.path.endswith("/metrics/train")]
    logs = [parse_qs(u.query) for u in asked if u.path.endswith("/logs")]
    # each new read starts at the last bucket held, at the width held: never the whole series again
    assert metric and all(int(q["start"][0]) >= 20_000 - int(q["width"][0]) for q in metric), metric
    assert logs and all(int(q["start"][0]) >= 1 for q in logs), logs
    urls = [u for u in tab.requests[before:] if "/metrics/train" in u]
    assert len(urls) == len(set(urls))  # the charts of loss and step share each read
    width = int(metric[0]["width"][0])
    drawn = page.evaluate("() => { const d = document.querySelector('figure.chart[data-field=loss]').__uplot.data;"
                          " return {hi: d[1], lo: d[2], last: d[3]}; }")
    _, held = site.request("GET", f"/api/v1/experiments/alice/live/long/metrics/train?buckets=10000&width={width}"
                                  f"&start=0&end={logged}")
    loss = [b["fields"]["loss"] for b in held["buckets"]]
    assert drawn == {"hi": [f["max"] for f in loss], "lo": [f["min"] for f in loss], "last": [f["last"] for f in loss]}
    exp.run.complete()
    wait_for_status(page, "COMPLETED")


def test_the_ui_says_what_failed_instead_of_waiting_or_showing_nothing(workdir: Path, app_server: AppServer, tab: Tab) -> None:
    bob = ServerSite(app_server, "bob")
    with bob.experiment("bob/secret/run").run as exp:
        exp.metrics("train").log(loss=1.0)
    site = ServerSite(app_server)
    _run(site, "alice/p/run", rows=10)
    page = tab.page
    page.goto(app_server.url + "/")
    page.click("button[type=submit]")  # nothing entered
    assert "enter an API key" in page.locator(".sign-in .error").inner_text()
    page.fill("input[name=user]", "alice")  # a user name, on a server that takes keys only
    page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelector('.sign-in .error')?.textContent.includes('API keys only')")  # absent while redrawn
    site.open(tab)
    page.goto(app_server.url + "/?owner=bob")  # not alice's to read: said, not "Loading…" for ever
    page.locator("main .error", has_text="may not read").wait_for()
    page.goto(app_server.url + "/?run=alice/p/run&lq=" + "x" * 201)  # a search the server refuses
    page.locator(".logs .error", has_text="at most 200 characters").wait_for()
    many = ",".join(f"alice/p/r{k}" for k in range(51))
    page.goto(app_server.url + "/?compare=" + many)
    page.locator("main .error", has_text="compare at most 50").wait_for()
    page.goto(app_server.url + "/?owner=alice")
    page.get_by_role("link", name="p", exact=True).wait_for()
    assert page.evaluate("() => fetch('/api/v1/session', {method: 'DELETE'}).then((r) => r.status)") == 200  # elsewhere
    page.get_by_role("link", name="p", exact=True).click()  # the next read meets the 401: back to signing in
    page.locator("input[name=api_key]").wait_for()
    assert [e for e in tab.errors if "uncaught" in e] == []


def test_charts_of_look_alike_names_zoom_apart_and_a_zoom_the_url_cannot_mean_is_ignored(site: Site, tab: Tab) -> None:
    with site.experiment("alice/names/run").run as exp:
        for i in range(5000):
            exp.metrics("a.b").log(c=float(i % 10))
            exp.metrics("a").log(**{"b.c": float(i % 10)})
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/names/run")
    wait_for_chart(page, "c", "indices 0–4999")
    wait_for_chart(page, "b.c", "indices 0–4999")
    page.evaluate("""() => { const u = document.querySelector('figure.chart[data-metric="a.b"][data-field=c]').__uplot;
        u.setSelect({left: u.valToPos(1000, 'x'), width: u.valToPos(1200, 'x') - u.valToPos(1000, 'x'), top: 0, height: 10}); }""")
    wait_for_chart(page, "c", "raw")
    assert "indices 0–4999" in page.locator("figure.chart[data-field='b.c'] figcaption").inner_text()  # not zoomed with it
    before = len(tab.requests)
    page.goto(site.url + "/?run=alice/names/run&z.a.b%2Fc=abc:def&z.a%2Fb.c=500:100")
    wait_for_chart(page, "c", "indices 0–4999")
    wait_for_chart(page, "b.c", "indices 0–4999")
    assert not [u for u in tab.requests[before:] if "NaN" in u or "start=500" in u]


def test_keys_keep_the_cursor_in_view_and_user_strings_stay_isolated_and_inside_the_page(site: Site, tab: Tab) -> None:
    for k in range(40):
        with site.experiment(f"alice/many/r{k:02d}", tags=(["\u202egnp.exe", "after"] if k == 0 else [])).run as exp:
            exp.params.set(long="A" * 5000 if k == 0 else "short")
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?owner=alice&project=many&sort=name")
    page.wait_for_function("() => document.querySelectorAll('[data-run]').length > 20")
    assert page.evaluate("() => getComputedStyle(document.querySelector('.tag')).unicodeBidi") == "isolate"
    for _ in range(30):
        page.keyboard.press("j")
    page.wait_for_function("() => document.querySelector('.row.cursor') && document.querySelector('.row.cursor')"
                           ".dataset.run === 'alice/many/r30'")
    inside = """() => { const row = document.querySelector('.row.cursor').getBoundingClientRect();
        const box = document.querySelector('.table .body').getBoundingClientRect();
        return row.top >= box.top && row.bottom <= box.bottom + 1; }"""  # (+ a row's 1 px border)
    page.wait_for_function(inside)  # scrolled to it
    page.goto(site.url + "/?run=alice/many/r00")
    page.locator(".params td", has_text="AAAA").wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280  # the long value wraps


def test_charts_follow_a_dark_system_theme(site: Site, tab: Tab) -> None:
    _run(site, "alice/dark/run", rows=100)
    site.open(tab)
    page = tab.page
    page.emulate_media(color_scheme="dark")
    page.goto(site.url + "/?run=alice/dark/run")
    wait_for_chart(page, "loss", "indices 0–99")
    colours = page.evaluate("""() => { const u = document.querySelector('figure.chart[data-field=loss]').__uplot;
        const css = getComputedStyle(document.documentElement);
        const stroke = (a) => (typeof a.stroke === 'function' ? a.stroke(u, 1) : a.stroke);
        return [stroke(u.axes[0]), stroke(u.axes[1]), css.getPropertyValue('--muted').trim(), css.backgroundColor,
                getComputedStyle(document.body).backgroundColor]; }""")
    assert colours[0] == colours[1] == colours[2] == "#9aa3b2"  # the dark theme's text colour, not black
    assert colours[4] == "rgb(20, 23, 29)"


def _ingest(server: Server, key: str, prefix: str, start: int, stop: int, **run: Any) -> None:
    rows = [{"data": {"loss": float(i), "step": i}, "createdAt": "2026-12-01T00:00:00Z"} for i in range(start, stop)]
    body = {"v": 2, "identity": {"run_id": "live-run", "writer_id": "w"},
            "streams": {"metrics/train": {"start": start, "blocks": metric_blocks(rows)}}, **({"run": run} if run else {})}
    assert server.ingest(prefix, body, key)[0] == 200


def _held(page: Any, fragment: str) -> list[Any]:
    """The page's first request whose URL holds ``fragment``, kept unanswered until the test lets it go
    (``held[0].continue_()``); later ones go on as usual."""
    held: list[Any] = []

    def hold(route: Any) -> None:
        if held:
            route.fallback()
        else:
            held.append(route)

    page.route(lambda url: fragment in url, hold)
    return held


def _until(page: Any, predicate: Any) -> None:
    for _ in range(300):  # Playwright's own loop runs meanwhile (a handler may append)
        if predicate():
            return
        page.wait_for_timeout(50)
    raise AssertionError("not within 15 s")


def test_a_live_raw_chart_over_set_aside_rows_holds_each_row_once(app_server: AppServer, tab: Tab) -> None:
    """A page of rows skips set-aside indices and fills its limit past the end asked for: those rows
    belong to the next read, not to this one (else they come twice)."""
    key = app_server.key("alice")
    _ingest(app_server, key, "alice/live/holes", 0, 10, status="RUNNING")
    void = {"v": 2, "identity": {"run_id": "live-run", "writer_id": "w"},
            "streams": {"metrics/train": {"start": 10, "void": 5, "reason": "unencodable"}}}
    assert app_server.ingest("alice/live/holes", void, key)[0] == 200
    _ingest(app_server, key, "alice/live/holes", 15, 20)
    ServerSite(app_server).open(tab)
    page = tab.page
    held = _held(page, "/metrics/train?start=0&limit=20")
    page.goto(app_server.url + "/?run=alice/live/holes")
    _until(page, lambda: held)
    _ingest(app_server, key, "alice/live/holes", 20, 30)  # there by the time the page's read is answered
    held[0].continue_()
    wait_for_chart(page, "loss", "indices 0–29")
    xs = page.evaluate("() => document.querySelector('figure.chart[data-field=loss]').__uplot.data[0]")
    assert xs == [*range(10), *range(15, 30)]


def test_a_live_chart_keeps_options_chosen_while_new_points_were_on_their_way(app_server: AppServer, tab: Tab) -> None:
    """New points asked for before the smoothing changed arrive after the chart was drawn with it:
    they are dropped, and the chart stays drawn as the URL says."""
    key = app_server.key("alice")
    _ingest(app_server, key, "alice/live/options", 0, 100, status="RUNNING")
    ServerSite(app_server).open(tab)
    page = tab.page
    held = _held(page, "/metrics/train?start=100&")
    page.goto(app_server.url + "/?run=alice/live/options")
    wait_for_chart(page, "loss", "indices 0–99")
    _ingest(app_server, key, "alice/live/options", 100, 200)
    _until(page, lambda: held)  # the new points are on their way
    page.locator("input[name=smooth]").fill("0.9")
    labels = "() => document.querySelector('figure.chart[data-field=loss]').__uplot.series.map((s) => s.label)"
    page.wait_for_function(f"() => ({labels})().includes('EMA')")
    _ingest(app_server, key, "alice/live/options", 200, 300, status="COMPLETED")
    wait_for_status(page, "COMPLETED")  # the page knows of 300 rows; the held read still has to answer
    held[0].continue_()
    wait_for_chart(page, "loss", "indices 0–299")
    page.wait_for_timeout(1500)  # anything still coming from before the change has come
    assert page.evaluate(labels) == ["step", "max", "min", "loss", "EMA"]
    assert page.evaluate("() => document.querySelector('figure.chart[data-field=loss]').__uplot.data[0].length") == 300


def _raw(server: Server, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, dict, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    try:
        decoded = json.loads(payload)
    except ValueError:
        decoded = payload
    return response.status, dict(response.getheaders()), decoded


def test_a_session_may_only_read_ends_with_sign_out_and_with_its_key(app_server: AppServer) -> None:
    key = app_server.key("alice")
    status, headers, body = _raw(app_server, "POST", "/api/v1/session", {"Content-Type": "application/json"},
                                 json.dumps({"api_key": key}).encode())
    assert status == 200 and body == {"owner": "alice"}
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and key not in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    # behind a TLS-terminating proxy on this machine (the peer is loopback here): Secure
    behind = _raw(app_server, "POST", "/api/v1/session", {"Content-Type": "application/json", "X-Forwarded-Proto": "https"},
                  json.dumps({"api_key": key}).encode())[1]["Set-Cookie"]
    assert "Secure" in behind.split(";", 1)[1]
    session = {"Cookie": cookie.split(";", 1)[0]}
    assert _raw(app_server, "GET", "/api/v1/session", session)[2] == {"owner": "alice"}
    assert _raw(app_server, "GET", "/api/v1/owners", session)[0] == 200
    status, _, body = _raw(app_server, "POST", "/api/v1/runs/alice/p/r/events", {**session, "Content-Encoding": "zstd"}, b"x")
    assert status == 403 and "only read" in body["error"]
    assert _raw(app_server, "DELETE", "/api/v1/session", session)[0] == 200
    assert _raw(app_server, "GET", "/api/v1/owners", session)[0] == 401
    # a session opened with a key ends when the key is revoked
    cookie = _raw(app_server, "POST", "/api/v1/session", {"Content-Type": "application/json"},
                  json.dumps({"api_key": key}).encode())[1]["Set-Cookie"]
    session = {"Cookie": cookie.split(";", 1)[0]}
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "ml_dash.cli", "keys", "revoke", key, "--data", str(app_server.data)],
                   check=True, capture_output=True, timeout=60)
    assert _raw(app_server, "GET", "/api/v1/owners", session)[0] == 401
    assert _raw(app_server, "POST", "/api/v1/session", {"Content-Type": "application/json"},
                json.dumps({"api_key": "mld_000000000000_nope"}).encode())[0] == 401


def test_two_servers_on_one_machine_keep_their_own_sessions(tmp_path: Path, tab: Tab) -> None:
    """Browsers keep cookies per host, not per port: each server names its cookie after its port, so
    signing in to one does not sign the browser out of the other."""
    servers = [Server(tmp_path / "a"), Server(tmp_path / "b")]
    try:
        page = tab.page
        for srv, owner in zip(servers, ("alice", "bob")):
            ServerSite(srv, owner).open(tab)
        names = sorted(c["name"] for c in page.context.cookies())
        assert names == sorted(f"ml_dash_session_{srv.port}" for srv in servers)
        for srv, owner in zip(servers, ("alice", "bob")):
            page.goto(srv.url + "/")
            page.get_by_role("heading", name="Owners").wait_for()
            assert page.evaluate("() => fetch('/api/v1/session').then((r) => r.json())") == {"owner": owner}
    finally:
        for srv in servers:
            srv.stop()


def test_every_response_has_a_strict_csp_and_the_page_has_no_inline_script(app_server: AppServer) -> None:
    status, headers, page = _raw(app_server, "GET", "/", {})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    text = page.decode()
    assert "<script>" not in text and "onload" not in text and "style=" not in text
    assert _raw(app_server, "GET", "/health", {})[1]["Content-Security-Policy"] == csp
    for bad in ("/ui/../server/app.py", "/ui/%2e%2e/server/app.py", "/ui/vendor/../../__init__.py", "/ui/nothing.js"):
        assert _raw(app_server, "GET", bad, {})[0] == 404, bad


def test_a_stored_file_is_sandboxed_and_downloaded_never_run(workdir: Path, app_server: AppServer) -> None:
    key = app_server.key("alice")
    exp = Experiment(prefix="alice/files/run", remote=app_server.url, api_key=key)
    with exp.run:
        exp.files("f").save_text(SCRIPT, to="page.html")
    auth = {"Authorization": f"Bearer {key}"}
    status, headers, body = _raw(app_server, "GET", "/api/v1/experiments/alice/files/run/files/f/page.html", auth)
    assert status == 200 and body == SCRIPT.encode()
    assert headers["Content-Type"] == "application/octet-stream" and headers["Content-Disposition"] == "attachment"
    assert headers["Content-Security-Policy"].startswith("sandbox")
    status, headers, _ = _raw(app_server, "GET", "/api/v1/experiments/alice/files/run/files/f/page.html?preview=1", auth)
    assert headers["Content-Type"].startswith("text/plain") and headers["Content-Security-Policy"].startswith("sandbox")
