"""``ml-dash ui DIR``: the same UI and read API over local run directories, read-only, on 127.0.0.1,
for who opens the URL it printed. (Every row of the UI is also tested against it in test_ui.py,
through its ``site`` fixture; its token over HTTP and against another Unix account in test_ui_token.py.)"""

from __future__ import annotations

import os
from pathlib import Path

from ml_dash import Experiment

from .browser import Tab
from .server_process import LocalUi, Server
from .sites import wait_for_start_page


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime in ns)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return out


def _local_runs(n: int = 3, rows: int = 5000) -> None:
    for k in range(n):
        exp = Experiment(prefix=f"alice/local/run-{k}", tags=["sweep"], description=f"run {k}")
        with exp.run:
            exp.params.set(lr=10.0 ** -k, depth=k)
            for i in range(rows):
                exp.metrics("train").log(step=i, loss=1.0 / (i + 1) + k)
            exp.log(f"run {k} done", level="info")
            exp.files("cfg").save_text(f"config {k}", to="config.txt")


def test_the_printed_url_signs_in_and_the_ui_shows_runs_charts_logs_and_files_and_writes_nothing(
        workdir: Path, tab: Tab) -> None:
    _local_runs()
    before = _tree(workdir / ".dash")
    ui = LocalUi(workdir / ".dash")
    assert ui.token is not None
    try:
        page = tab.page
        page.goto(ui.open_url)  # what the user clicks in the terminal
        wait_for_start_page(page)
        # the token left the address bar (and so every shared view's URL); the lone project's runs are shown
        assert page.url in (ui.url + "/", ui.url + "/?owner=alice&project=local")
        page.get_by_role("link", name="alice", exact=True).click()
        page.get_by_role("link", name="local", exact=True).click()
        page.wait_for_function("() => document.querySelectorAll('[data-run]').length === 3")
        page.fill("input.wide", "depth >= 1")
        page.wait_for_function("() => document.querySelectorAll('[data-run]').length === 2")
        page.locator("[data-run='alice/local/run-2']").click()
        page.locator("figure.chart[data-field=loss] canvas").first.wait_for()
        assert "indices 0–4999" in page.locator("figure.chart[data-field=loss] figcaption").inner_text()
        assert page.locator(".description").inner_text() == "run 2"
        assert "run 2 done" in page.locator(".log-lines").inner_text()
        page.get_by_role("button", name="preview").click()
        assert page.locator(".preview pre").inner_text() == "config 2"
        assert page.get_by_role("button", name="Sign out").count() == 0  # no key to sign out of
        assert tab.errors == []
        # the token was in the fragment only: no request's URL ever held it (the reads carry its header)
        assert [u for u in tab.requests if ui.token in u] == []
        assert page.context.cookies() == []  # and no cookie stands for it (cookies reach every port)
        links = page.evaluate("() => [...document.querySelectorAll('[href], [src]')].map((e) => e.outerHTML)")
        assert links and not [link for link in links if ui.token in link]
        with page.expect_download() as download:  # a file's download is fetched with the header too
            page.get_by_role("link", name="download").click()
        assert Path(download.value.path()).read_text() == "config 2"
        status, _ = ui.request("POST", "/api/v1/runs/alice/local/run-0/events", b"x")
        assert status in (404, 405)  # no route writes
    finally:
        ui.stop()
    assert _tree(workdir / ".dash") == before  # nothing under DIR was written


