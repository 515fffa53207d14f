"""``ml-dash ui`` reads only for whoever holds the token it printed (issue 14, point 5): the token is
in the printed URL's fragment; every API route refuses a request without it in ``Authorization:
token``, and no cookie or query stands for it (cookies reach every port of a host); the page and its
scripts, which hold no run data, load without it; it never reaches a log or an error body; another
Unix account on the machine is refused. (The browser signs in through the printed URL, and another
port's listener gets nothing, in test_ui_local.py; every row of the UI in test_ui.py's ``site``.)"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ml_dash import Experiment

from .server_process import LocalUi

SECRET_PARAM = "param-only-alice-may-read"
SECRET_FILE = "file-only-alice-may-read"

#: The page and its scripts: the same for everyone, no run data (the page must load to read the fragment).
STATIC_ROUTES = ("/", "/?run=alice/p/run", "/ui/app.js", "/ui/token.js", "/ui/vendor/htm-preact-3.1.1.mjs")
#: The routes that read runs: the API's reads, a file's content.
ROUTES = ("/api/v1/session", "/api/v1/owners",
          "/api/v1/projects?owner=alice", "/api/v1/experiments?owner=alice&project=p",
          "/api/v1/experiments/alice/p/run", "/api/v1/experiments/alice/p/run/metrics/train?buckets=10",
          "/api/v1/experiments/alice/p/run/logs", "/api/v1/experiments/alice/p/run/files",
          "/api/v1/experiments/alice/p/run/files/secret/secret.txt",
          "/api/v1/compare/metrics/train?runs=alice/p/run")


def _secret_run(root: Path) -> Path:
    exp = Experiment(prefix="alice/p/run", local_path=str(root / "alice/p/run"))
    with exp.run:
        exp.params.set(secret=SECRET_PARAM)
        exp.metrics("train").log(step=0, loss=1.0)
        exp.log("a line")
        exp.files("secret").save_text(SECRET_FILE, to="secret.txt")
    return exp.directory


def _raw(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def ui(workdir: Path):
    _secret_run(workdir / ".dash")
    started = LocalUi(workdir / ".dash")
    yield started
    started.stop()


def test_every_api_route_refuses_a_request_without_the_token_and_says_what_to_open(ui: LocalUi) -> None:
    for path in ROUTES:
        status, headers, body = _raw(ui.port, path)
        assert status == 401, path
        assert SECRET_PARAM.encode() not in body and SECRET_FILE.encode() not in body, path
        assert headers["cache-control"] == "no-store" and headers["www-authenticate"].startswith("Token "), path
        error = json.loads(body)["error"]
        assert "open the URL" in error and "--no-auth" in error and "#token=" in error, path
    status, headers, body = _raw(ui.port, "/nothing")  # not the page's, not the API: refused as well
    assert status == 401 and headers["content-type"].startswith("text/html") and b"open the URL" in body
    assert _raw(ui.port, "/health")[0] == 200  # says nothing of the runs; load balancers and scripts probe it
    for wrong in (ui.token[:-1], ui.token + "x", "", "\u00e9" * 43, ui.token.upper()):
        status, _, body = _raw(ui.port, "/api/v1/owners", {"Authorization": f"token {wrong}".encode().decode("latin-1")})
        assert status == 401, wrong  # a token is compared as bytes: never a 500
        if wrong:
            assert b"not this ml-dash ui" in body  # said: a stale token, not a missing one
    # neither a query nor a cookie stands for the token on the API: a URL is logged and shared, a
    # cookie is sent to every port of the host (another account's listener included)
    old_cookie = hmac.new(ui.token.encode(), b"ml-dash ui session", hashlib.sha256).hexdigest()
    for path, headers in (("/api/v1/experiments/alice/p/run?token=" + ui.token, {}),
                          ("/api/v1/experiments/alice/p/run", {"Cookie": f"ml_dash_ui_{ui.port}={old_cookie}"}),
                          ("/api/v1/experiments/alice/p/run", {"Cookie": f"ml_dash_ui_{ui.port}={ui.token}"}),
                          ("/api/v1/experiments/alice/p/run/files/secret/secret.txt?token=" + ui.token, {})):
        status, _, body = _raw(ui.port, path, headers)
        assert status == 401 and SECRET_PARAM.encode() not in body and SECRET_FILE.encode() not in body, path


def test_the_page_and_its_scripts_load_without_the_token_and_hold_no_run_data(ui: LocalUi) -> None:
    for path in STATIC_ROUTES:
        status, headers, body = _raw(ui.port, path)
        assert status == 200, path
        assert SECRET_PARAM.encode() not in body and SECRET_FILE.encode() not in body, path
        assert "set-cookie" not in headers, path
    for outside in ("/ui/../server/app.py", "/ui/%2e%2e/server/app.py", "/ui/%2e%2e/%2e%2e/__init__.py"):
        assert _raw(ui.port, outside)[0] == 404, outside  # open to anyone: only the UI's own files


def test_the_token_reads_everything_through_its_header_and_the_old_url_form_moves_it_to_the_fragment(
        ui: LocalUi) -> None:
    assert ui.open_url == f"http://127.0.0.1:{ui.port}/#token={ui.token}"
    assert len(ui.token) >= 43  # secrets.token_urlsafe(32)
    for path in ROUTES:
        status, headers, _ = _raw(ui.port, path, {"Authorization": f"token {ui.token}"})
        assert status == 200 and "set-cookie" not in headers, path
    status, headers, body = _raw(ui.port, "/api/v1/experiments/alice/p/run/files/secret/secret.txt",
                                 {"Authorization": f"token {ui.token}"})
    assert status == 200 and body == SECRET_FILE.encode()
    # /?token= (the URL's form before): the same view, the token in the fragment, no cookie
    status, headers, _ = _raw(ui.port, f"/?token={ui.token}&run=alice/p/run&z.a%2Fb=1:2")
    assert status == 303 and headers["location"] == f"/?run=alice/p/run&z.a/b=1:2#token={ui.token}"
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in headers
    assert _raw(ui.port, f"/?token={ui.token}")[1]["location"] == f"/#token={ui.token}"


def test_the_token_never_reaches_the_logs_or_an_error_body(ui: LocalUi) -> None:
    wrong = "W" * 43
    for headers in ({"Authorization": f"token {ui.token}"}, {}):
        for path in ("/api/v1/experiments/alice/p/nothing", "/api/v1/experiments/alice/p/run/metrics/train?limit=x",
                     "/api/v1/experiments/alice/p/run/logs?q=" + "x" * 201, "/nothing", "/ui/nothing.js"):
            for token in (ui.token, wrong):
                status, _, body = _raw(ui.port, path + ("&" if "?" in path else "?") + "token=" + token, headers)
                assert 400 <= status < 500 and token.encode() not in body, (path, status)
    ui.stop()
    printed = ui.stdout + ui.stderr  # what it printed after the URL: its warnings, its log
    assert ui.token not in printed and wrong not in printed
    assert not (ui.runtime / "ml-dash").exists() or not any((ui.runtime / "ml-dash").iterdir())  # its URL file too


def test_the_url_is_also_in_a_file_only_its_account_can_read_removed_at_exit(ui: LocalUi) -> None:
    url_file = ui.runtime / "ml-dash" / f"ui-{ui.port}.url"
    assert url_file.read_text() == ui.open_url + "\n"
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(url_file.parent.stat().st_mode) == 0o700
    assert str(url_file) in ui.open_line  # where to find it again is said beside the URL
    ui.stop()
    assert not url_file.exists()


def test_a_token_from_the_environment_is_used_and_a_weak_one_refused_without_echoing_it(workdir: Path) -> None:
    _secret_run(workdir / ".dash")
    chosen = "a-token-of-my-own-choosing-for-scripts"
    ui = LocalUi(workdir / ".dash", env={"ML_DASH_UI_TOKEN": chosen})
    try:
        assert ui.token == chosen
        assert ui.request("GET", "/api/v1/experiments/alice/p/run")[0] == 200
    finally:
        ui.stop()
    for weak in ("short", "has spaces in it, which a URL cannot hold as they are"):
        out = subprocess.run([sys.executable, "-m", "ml_dash.cli", "ui", str(workdir / ".dash"), "--port", "0"],
                             env={**os.environ, "ML_DASH_UI_TOKEN": weak, "XDG_RUNTIME_DIR": str(workdir / "rt")},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "ML_DASH_UI_TOKEN" in out.stderr and weak not in out.stderr + out.stdout


def test_no_auth_serves_every_account_as_before_and_warns(workdir: Path) -> None:
    _secret_run(workdir / ".dash")
    ui = LocalUi(workdir / ".dash", "--no-auth")
    try:
        status, body = ui.request("GET", "/api/v1/experiments/alice/p/run")
        assert status == 200 and body["params"]["secret"] == SECRET_PARAM
        assert _raw(ui.port, "/")[0] == 200
    finally:
        ui.stop()
    assert "--no-auth" in ui.stderr and "every account on this machine" in ui.stderr
    assert not (ui.runtime / "ml-dash" / f"ui-{ui.port}.url").exists()


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# -- another Unix account ------------------------------------------------------------------------------

#: What the other account runs: the system's python (it may not read the test's virtual environment),
#: urllib only. It asks each route, without and (to prove the test can tell) with the token it is given.
CLIENT = textwrap.dedent("""
    import json, os, sys, urllib.error, urllib.request
    base, token = sys.argv[1], os.environ.get("TOKEN")
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    out = {}
    for path in json.loads(sys.argv[2]):
        headers = {"Authorization": "token " + token} if token else {}
        try:
            with direct.open(urllib.request.Request(base + path, headers=headers), timeout=30) as r:
                out[path] = [r.status, r.read().decode("utf-8", "replace")]
        except urllib.error.HTTPError as err:
            out[path] = [err.code, err.read().decode("utf-8", "replace")]
    print(json.dumps(out))
