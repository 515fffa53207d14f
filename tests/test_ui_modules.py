"""The UI's logic on its own, in a real Chromium (tests/browser.py): its pure functions (filter
conditions, smoothing, zoom, bucket series) and the chart's series reads and state machine
(ml_dash/ui/static/series.js, over a fake ``get``), each against a table of cases. The modules are
the real server's ``/ui/`` files, loaded as the app loads them (ES modules under its CSP); no Node."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .browser import Tab
from .server_process import Server

SCENARIOS_JS = Path(__file__).parent / "ui_modules" / "series_scenarios.mjs"


def _series(idx: list[int], **over: Any) -> dict[str, Any]:
    """A raw series (series_points.js) whose every column is ``idx``, then ``over``."""
    columns = {k: list(idx) for k in ("idx", "firsts", "lasts", "steps", "times", "lo", "hi", "ys")}
    return {**columns, "raw": True, "width": None, "upto": (idx[-1] + 1) if idx else 0, **over}


STEPS = {"xs": [0, 10, 20, 30, 40], "firsts": [0, 5, 10, 15, 20], "lasts": [4, 9, 14, 19, 24]}
BUCKETS = [
    {"first": 0, "last": 9, "fields": {"loss": {"min": 1, "max": 3, "last": 2}, "step": {"last": 18}, "_ts": {"last": 100.5}}},
    {"first": 10, "last": 19, "fields": {"other": {"min": 0, "max": 0, "last": 0}}},  # no loss: no point
    {"first": 20, "last": 29, "fields": {"loss": {"min": "NaN", "max": "Infinity", "last": "-Infinity"}}},
]

XS = {"idx": [0, 1, 2], "steps": [5, 6, 6], "times": [10, 12.5, 20]}

#: (module under /ui/, function, arguments, expected result)
CASES: list[tuple[str, str, list[Any], Any]] = [
    ("conditions.js", "parseConditions", ["lr<0.01"], [{"key": "lr", "op": "<", "value": "0.01"}]),
    ("conditions.js", "parseConditions", [" model.depth >= 8 , optimizer=adam"],
     [{"key": "model.depth", "op": ">=", "value": "8"}, {"key": "optimizer", "op": "=", "value": "adam"}]),
    ("conditions.js", "parseConditions", ["a<=1, b!=x, c>2"],
     [{"key": "a", "op": "<=", "value": "1"}, {"key": "b", "op": "!=", "value": "x"}, {"key": "c", "op": ">", "value": "2"}]),
    ("conditions.js", "parseConditions", ["train/loss < 0.5"], [{"key": "train/loss", "op": "<", "value": "0.5"}]),
    ("conditions.js", "parseConditions", ["name = a=b"], [{"key": "name", "op": "=", "value": "a=b"}]),
    ("conditions.js", "parseConditions", ["lr, =5, x<1"], [{"key": "x", "op": "<", "value": "1"}]),
    ("conditions.js", "parseConditions", [""], []),
    ("conditions.js", "parseConditions", [None], []),
    ("conditions.js", "unparsedConditions", ["lr, x<1, , y"], ["lr", "y"]),
    ("conditions.js", "unparsedConditions", ["a<1"], []),
    ("conditions.js", "unparsedConditions", [None], []),
    ("smoothing.js", "runningMean", [[1, 2, 3, 4], 2], [1, 1.5, 2.5, 3.5]),
    ("smoothing.js", "runningMean", [[1, None, 3], 2], [1, None, 2]),
    ("smoothing.js", "runningMean", [[1, math.nan, math.inf, 5], 3], [1, None, None, 3]),
    ("smoothing.js", "runningMean", [[], 3], []),
    ("smoothing.js", "ema", [[1, 2, 3], 0.5], [1, 5 / 3, 17 / 7]),
    ("smoothing.js", "ema", [[5, 5, 5], 0.9], [5, 5, 5]),  # debiased: a constant stays itself from the start
    ("smoothing.js", "ema", [[2, None, 4], 0], [2, None, 4]),
    ("smoothing.js", "ema", [[1, math.nan, 3], 0.5], [1, None, 7 / 3]),
    ("zoom.js", "zoomRange", ["10:20"], [10, 20]),
    ("zoom.js", "zoomRange", ["0:1"], [0, 1]),
    ("zoom.js", "zoomRange", ["20:10"], None),
    ("zoom.js", "zoomRange", ["5:5"], None),
    ("zoom.js", "zoomRange", ["-1:5"], None),
    ("zoom.js", "zoomRange", ["1:2:3"], None),
    ("zoom.js", "zoomRange", ["a:b"], None),
    ("zoom.js", "zoomRange", ["1234567890123456:2"], None),
    ("zoom.js", "zoomRange", [""], None),
    ("zoom.js", "zoomRange", [None], None),
    ("zoom.js", "panRange", [[100, 200], 1000, 1], [150, 250]),
    ("zoom.js", "panRange", [[100, 200], 1000, -1], [50, 150]),
    ("zoom.js", "panRange", [[0, 100], 1000, -1], [0, 100]),
    ("zoom.js", "panRange", [[900, 1000], 1000, 1], [900, 1000]),
    ("zoom.js", "panRange", [[0, 101], 1000, 1], [51, 152]),
    ("zoom.js", "selectionRange", ["index", 10.4, 20.2, STEPS], [10, 22]),
    ("zoom.js", "selectionRange", ["index", -3, 5, STEPS], [0, 6]),
    ("zoom.js", "selectionRange", ["step", 15, 35, STEPS], [10, 25]),
    ("zoom.js", "selectionRange", ["wall", 15, 100, STEPS], [10, 25]),
    ("zoom.js", "selectionRange", ["step", 50, 60, STEPS], None),
    ("chart.js", "xValues", [XS, "index"], [0, 1, 2]),
    ("chart.js", "xValues", [XS, "step"], [5, 6, 6]),
    ("chart.js", "xValues", [XS, "wall"], [10, 12.5, 20]),
    ("chart.js", "xValues", [XS, "relative"], [0, 2.5, 10]),
    ("chart.js", "xValues", [{**XS, "steps": [5, None, 7]}, "step"], None),  # a point without a step
    ("chart.js", "xValues", [{**XS, "times": [10, 9, 20]}, "wall"], None),  # time going back: uPlot needs order
    ("chart.js", "xValues", [{**XS, "steps": []}, "step"], None),
    ("series_points.js", "seriesOfBuckets", [BUCKETS, "loss"],
     {"idx": [9, 29], "firsts": [0, 20], "lasts": [9, 29], "steps": [18, None], "times": [100.5, None],
      "lo": [1, None], "hi": [3, None], "ys": [2, None], "raw": False, "width": None, "upto": 0}),
    ("series_points.js", "seriesOfBuckets", [[], "loss"], _series([], raw=False)),
    ("series_points.js", "joinSeries", [_series([1, 2, 3]), 2, _series([3, 4]), 7], _series([1, 2, 3, 4], upto=7)),
    ("series_points.js", "joinSeries", [_series([1, 2]), 0, _series([5]), 6], _series([5], upto=6)),
    ("series_points.js", "seriesOfBuckets", [[{**BUCKETS[0], "fields": {**BUCKETS[0]["fields"], "epoch": {"last": 2}}}],
                                             "loss", "epoch"], {**_series([9], raw=False), "firsts": [0], "steps": [2],
                                                                "times": [100.5], "lo": [1], "hi": [3], "ys": [2], "upto": 0}),
    # numbers and times as people read them (format.js; Chromium's locale here: en-US)
    ("format.js", "formatValue", [0.0010000000000000002], "0.001"),
    ("format.js", "formatValue", [0.001], "0.001"),
    ("format.js", "formatValue", [0.123456789], "0.12346"),
    ("format.js", "formatValue", [1234567], "1,234,567"),
    ("format.js", "formatValue", [1e-9], "1e-9"),
    ("format.js", "formatValue", [-2.5e20], "-2.5e20"),
    ("format.js", "formatValue", [0], "0"),
    ("format.js", "formatValue", ["NaN"], "NaN"),
    ("format.js", "formatValue", [{"a": [1, 2]}], '{"a":[1,2]}'),
    ("format.js", "formatValue", [None], ""),
    ("format.js", "formatAxisValue", [0.30000000000000004], "0.3"),
    ("format.js", "formatAxisValue", [20000], "20,000"),
    ("format.js", "formatDuration", [42], "42 s"),
    ("format.js", "formatDuration", [0.2], "0.2 s"),
    ("format.js", "formatDuration", [9.96], "10 s"),
    ("format.js", "formatDuration", [185], "3 min 5 s"),
    ("format.js", "formatDuration", [3725], "1 h 2 min"),
    ("format.js", "formatDuration", [None], ""),
    ("format.js", "runSeconds", [{"started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:30Z"}], 90),
    ("format.js", "runSeconds", [{"started_at": "2026-01-01T00:00:00Z", "last_seen": 1767225610}], 10),  # live
    ("format.js", "runSeconds", [{"created_at": None}], None),
    ("format.js", "relativeTime", ["2026-01-01T00:00:00Z", 1767225600 + 180], "3 minutes ago"),
    ("format.js", "relativeTime", ["2026-01-01T00:00:00Z", 1767225600 + 2 * 86400], "2 days ago"),
    ("format.js", "relativeTime", ["not a time"], ""),
    # the step is the x axis, no chart (xaxis.js)
    ("xaxis.js", "stepFieldOf", [["loss", "epoch", "global_step"]], "global_step"),
    ("xaxis.js", "stepFieldOf", [["loss"]], None),
    ("xaxis.js", "stepFieldOf", [["loss", "epoch", "_step"]], "_step"),  # a W&B-shaped run's rows (ml_dash.wandb)
    ("xaxis.js", "chartedFields", [["step", "loss", "_ts", "acc"]], ["acc", "loss"]),
    ("xaxis.js", "chartedFields", [["step", "epoch", "loss"]], ["epoch", "loss"]),
    ("xaxis.js", "chartedFields", [["step", "_ts"]], ["step"]),  # steps alone: still shown
    ("xaxis.js", "xAxisOf", [{}], "step"),
    ("xaxis.js", "xAxisOf", [{"x": "wall"}], "wall"),
    ("xaxis.js", "xAxisOf", [{"x": "nonsense"}], "step"),
    ("xaxis.js", "extentOf", [[None, 3, 1, float("inf"), 2]], [1, 3]),
    # which columns a scatter or parallel plot draws, and how (plotcolumns.js, parallel.js)
    ("plotcolumns.js", "isLogSpaced", [[0.1, 0.01, 0.001, None]], True),
    ("plotcolumns.js", "isLogSpaced", [[1, 250, 500, 750, 1000]], False),
    ("plotcolumns.js", "isLogSpaced", [[0, 0.1, 0.01]], False),  # not all positive
    ("plotcolumns.js", "isLogSpaced", [[5, 6, 7]], False),
    ("plotcolumns.js", "normalised", [[1, 10, 100, None], True], [0, 0.5, 1, None]),
    ("plotcolumns.js", "normalised", [[3, 3], False], [0.5, 0.5]),
    ("plotcolumns.js", "plottableColumns", [[{"params": {"a": 1, "b": 2, "c": "x"}}, {"params": {"a": 1, "b": 3, "c": "y"}}],
                                            ["param:a", "param:b", "param:c"]], ["param:b"]),  # a: constant; c: no number
    ("parallel.js", "niceTicks", [0, 11, False], [0, 5, 10]),
    ("parallel.js", "niceTicks", [0.5, 0.61, False], [0.5, 0.55, 0.6]),
    ("parallel.js", "niceTicks", [1e-5, 1, True], [1e-5, 1e-3, 0.1]),
    ("parallel.js", "niceTicks", [2, 5, True], [2, 5]),  # less than a decade: its ends
    # logs by level and above, files by kind (logs.js, files.js)
    ("logs.js", "levelsFrom", ["warn"], ["warn", "error", "fatal"]),
    ("logs.js", "levelsFrom", ["debug"], None),
    ("logs.js", "levelsFrom", [""], None),
    ("logs.js", "metadataText", [{"sequenceNumber": 1, "message": "m", "metadata": {"epoch": 3}, "rank": 0}],
     '{"epoch":3,"rank":0}'),
    ("logs.js", "metadataText", [{"sequenceNumber": 1, "message": "m", "level": "info"}], ""),
    ("logs.js", "metadataText", [{"sequenceNumber": 1, "message": "m", "metadata": {"source": "stdout"}}], ""),  # its own span
    ("files.js", "looksBinary", [[104, 105, 0, 1]], True),
    ("files.js", "looksBinary", [[0xFF, 0xFE, 0x80]], True),
    ("files.js", "looksBinary", [list("héllo".encode())], False),
    ("files.js", "looksBinary", [list("é".encode())[:1]], False),  # a character cut at the sniffed end
    ("files.js", "compactJson", [{"a": 1, "b": [1, 2]}], '{"a":1,"b":[1,2]}'),
    ("files.js", "compactJson", [{"a": "x" * 90, "b": [1, 2]}], '{\n  "a": "' + "x" * 90 + '",\n  "b": [1,2]\n}'),
    ("files.js", "formatBytes", [1536000], "1.54 MB"),
    ("files.js", "formatBytes", [512], "512 B"),
    ("palette.js", "runColor", [3], "#d62728"),
]

#: Each read scripted in tests/ui_modules/series_scenarios.mjs and the lines it must give.
SCENARIOS: dict[str, list[str]] = {
    "few points: raw rows": [
        "get /m?start=0&limit=10", "raw 0..9 n=10 upto=10", "ys 0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        "steps 0,2,4,6,8,10,12,14,16,18"],
    "rows past end and rows without the field are left out": [
        "get /m?start=0&limit=10", "raw 0..9 n=9 upto=10", "idx 0,1,2,4,5,6,7,8,9"],
    "a page cut short says next: the rest is read from there": [
        "get /m?start=0&limit=10", "get /m?start=4&limit=6", "raw 0..9 n=10 upto=10"],
    "a next that does not move on ends the read": ["get /m?start=0&limit=10", "raw 0..3 n=4 upto=10"],
    "many points: a bucket a pixel": [
        "get /m?buckets=100&start=0&end=1000", "buckets 0..999 n=100 upto=1000 width=10", "lo 0,10,20 hi 9,19,29 steps 18,38,58"],
    "more rows than the server's page cap: buckets": [
        "get /m?buckets=100&start=0&end=10", "buckets 0..9 n=10 upto=10 width=1"],
    "wider than the server's bucket cap: the cap": [
        "get /m?buckets=20&start=0&end=1000", "buckets 0..999 n=20 upto=1000 width=50"],
    "raw extended by the new rows only": [
        "get /m?start=0&limit=10", "get /m?start=10&limit=5", "raw 0..14 n=15 upto=15", "held untouched: raw 0..9 n=10 upto=10"],
    "raw past two points a pixel: null, nothing asked": ["get /m?start=0&limit=10", "null"],
    "buckets extended from the last bucket at the width held": [
        "get /m?buckets=100&start=0&end=1000", "get /m?buckets=10000&width=10&start=990&end=1025",
        "buckets 0..1024 n=103 upto=1025 width=10", "last 990,1000,1010,1020"],
    "buckets past two a pixel: null, nothing asked": ["get /m?buckets=100&start=0&end=1000", "null"],
}

#: A SeriesFollower driven by steps (tests/ui_modules/series_scenarios.mjs, ``follow``) and the lines
#: it must give: what it asked the server, what it drew or said failed.
FOLLOWING: dict[str, tuple[list[list[Any]], list[str]]] = {
    "live: read whole, then only the new rows": (
        [["show", 0, 10, True], ["rows", 0, 10], ["grow", 15], ["rows", 10, 15], ["grow", 15], ["settle"]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "get /m?start=10&limit=5", "draw raw 0..14 n=15 upto=15"]),
    "one extension at a time, then the rows that came meanwhile": (
        [["show", 0, 10, True], ["rows", 0, 10], ["grow", 12], ["grow", 14], ["rows", 10, 12], ["rows", 12, 14]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "get /m?start=10&limit=2", "draw raw 0..11 n=12 upto=12",
         "get /m?start=12&limit=2", "draw raw 0..13 n=14 upto=14"]),
    "rows arriving before the first read's reply wait for it": (
        [["show", 0, 10, True], ["grow", 12], ["rows", 0, 10], ["rows", 10, 12]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "get /m?start=10&limit=2", "draw raw 0..11 n=12 upto=12"]),
    "a new view's rows wait for its own read, not the old view's series": (  # redrawn (smoothing): read whole again
        [["show", 0, 10, True], ["rows", 0, 10], ["show", 0, 10, True], ["grow", 12], ["rows", 0, 10], ["rows", 10, 12]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10",
         "get /m?start=10&limit=2", "draw raw 0..11 n=12 upto=12"]),
    "an older view's reply is dropped": (  # zoomed before the first read came back
        [["show", 0, 10, True], ["show", 2, 8, False], ["rowsAt", 1, 2, 8], ["rows", 0, 10]],
        ["get /m?start=0&limit=10", "get /m?start=2&limit=6", "draw raw 2..7 n=6 upto=8"]),
    "an extension begun before a new view is dropped": (
        [["show", 0, 10, True], ["rows", 0, 10], ["grow", 12], ["show", 0, 12, True], ["rows", 10, 12], ["rows", 0, 12]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "get /m?start=10&limit=2", "get /m?start=0&limit=12",
         "draw raw 0..11 n=12 upto=12"]),
    "a zoomed view does not follow the run": (
        [["show", 0, 10, False], ["rows", 0, 10], ["grow", 20], ["settle"], ["waiting"]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "waiting 0"]),
    "grown past what fits as held: read whole, as buckets": (
        [["pixels", 10], ["show", 0, 10, True], ["rows", 0, 10], ["grow", 50], ["buckets", 0, 50, 5]],
        ["get /m?start=0&limit=10", "draw raw 0..9 n=10 upto=10", "get /m?buckets=10&start=0&end=50",
         "draw buckets 0..49 n=10 upto=50 width=5"]),
    "a failed read is said; an older view's failure is not": (
        [["show", 0, 10, True], ["show", 0, 11, True], ["refuse", "old view gone"], ["refuse", "server said no"]],
        ["get /m?start=0&limit=10", "get /m?start=0&limit=11", "fail server said no"]),
    "closed: nothing drawn": (
        [["show", 0, 10, True], ["close"], ["rows", 0, 10], ["grow", 20], ["settle"]],
        ["get /m?start=0&limit=10"]),
}

EVALUATE_CASES = """async (cases) => {
  const out = [];
  for (const [module, name, args] of cases) {
    try {
      const found = (await import("/ui/" + module))[name];
      if (typeof found !== "function") throw new Error(`${module} exports no function ${name}`);
      out.push({ value: found(...args) });
    } catch (e) {
      out.push({ error: String(e) });
    }
  }
  return out;
}"""


def _rounded(value: Any) -> Any:
    """``value`` with its floats to 12 significant digits (0.1 + 0.2 is 0.3 here), NaN as a string."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else float(f"{value:.12g}")
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def test_the_ui_modules_give_every_case_its_expected_result_in_chromium(server: Server, tab: Tab) -> None:
    page = tab.page
    page.route(server.url + "/test/series_scenarios.mjs", lambda route: route.fulfill(
        path=str(SCENARIOS_JS), content_type="text/javascript; charset=utf-8"))
    page.goto(server.url + "/health")  # a page of the server's origin, under its CSP: /ui/ modules import
    results = page.evaluate(EVALUATE_CASES, [[module, name, args] for module, name, args, _ in CASES])
    wrong = [f"{name}{tuple(args)}: expected {expected!r}, got {got}" for (_, name, args, expected), got in zip(CASES, results)
             if got != {"value": _rounded(expected)} and _rounded(got.get("value", got)) != _rounded(expected)]
    lines = page.evaluate("async (names) => (await import('/test/series_scenarios.mjs')).run(names)", list(SCENARIOS))
    wrong += [f"{name}:\n  expected {expected}\n  got      {lines[name]}" for name, expected in SCENARIOS.items()
              if lines[name] != expected]
    for name, (steps, expected) in FOLLOWING.items():
        got = page.evaluate("async (steps) => (await import('/test/series_scenarios.mjs')).follow(steps)", steps)
        if got != expected:
            wrong.append(f"{name}:\n  expected {expected}\n  got      {got}")
    assert len(results) == len(CASES) and wrong == [], "\n".join(wrong)
    assert tab.errors == []