def test_without_the_token_the_page_says_to_open_the_printed_url_and_one_click_from_another_site_signs_in(
        workdir: Path, tab: Tab) -> None:
    _local_runs(1, 10)
    ui = LocalUi(workdir / ".dash")
    assert ui.token is not None
    try:
        page = tab.page
        page.goto(ui.url + "/?run=alice/local/run-0")  # a view's URL, shared without the token
        page.get_by_role("alert").filter(has_text="open the URL it printed").wait_for()
        assert "--no-auth" in page.locator("body").inner_text() and "run 0 done" not in page.content()
        # the printed URL clicked in another site's page (a terminal or a chat in the browser)
        launcher = "http://localhost:9/launch"
        page.route(launcher, lambda r: r.fulfill(content_type="text/html",
                                                 body=f'<a id="go" href="{ui.open_url}">ml-dash</a>'))
        page.goto(launcher)
        page.click("#go")
        wait_for_start_page(page)
        assert page.url in (ui.url + "/", ui.url + "/?owner=alice&project=local")  # the token left the address bar
        page.goto(launcher)  # later clicks from that site to a view's URL (no token) are let in too
        page.evaluate(f"() => {{ document.getElementById('go').href = '{ui.url}/?run=alice/local/run-0'; }}")
        page.click("#go")
        page.locator("figure.chart[data-field=loss] canvas").first.wait_for()
        page.evaluate("() => localStorage.clear()")  # the token gone: the page says why
        page.locator("nav.crumbs a", has_text="alice").click()
        page.locator("main .error", has_text="open the URL it printed").wait_for()
        page.evaluate("() => localStorage.setItem('ml-dash-ui-token', 'a-token-of-an-earlier-start')")
        page.reload()  # a stale token (the UI restarted): said so, no sign-in form
        page.get_by_role("alert").filter(has_text="not this ml-dash ui's").wait_for()
        assert page.locator("input[name=api_key]").count() == 0
        # the old form of the URL, pasted from an older terminal: the same view, the token in the fragment
        old_form = f"{ui.url}/?token={ui.token}&run=alice/local/run-0"
        page.goto(old_form)
        page.locator("figure.chart[data-field=loss] canvas").first.wait_for()
        assert page.url == ui.url + "/?run=alice/local/run-0" and page.context.cookies() == []
    finally:
        ui.stop()