""")


def _as_nobody(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv], cwd="/",
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True, text=True, timeout=60)


def _another_account_available() -> None:
    why = None
    if os.geteuid() != 0:
        why = "only root can act as another account (setpriv --reuid)"
    elif shutil.which("setpriv") is None:
        why = "setpriv is not installed (util-linux)"
    elif not Path("/usr/bin/python3").exists():
        why = "no /usr/bin/python3 for the other account"
    else:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            why = "no account 'nobody'"
    if why is not None:
        if os.environ.get("ML_DASH_REQUIRE_OTHER_ACCOUNT"):  # set by .ci/run: there, this is a failure
            pytest.fail(f"{why} (ML_DASH_REQUIRE_OTHER_ACCOUNT is set)")
        pytest.skip(why)


def test_another_unix_account_on_the_machine_reads_nothing_through_the_ui(workdir: Path) -> None:
    _another_account_available()
    run_dir = _secret_run(workdir / ".dash")
    os.chmod(run_dir, 0o700)  # as in the report: a run the other account cannot read directly
    secret_file = next(run_dir.rglob("secret.txt"))
    direct = _as_nobody("cat", str(secret_file))
    assert direct.returncode != 0 and SECRET_FILE not in direct.stdout  # so the UI is its only way in
    ui = LocalUi(workdir / ".dash")
    try:
        paths = json.dumps(list(ROUTES))
        refused = _as_nobody("/usr/bin/python3", "-I", "-c", CLIENT, ui.url, paths)
        assert refused.returncode == 0, refused.stderr
        for path, (status, body) in json.loads(refused.stdout).items():
            assert status == 401, (path, status)
            assert SECRET_PARAM not in body and SECRET_FILE not in body, path
        # the same client with the token (which another account never sees) reads: the test can tell
        let_in = _as_nobody("/usr/bin/python3", "-I", "-c", CLIENT, ui.url, paths, env={"TOKEN": ui.token or ""})
        answers: dict[str, Any] = json.loads(let_in.stdout)
        assert all(status == 200 for status, _ in answers.values()), {p: s for p, (s, _) in answers.items()}
        assert SECRET_PARAM in answers["/api/v1/experiments/alice/p/run"][1]
        assert answers["/api/v1/experiments/alice/p/run/files/secret/secret.txt"][1] == SECRET_FILE
        url_file = ui.runtime / "ml-dash" / f"ui-{ui.port}.url"
        assert _as_nobody("cat", str(url_file)).returncode != 0  # nor can it find the token in the URL file
    finally:
        ui.stop()
