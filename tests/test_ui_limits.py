"""The caps the web UI works within come from the server it talks to (``GET /api/v1/limits``,
server/read_limits.py): the endpoint gives the very constants the handlers enforce, and the UI's
static files hold no copy of them."""

from __future__ import annotations

from ml_dash.run import STATUSES
from ml_dash.server import read_limits

from .server_process import Server
from .sites import Site


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