class _Recorder:
    """Another account's listener on another port of 127.0.0.1: it records the headers of every request
    it gets and answers a small page ("my run is at http://127.0.0.1:PORT/")."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                seen.append({k.lower(): v for k, v in self.headers.items()})
                body = b"<!doctype html><title>my run</title><p>my run</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_listener_on_another_port_of_the_host_gets_no_credential_of_the_ui_and_cannot_read_its_storage(
        workdir: Path, tab: Tab) -> None:
    import hashlib
    import hmac
    import json

    _local_runs(1, 10)
    ui = LocalUi(workdir / ".dash")
    recorder = _Recorder()
    assert ui.token is not None
    try:
        page = tab.page
        page.goto(ui.open_url)  # signed in as a user is: one click on the printed URL
        wait_for_start_page(page)
        assert ui.token not in page.url
        page.goto(recorder.url + "/my-run")  # the same browser opens the other account's link
        page.get_by_text("my run").first.wait_for()
        assert page.evaluate("() => ({...localStorage})") == {}  # its page cannot read the UI's storage
        assert recorder.seen, "the listener got no request"
        # what a cookie of the UI would have held: the token, or (before) an HMAC of it
        token_like = (ui.token, hmac.new(ui.token.encode(), b"ml-dash ui session", hashlib.sha256).hexdigest())
        for headers in recorder.seen:
            assert "cookie" not in headers, headers
            assert not [v for v in headers.values() if any(t in v for t in token_like)], headers
        # and a replay of everything it received, against the UI's API, reads nothing
        for headers in recorder.seen:
            replay = {k: v for k, v in headers.items() if k not in ("host", "connection", "accept-encoding")}
            status, body = Server.request(ui, "GET", "/api/v1/experiments/alice/local/run-0", headers=replay)
            assert status == 401 and "open the URL" in json.dumps(body)
        page.goto(ui.url + "/")  # the UI's own origin holds the token (and its page reads with it)
        wait_for_start_page(page)
        assert page.evaluate("() => localStorage.getItem('ml-dash-ui-token')") == ui.token
    finally:
        recorder.stop()
        ui.stop()


def test_the_local_ui_answers_only_loopback_host_names_and_serves_only_the_runs_files(workdir: Path) -> None:
    _local_runs(1, 10)
    secret = workdir / "secret.txt"
    secret.write_text("not a run file")
    ui = LocalUi(workdir / ".dash")
    try:
        status, body = ui.request("GET", "/api/v1/owners", headers={"Host": "evil.example"})
        assert status == 400 and "host" in body["error"] and "--allowed-host" in body["error"]
        assert ui.request("GET", "/api/v1/owners")[0] == 200
        status, _ = ui.request("GET", "/api/v1/experiments/alice/local/run-0/files/..%2F..%2F..%2F..%2Fsecret.txt")
        assert status in (400, 404)
    finally:
        ui.stop()
    assert os.path.exists(secret)
    named = LocalUi(workdir / ".dash", "--allowed-host", "box.lan")  # the flag the refusal names
    try:
        assert named.request("GET", "/api/v1/owners", headers={"Host": "box.lan:8090"})[0] == 200
        assert named.request("GET", "/api/v1/owners", headers={"Host": "evil.example"})[0] == 400
    finally:
        named.stop()


def test_runs_the_index_cannot_take_are_skipped_and_every_other_run_is_served(workdir: Path) -> None:
    import json
    import shutil

    _local_runs(2, 20)
    twin = workdir / ".dash" / "copies" / "alice" / "local" / "run-0"  # the same prefix, another run id
    shutil.copytree(workdir / ".dash" / "alice" / "local" / "run-0", twin)
    doc = json.loads((twin / "experiment.json").read_text())
    (twin / "experiment.json").write_text(json.dumps({**doc, "run_id": "another-run"}))
    bad = workdir / ".dash" / "bad"
    bad.mkdir()
    (bad / "experiment.json").write_text(json.dumps({"prefix": "../../etc"}))
    ui = LocalUi(workdir / ".dash")
    try:
        status, out = ui.request("GET", "/api/v1/experiments?owner=alice&project=local")
        assert status == 200 and sorted(e["name"] for e in out["experiments"]) == ["run-0", "run-1"]
        status, page = ui.request("GET", "/api/v1/experiments/alice/local/run-1/metrics/train?limit=100")
        assert status == 200 and len(page["rows"]) == 20
    finally:
        ui.stop()
    assert "skipping" in ui.stderr and "another run" in ui.stderr


def test_a_run_larger_than_a_piece_is_indexed_over_passes_and_every_row_arrives(workdir: Path) -> None:
    import time

    from ml_dash.server import local_index

    exp = Experiment(prefix="alice/big/run")
    n = 200_000
    with exp.run:
        for i in range(n):
            exp.metrics("train").log(step=i, loss=1.0 / (i + 1), note="x" * 20)
    size = (workdir / ".dash/alice/big/run/metrics/train/data.jsonl").stat().st_size
    assert size > local_index.PIECE_BYTES  # more than one piece
    ui = LocalUi(workdir / ".dash")
    try:
        stored = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and stored < n:  # each read lets a pass go on
            status, exp_doc = ui.request("GET", "/api/v1/experiments/alice/big/run")
            stored = exp_doc["streams"].get("metrics/train", 0) if status == 200 else 0
            time.sleep(0.2)
        assert stored == n
        _, page = ui.request("GET", f"/api/v1/experiments/alice/big/run/metrics/train?start={n - 3}&limit=10")
        assert [r["data"]["step"] for r in page["rows"]] == [n - 3, n - 2, n - 1]
    finally:
        ui.stop()


def _png(width: int = 2, height: int = 2) -> bytes:
    """A valid PNG of ``width`` x ``height`` red pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_an_image_is_previewed_and_downloaded_through_the_token_header_from_blob_urls(workdir: Path, tab: Tab) -> None:
    image = _png()
    exp = Experiment(prefix="alice/local/pictures")
    with exp.run:
        exp.files("plots").save_blob(image, to="red.png")
    ui = LocalUi(workdir / ".dash")
    try:
        page = tab.page
        page.goto(ui.open_url)
        wait_for_start_page(page)
        page.goto(ui.url + "/?run=alice/local/pictures")
        page.get_by_role("button", name="preview").click()
        # shown from a blob: URL (an <img src> of the API would go without the header and be refused)
        page.wait_for_function("() => (document.querySelector('.preview img') || {}).naturalWidth === 2")
        assert page.locator(".preview img").get_attribute("src").startswith("blob:")
        with page.expect_download() as download:
            page.get_by_role("link", name="download").click()
        assert download.value.suggested_filename == "red.png"
        assert Path(download.value.path()).read_bytes() == image
        assert tab.errors == [] and page.context.cookies() == []
        assert [u for u in tab.requests if ui.token in u] == []
    finally:
        ui.stop()
