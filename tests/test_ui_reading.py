"""Charts and lists as W&B and MLflow users read them (issue 19, point 3), in a real browser
(tests/browser.py) against a real ``ml-dash server`` and ``ml-dash ui`` (tests/sites.py): a metric's
``step`` is its x axis, not a chart; one run's charts share their x range and hover cursor; the run
list newest first with durations, readable numbers and relative times; compare with the run page's
controls and many distinguishable colours; scatter and parallel coordinates on uPlot; logs by level and
above; file previews fit for their kind; a phone's width."""

from __future__ import annotations

from typing import Any

from .browser import Tab
from .sites import Site
from .waiting import wait_for

XSS = '<img src=x onerror="window.__xss=1">'


def _uplot(page: Any, selector: str, expression: str) -> Any:
    """``expression`` of the uPlot of the chart at ``selector`` (``u`` in it)."""
    return page.evaluate(f"() => {{ const u = document.querySelector({selector!r}).__uplot; return {expression}; }}")


def test_step_is_the_x_axis_not_a_chart_and_one_runs_charts_share_x_and_cursor(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/steps/run")
    with exp.run:
        for i in range(3000):
            exp.metrics("train").log(step=i, loss=1.0 / (i + 1))
            if i % 100 == 99:
                exp.metrics("val").log(step=i, loss=2.0 / (i + 1), acc=i / 3000)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/steps/run")
    train, val = "figure.chart[data-metric=train][data-field=loss]", "figure.chart[data-metric=val][data-field=loss]"
    for chart in (train, val, "figure.chart[data-metric=val][data-field=acc]"):
        page.locator(chart + " canvas").first.wait_for()
    assert page.locator("figure.chart[data-field=step]").count() == 0  # the x axis, not a metric
    assert page.locator("select[name=x]").input_value() == "step"
    page.wait_for_function(f"() => document.querySelector({val!r}).__uplot.scales.x.max >= 2999")
    for chart in (train, val):
        assert _uplot(page, chart, "u.series[0].label") == "step"
    # val's 30 points (from step 99) over the same steps as train's 3,000 (buckets, from its first): one x range
    shared = _uplot(page, train, "[u.scales.x.min, u.scales.x.max]")
    assert shared[0] < 99 and shared[1] == 2999 and _uplot(page, val, "[u.scales.x.min, u.scales.x.max]") == shared
    assert _uplot(page, val, "Array.from(u.data[0])")[:2] == [99, 199]
    page.locator(train).scroll_into_view_if_needed()
    box = page.locator(train + " .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # hover one chart ...
    page.wait_for_function(f"() => document.querySelector({val!r}).__uplot.cursor.left > 0")  # ... all follow
    step_at = _uplot(page, val, "u.posToVal(u.cursor.left, 'x')")
    assert 1300 < step_at < 1700, step_at
    page.goto(site.url + "/?owner=alice&project=steps")
    page.locator("[data-run]").first.wait_for()
    picker = page.locator("select.columns option").all_inner_texts()
    assert any("train/loss" in o for o in picker) and not any("step" in o for o in picker)
    assert tab.errors == []


def _drag(page: Any, selector: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag over the plot area of the uPlot at ``selector``, between fractions of its size."""
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(selector + " .u-over").bounding_box()
    at = lambda f: (box["x"] + f[0] * box["width"], box["y"] + f[1] * box["height"])
    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)))
    page.mouse.move(*at(end))
    page.mouse.up()


def test_compare_many_runs_with_the_run_pages_controls_colours_folded_legends_and_real_scatter_and_parallel(
        site: Site, tab: Tab) -> None:
    lrs = [10.0 ** -k for k in range(6)]
    for k in range(12):
        exp = site.experiment(f"alice/sweep/run-{k:02d}")
        with exp.run:
            # depth: the same in every run; a key that is markup: text wherever it shows
            exp.params.set(lr=lrs[k % 6], depth=8, seed=k, **{"k" + XSS: k % 3})
            for step in range(0, 300, 3):
                exp.metrics("train").log(step=step, loss=(k + 1) / (step + 1) + (step % 7) * 0.01)
            exp.metrics("val").log(step=297, acc=0.5 + k / 100)
    site.open(tab)
    page = tab.page
    prefixes = ",".join(f"alice/sweep/run-{k:02d}" for k in range(12))
    page.goto(site.url + "/?compare=" + prefixes)
    overlay = "figure.overlay[data-metric=train][data-field=loss]"
    page.locator(overlay + " canvas").first.wait_for()
    assert page.locator("figure.overlay[data-field=step]").count() == 0
    assert _uplot(page, overlay, "u.series[0].label") == "step"  # the x axis as on the run page
    assert _uplot(page, overlay, "Array.from(u.data[0]).slice(0, 3)") == [0, 3, 6]
    strokes = _uplot(page, overlay, "u.series.filter((s, i) => i % 3 === 1).map((s, i) => s.stroke(u, 1 + 3 * i))")
    assert len(strokes) == 12 and len(set(strokes)) == 12  # twelve runs, twelve colours
    raw = _uplot(page, overlay, "Array.from(u.data[1])")
    page.locator("input[name=smooth]").fill("0.9")  # smoothing, as on the run page
    page.wait_for_function(f"(raw) => JSON.stringify(Array.from(document.querySelector({overlay!r}).__uplot.data[1]))"
                           " !== JSON.stringify(raw)", arg=raw)
    # twelve runs: the legends fold (closed) instead of pushing the charts away
    assert page.locator("details.runs-legend").count() == 1 and not page.locator("details.runs-legend").get_attribute("open")
    assert page.locator(overlay + " details.legend-fold .u-legend").count() == 1
    # the scatter: lr (log-spaced) on a log axis, readable ticks, no constant or step column offered
    scatter = ".scatter .plot-box"
    page.locator(scatter + " canvas").wait_for()
    offered = page.locator("select[name=sx] option").all_inner_texts()
    assert "lr" in offered and "seed" in offered and "depth" not in offered and not any("step" in o for o in offered)
    page.select_option("select[name=sx]", "param:lr")
    page.select_option("select[name=sy]", "metric:val/acc")
    page.wait_for_function(f"() => document.querySelector({scatter!r}).__uplot.scales.x.distr === 3")
    ticks = _uplot(page, scatter, "u.axes[0]._values")
    assert ticks and all(len(t) <= 6 for t in ticks if t), ticks  # 0.001, 1e-5: never 17 digits
    assert "0.001" in ticks or "0.01" in ticks, ticks
    # hover names the run under the cursor
    spot = _uplot(page, scatter, "[u.valToPos(1, 'x'), u.valToPos(0.5 + 6 / 100, 'y')]")  # run-06: lr 1
    page.locator(scatter).scroll_into_view_if_needed()
    over = page.locator(scatter + " .u-over").bounding_box()
    page.mouse.move(over["x"] + spot[0], over["y"] + spot[1])
    page.locator(".scatter .tip", has_text="run-06").wait_for()
    # brushing the top right corner (lr near 1, acc high) keeps those runs in the params table
    _drag(page, scatter, (0.88, 0.02), (0.98, 0.6))
    page.locator(".picked").wait_for()
    kept = page.locator(".diff thead th").all_inner_texts()[1:]
    assert kept and set(kept) <= {"run-06", "run-00"} and "run-06" in kept, kept
    page.get_by_role("button", name="show all").click()
    assert len(page.locator(".diff thead th").all_inner_texts()) == 13
    # parallel coordinates: an axis per varying column (no depth, no step), coloured by a metric, brushing
    parallel = ".parallel .plot-box"
    names = _uplot(page, parallel, "u.axes[0]._values")
    assert names[0].startswith("k<img") and names[1:] == ["lr", "seed", "train/loss", "val/acc"], names
    assert "k" + XSS in offered  # an option's text, as written
    page.select_option("select[name=pc]", "metric:val/acc")
    page.wait_for_function(f"() => {{ const u = document.querySelector({parallel!r}).__uplot;"
                           " return u.series[1].stroke(u, 1).startsWith('rgb('); }")
    _drag(page, parallel, (0.9, 0.02), (0.98, 0.3))  # the top of val/acc: the best runs
    page.locator(".picked").wait_for()
    kept = page.locator(".diff thead th").all_inner_texts()[1:]
    assert 0 < len(kept) < 12 and "run-11" in kept, kept
    assert page.evaluate("window.__xss") is None and page.locator("img[src=x]").count() == 0
    assert tab.errors == []



def test_the_log_level_filter_means_this_level_and_above_and_each_lines_metadata_is_shown(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/logs/run")
    with exp.run:
        for level in ("debug", "info", "warn", "error", "fatal", "info"):
            exp.log(f"{level} line", level=level, metadata={"epoch": 3, "note": XSS} if level == "error" else None)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/logs/run")
    page.wait_for_function("() => document.querySelectorAll('.log-lines li').length === 6")
    shown = lambda: [li.split(" line")[0].split()[-1] for li in page.locator(".log-lines li").all_inner_texts()]
    for level, expected in (("warn", ["warn", "error", "fatal"]), ("info", ["info", "warn", "error", "fatal", "info"]),
                            ("fatal", ["fatal"])):
        page.select_option(".logs select", level)
        page.wait_for_function("(n) => document.querySelectorAll('.log-lines li').length === n", arg=len(expected))
        assert shown() == expected, (level, shown())
    page.select_option(".logs select", "error")
    page.wait_for_function("() => document.querySelectorAll('.log-lines li').length === 2")
    meta = page.locator(".log-lines li", has_text="error line").locator(".log-meta").inner_text()
    assert '"epoch":3' in meta and XSS.replace('"', '\\"') in meta  # shown, as text (JSON)
    assert page.evaluate("window.__xss") is None
    assert tab.errors == []


def _png(width: int, height: int) -> bytes:
    """A real PNG of ``width`` x ``height`` grey pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_file_previews_fit_the_kind_of_file(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/previews/run")
    with exp.run:
        exp.files("ckpt").save_blob(b"PK\x03\x04\x00\x00" + bytes(range(256)) * 8, to="model.pth")
        exp.files("data").save_blob(bytes([0xFF, 0xFE, 0x80, 0x81]) * 100, to="weights.dat")  # no known kind: sniffed
        exp.files("cfg").save_json({"model": {"depth": 8, "widths": [64, 128, 256]},
                                     "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]},
                                     "notes": "x" * 90}, to="config.json")
        exp.files("img").save_blob(_png(2400, 60), to="wide.png")
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?run=alice/previews/run")

    def preview(path: str) -> Any:
        page.locator(".files tr", has_text=path).get_by_role("button", name="preview").click()
        page.locator(".preview h4", has_text=path).wait_for()
        return page.locator(".preview")

    for path in ("ckpt/model.pth", "data/weights.dat"):
        shown = preview(path)
        assert shown.locator("pre").count() == 0 and "binary file" in shown.inner_text()  # no mojibake
    text = preview("cfg/config.json").locator("pre").inner_text()
    assert '"model": {"depth":8,"widths":[64,128,256]}' in text  # compact: short members on one line
    assert len(text.splitlines()) == 5, text
    img = preview("img/wide.png").locator("img")
    img.wait_for()
    page.wait_for_function("() => document.querySelector('.preview img').complete")
    panel = page.locator(".preview").bounding_box()
    assert img.bounding_box()["width"] <= panel["width"] + 1  # scaled to the panel, not 2,400 px wide
    assert tab.errors == []


def test_a_lone_project_opens_on_its_run_list_and_the_start_page_shows_recent_runs(site: Site, tab: Tab) -> None:
    for name in ("older", "newer"):
        exp = site.experiment(f"alice/only/{name}")
        with exp.run:
            exp.metrics("train").log(step=0, loss=1.0)
    site.open(tab)
    page = tab.page
    page.locator("[data-run='alice/only/newer']").wait_for()  # one owner, one project: its runs at once
    query = page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")
    assert query == {"owner": "alice", "project": "only"}
    exp = site.experiment("alice/other/latest")  # another project: the start page lists it first
    with exp.run:
        exp.metrics("train").log(step=0, loss=1.0)
    # ml-dash ui indexes what is new at most once a second, before a read: until it has this run
    wait_for(lambda: site.request("GET", "/api/v1/experiments/alice/other/latest")[0] == 200, "the new run indexed")
    page.locator(".crumbs a", has_text="ml-dash").click()
    page.locator("[data-recent]").first.wait_for()
    assert [r.get_attribute("data-recent") for r in page.locator("[data-recent]").all()] == [
        "alice/other/latest", "alice/only/newer", "alice/only/older"]
    assert page.get_by_role("heading", name="Owners").count() == 1  # the owners are still there
    status, body = site.request("GET", "/api/v1/experiments?owner=alice&order=sideways")
    assert status == 400 and "order='sideways' is not one of name, recent" in body["error"]  # said, not ignored
    page.locator("[data-recent='alice/only/older'] a").first.click()
    page.locator("article.run h2", has_text="older").wait_for()
    assert tab.errors == []


def test_the_run_list_is_newest_first_with_durations_readable_numbers_relative_times_and_fills_the_window(
        site: Site, tab: Tab) -> None:
    for k, (lr, loss) in enumerate([(0.001, 0.0010000000000000002), (0.01, 1234567.0), (0.1, 1e-9)]):
        exp = site.experiment(f"alice/table/run-{k}")
        with exp.run:
            exp.params.set(lr=lr)
            exp.metrics("train").log(step=0, loss=5.0 + k)
            exp.metrics("train").log(step=1, loss=loss)
    site.open(tab)
    page = tab.page
    page.goto(site.url + "/?owner=alice&project=table")
    page.locator("[data-run]").first.wait_for()
    order = [r.get_attribute("data-run") for r in page.locator("[data-run]").all()]
    assert order == ["alice/table/run-2", "alice/table/run-1", "alice/table/run-0"]  # newest first
    headers = page.locator(".row.head span[role=columnheader]").all_inner_texts()
    assert "duration" in headers and "created ▼" in headers
    page.select_option("select.columns", "param:lr")
    page.select_option("select.columns", "metric:train/loss")
    cells = lambda run: page.locator(f"[data-run='{run}'] [role=cell]").all_inner_texts()
    page.wait_for_function("() => document.querySelectorAll('[data-run] [role=cell]').length === 3 * 7")
    assert cells("alice/table/run-0")[-2:] == ["0.001", "0.001"]  # not 0.0010000 nor 0.0010000000000000002
    assert cells("alice/table/run-1")[-1] == "1,234,567"
    assert cells("alice/table/run-2")[-1] == "1e-9"
    # the best values beside the latest: each run's min and max of the field over the whole run
    offered = page.locator("select.columns option").all_inner_texts()
    assert {"train/loss (latest)", "train/loss (min)", "train/loss (max)"} <= set(offered), offered
    page.select_option("select.columns", "min:train/loss")
    page.select_option("select.columns", "max:train/loss")
    page.wait_for_function("() => [...document.querySelectorAll('[data-run=\"alice/table/run-1\"] [role=cell]')]"
                           ".map((c) => c.textContent).slice(-2).join('|') === '6|1,234,567'")
    assert cells("alice/table/run-0")[-2:] == ["0.001", "5"] and cells("alice/table/run-2")[-2:] == ["1e-9", "7"]
    page.locator(".row.head span", has_text="train/loss (max)").click()  # sorted by the best values
    page.wait_for_function("() => [...document.querySelectorAll('[data-run]')].map((r) => r.dataset.run.slice(-1)).join('')"
                           " === '021'")
    created = page.locator("[data-run='alice/table/run-0'] .c-created_at span")
    assert "ago" in created.inner_text() or "now" in created.inner_text()  # relative ...
    assert created.get_attribute("title")[:2] == "20"  # ... the exact time on hover
    assert cells("alice/table/run-0")[3].endswith(" s")  # its duration
    table = page.locator(".table .body").bounding_box()
    assert table["y"] + table["height"] > 900 - 40  # the table reaches the window's bottom
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.wait_for_function("() => document.querySelector('.table .body').getBoundingClientRect().bottom > 1400 - 40")
    assert tab.errors == []


def test_the_run_page_and_the_run_list_fit_a_phone(site: Site, tab: Tab) -> None:
    exp = site.experiment("alice/phone/a-run-with-a-rather-long-name-that-goes-on", tags=["baseline"],
                          description="a" * 300)
    with exp.run:
        exp.params.set(lr=0.001, optimizer={"name": "adam", "betas": [0.9, 0.999]}, note="n" * 200)
        for i in range(500):
            exp.metrics("train").log(step=i, loss=1.0 / (i + 1), acc=i / 500)
        exp.log("x" * 400, level="info")
        exp.files("cfg").save_text("y" * 50, to="a/very/long/path/to/a/config/file/that/goes/on/and/on.json")
    site.open(tab)
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site.url + "/?run=alice/phone/a-run-with-a-rather-long-name-that-goes-on")
    page.locator("figure.chart[data-field=acc] canvas").first.wait_for()
    page.locator(".log-lines li").first.wait_for()
    page.locator(".files td").first.wait_for()
    wide = "() => document.documentElement.scrollWidth"
    assert page.evaluate(wide) <= 390  # nothing overflows the screen
    for chart in page.locator("figure.chart").all():
        box = chart.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box  # each chart whole on the screen
    page.goto(site.url + "/?owner=alice&project=phone")
    page.locator("[data-run]").first.wait_for()
    assert page.evaluate(wide) <= 390
    row = page.locator("[data-run] .c-name").bounding_box()
    assert row["width"] > 120  # the name keeps room; the status shows beside it
    assert page.locator("[data-run] .badge").is_visible()
    assert tab.errors == []
