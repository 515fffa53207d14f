"""The caps the web UI works within come from the server it talks to (``GET /api/v1/limits``,
server/routes/limits.py): the endpoint gives the very constants the handlers enforce, and the UI's
static files hold no copy of them."""

from __future__ import annotations

import re
from pathlib import Path

from ml_dash.format.vocabulary import STATUSES
from ml_dash.server.routes import limits as read_limits

from .server_process import Server
from .sites import Site

STATIC = Path(read_limits.__file__).resolve().parents[2] / "ui" / "static"


def test_the_limits_endpoint_gives_the_caps_the_server_enforces(site: Site) -> None:
    exp = site.experiment("alice/caps/run")
    with exp.run:
        exp.metrics("train").log(step=0, loss=1.0)
    status, caps = site.request("GET", "/api/v1/limits")
    assert status == 200
    assert caps == {"max_read_rows": read_limits.MAX_READ_ROWS, "max_buckets": read_limits.MAX_BUCKETS,
                    "max_compared_runs": read_limits.MAX_COMPARED_RUNS,
                    "max_compared_buckets": read_limits.MAX_COMPARED_BUCKETS, "statuses": list(STATUSES)}
    # each number is the one the reads stop at: the cap passes, one more is refused and named
    metric = "/api/v1/experiments/alice/caps/run/metrics/train"
    assert site.request("GET", f"{metric}?limit={caps['max_read_rows']}")[0] == 200
    status, body = site.request("GET", f"{metric}?limit={caps['max_read_rows'] + 1}")
    assert status == 400 and str(caps["max_read_rows"]) in body["error"]
    assert site.request("GET", f"{metric}?buckets={caps['max_buckets']}")[0] == 200
    assert site.request("GET", f"{metric}?buckets={caps['max_buckets'] + 1}")[0] == 400
    runs = ",".join(["alice/caps/run"] * caps["max_compared_runs"])
    assert site.request("GET", f"/api/v1/compare/metrics/train?runs={runs}&buckets=10")[0] == 200
    status, body = site.request("GET", f"/api/v1/compare/metrics/train?runs={runs},alice/caps/run&buckets=10")
    assert status == 400 and str(caps["max_compared_runs"]) in body["error"]
    status, body = site.request("GET", f"/api/v1/compare/metrics/train?runs={runs}&buckets={caps['max_buckets']}")
    assert status == 200  # the same run named 50 times is one run's buckets
    assert caps["statuses"][0] == "CREATED" and "CRASHED" in caps["statuses"]
    assert site.request("GET", "/api/v1/experiments?owner=alice&status=" + caps["statuses"][-1])[0] == 200


def test_the_limits_are_read_under_the_read_apis_rule(server: Server) -> None:
    assert server.request("GET", "/api/v1/limits")[0] == 401
    assert server.request("GET", "/api/v1/limits", key=server.key("bob"))[0] == 200


def _code(path: Path) -> str:
    """A script without its comments (a comment may say "100,000 rows"; code may not hold it)."""
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"(?m)(^|[^:\"'`\\])//.*$", r"\1", text)


def test_the_ui_holds_no_copy_of_the_servers_limits() -> None:
    """No constant of the UI's scripts holds a cap's value or has an old copy's name, and no line holds
    the statuses as a list (one status named in a test of a run's state is no copy)."""
    scripts = sorted(STATIC.glob("*.js"))
    assert {p.name for p in scripts} >= {"chart.js", "runs.js", "compare.js", "series.js", "limits.js"}
    caps = read_limits.limits()
    numbers = {v for v in caps.values() if isinstance(v, int)}
    found = []
    for path in scripts:
        code = _code(path)
        for m in re.finditer(r"\b([A-Z][A-Z0-9_]*)\s*=\s*(\d[\d_]*(?:e\d+)?)\b", code):
            if float(m.group(2).replace("_", "")) in numbers:
                found.append(f"{path.name}: {m.group(0)}")
        for name in ("RAW_LIMIT", "MAX_BUCKETS", "MAX_COMPARED", "STATUSES"):  # the copies there were
            if re.search(rf"\b(const|let|var)\s+{name}\b", code):
                found.append(f"{path.name}: {name}")
        for line in code.splitlines():  # the statuses as a list: two or more of them on one line
            if len({s for s in caps["statuses"] if re.search(rf"[\"'`]{s}[\"'`]", line)}) >= 2:
                found.append(f"{path.name}: {line.strip()}")
    assert found == [], f"the UI holds copies of the server's limits (read them from limits.js): {found}"


def test_the_ui_and_ml_dash_show_take_a_rows_step_from_the_same_fields_in_the_same_order() -> None:
    """xaxis.js's STEP_FIELDS is a copy of _run/metric_summary.py's (the x axis and `ml-dash show`'s "at step"):
    the two must agree, or a W&B-shaped run's `_step` is the x in one and a metric in the other."""
    from ml_dash._run.metric_summary import STEP_FIELDS

    text = (STATIC / "xaxis.js").read_text()
    found = re.search(r"export const STEP_FIELDS = \[([^\]]*)\]", text)
    assert found is not None
    assert tuple(re.findall(r'"([^"]+)"', found.group(1))) == STEP_FIELDS
