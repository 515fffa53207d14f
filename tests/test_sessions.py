"""The web UI's sign-in (ml_dash/server/sessions.py): a key (or, on a development server, a user name)
is exchanged for a session cookie named by the server's port, HttpOnly, SameSite=Strict, Secure over
https, kept a week; every bad sign-in body gets a 400 naming what to send. Against the server's app in
this process, over real HTTP (the cookie's attributes are what the browser gets)."""

from __future__ import annotations

import http.client
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from ml_dash.server.sessions import cookie_name, over_https

from .app_server import AppServer

WEEK_S = 7 * 24 * 3600


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[AppServer]:
    """A development server: user names sign in without a key (--allow-user-name)."""
    srv = AppServer(tmp_path / "dev-data", allow_user_name=True)
    yield srv
    srv.stop()


def _post(srv: AppServer, body: bytes, headers: dict[str, str] | None = None,
          chunked: bool = False) -> tuple[int, dict[str, Any], http.client.HTTPMessage]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("POST", "/api/v1/session", body=iter([body]) if chunked else body,
                     headers={"Content-Type": "application/json", **(headers or {})}, encode_chunked=chunked)
        response = conn.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {}), response.headers
    finally:
        conn.close()


def _said(reply: dict[str, Any]) -> str:
    return json.dumps(reply)


def test_the_cookie_is_named_by_the_port_the_url_names() -> None:
    for host, name in (("example.org", "ml_dash_session"), ("example.org:80", "ml_dash_session"),
                       ("example.org:443", "ml_dash_session"), ("example.org:8080", "ml_dash_session_8080"),
                       ("example.org:81", "ml_dash_session_81"), ("example.org:442", "ml_dash_session_442"),
                       ("example.org:abc", "ml_dash_session")):
        assert cookie_name(make_mocked_request("GET", "/", headers={"Host": host})) == name, host


def test_only_an_https_proxy_on_this_machine_makes_a_session_secure() -> None:
    def request(peer: str, proto: str) -> Any:
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (peer, 50000) if name == "peername" else default
        return make_mocked_request("POST", "/api/v1/session", headers={"X-Forwarded-Proto": proto}, transport=transport)

    assert over_https(request("127.0.0.1", " HTTPS , http"))
    for proto in ("wss", "https2", "http", "ftp"):  # any other scheme, whatever it sorts beside
        assert not over_https(request("127.0.0.1", proto)), proto


def test_a_key_signs_in_for_a_week_with_a_cookie_no_script_or_other_site_can_use(app_server: AppServer) -> None:
    key = app_server.key("alice")
    status, reply, headers = _post(app_server, json.dumps({"api_key": key}).encode())
    assert status == 200 and reply == {"owner": "alice"}
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"ml_dash_session_{app_server.port}=")
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", token)  # 256 random bits, URL-safe
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert attributes["max-age"] == f"Max-Age={WEEK_S}" and attributes["path"] == "Path=/"
    assert "httponly" in attributes and attributes["samesite"] == "SameSite=Strict" and "secure" not in attributes
    _, _, forwarded = _post(app_server, json.dumps({"api_key": key}).encode(), {"X-Forwarded-Proto": "https"})
    assert "Secure" in forwarded["Set-Cookie"]  # through a TLS-terminating proxy on this machine


@pytest.mark.skipif(bool(os.environ.get("ML_DASH_TEST_DB")), reason="reads the embedded database's file")
def test_the_server_keeps_a_session_for_the_week_its_cookie_lasts(app_server: AppServer) -> None:
    """The stored expiry, not only the cookie's: a stolen cookie is refused by the server after a week."""
    before = time.time()
    status, _reply, _headers = _post(app_server, json.dumps({"api_key": app_server.key("alice")}).encode())
    assert status == 200
    with sqlite3.connect(app_server.data / "ml-dash.sqlite3") as db:
        (expires_at,) = db.execute("SELECT expires_at FROM sessions").fetchone()
    assert before + WEEK_S <= expires_at <= time.time() + WEEK_S


@pytest.mark.parametrize("content_type", ["application/javascript", "application/graphql", "", "text/json"])
def test_a_sign_in_sent_as_anything_but_json_is_refused_whatever_it_holds(app_server: AppServer,
                                                                         content_type: str) -> None:
    status, reply, _ = _post(app_server, json.dumps({"api_key": app_server.key("alice")}).encode(),
                             {"Content-Type": content_type})
    assert status == 400 and "sign in with a JSON body" in _said(reply), (content_type, status, reply)


def _request(srv: AppServer, method: str, cookie: str) -> tuple[int, dict[str, Any], http.client.HTTPMessage]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, "/api/v1/session", headers={"Cookie": cookie})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}"), response.headers
    finally:
        conn.close()


def test_signing_out_ends_the_session_on_the_server_and_says_so(app_server: AppServer) -> None:
    _status, _reply, headers = _post(app_server, json.dumps({"api_key": app_server.key("alice")}).encode())
    cookie = headers["Set-Cookie"].split(";")[0]
    assert _request(app_server, "GET", cookie)[1]["owner"] == "alice"
    status, reply, out = _request(app_server, "DELETE", cookie)
    assert status == 200 and reply == {"signed_out": True}
    assert out["Set-Cookie"].startswith(f"ml_dash_session_{app_server.port}=\"\"")  # the browser drops it
    assert _request(app_server, "GET", cookie)[1]["owner"] is None  # and the server no longer knows it


@pytest.mark.parametrize("size", [4096, 4097])
def test_a_sign_in_body_is_at_most_4096_bytes_however_it_is_sent(app_server: AppServer, size: int) -> None:
    body = b'{"api_key": "mld_x"}'
    body += b" " * (size - len(body))
    for chunked in (False, True):  # with a Content-Length, and without one
        status, reply, _ = _post(app_server, body, chunked=chunked)
        if size <= 4096:
            assert status == 401 and "invalid or revoked API key" in _said(reply), (chunked, status, reply)
        else:
            assert status == 400 and "a sign-in body is at most 4096 bytes" in _said(reply), (chunked, status, reply)


def test_every_bad_sign_in_body_is_told_what_to_send(app_server: AppServer, dev_server: AppServer) -> None:
    cases = [
        (app_server, b"x", {"Content-Type": "text/plain"}, 'sign in with a JSON body: {\\"api_key\\": ...}'),
        (app_server, b"[1]", {}, 'sign in with a JSON object'),
        (app_server, b"not json", {}, 'sign in with a JSON object'),  # said to be JSON, and is not
        (app_server, b'{"user": ""}', {}, 'sign in with an API key: {\\"api_key\\": ...}"'),  # no user name given
        (app_server, b"{}", {}, 'sign in with an API key: {\\"api_key\\": ...}"'),  # and nothing more
        (app_server, b'{"user": "alice"}', {}, "this server signs in with API keys only"),
        (dev_server, b"{}", {}, 'sign in with an API key: {\\"api_key\\": ...} or a user name: {\\"user\\": ...}'),
        (dev_server, b'{"user": "bad owner"}', {}, "user: "),
    ]
    for srv, body, headers, message in cases:
        status, reply, _ = _post(srv, body, headers)
        assert status == 400 and message in _said(reply), (body, status, reply)
    status, reply, headers = _post(dev_server, b'{"user": "alice"}')
    assert status == 200 and reply == {"owner": "alice"} and "Set-Cookie" in headers
