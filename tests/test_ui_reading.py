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
