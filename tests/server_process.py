"""A real ``ml-dash server`` process on 127.0.0.1 (port 0) and a small HTTP client for tests."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ml_dash.format.wire import encode_body

#: Every process this module started, so that none outlives its test (conftest.py kills the rest).
STARTED: list[subprocess.Popen] = []

#: Requests straight to the loopback server: an ``http_proxy`` in the environment is not followed.
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Server:
    """A running ``ml-dash server`` subprocess and a small HTTP client for it."""

    def __init__(self, data: Path, *extra: str, port: int = 0, open_files: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        """``open_files``: the server process's limit of open files (soft and hard), where a test needs one;
        ``env``: the server's environment (``AWS_*`` for an S3 blob store), else this process's."""
        self.db = extra[extra.index("--db") + 1] if "--db" in extra else None  # keys go to that database
        self._start(data, "server", "--host", "127.0.0.1", "--port", str(port), "--data", str(data), *extra,
                    open_files=open_files, env=env)

    def _start(self, data: Path, *command: str, env: dict[str, str] | None = None,
               open_files: int | None = None) -> None:
        """Run ``ml-dash COMMAND...`` and wait for the line that gives its URL."""
        self.data = data
        launch = [sys.executable, "-m", "ml_dash.cli"]
        if open_files is not None:  # set in the child before it becomes the command (no preexec_fn: threads)
            limited = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
                       f"({open_files}, {open_files})); os.execv(sys.executable, [sys.executable, '-m', 'ml_dash.cli', "
                       "*sys.argv[1:]])")
            launch = [sys.executable, "-c", limited]
        self.proc = subprocess.Popen([*launch, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        STARTED.append(self.proc)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"ml-dash {command[0]} did not start: {line!r} {self.proc.stderr.read()}")
        self.banner = line  # "ml-dash server listening on URL (where its data is)"
        self.url = line.split()[4]
        self.port = int(self.url.rsplit(":", 1)[1])

    def key(self, owner: str) -> str:
        """A new API key of ``owner``: what ``ml-dash keys create`` does (its own function, on its own
        connection to the database, as that command's process would), without starting an interpreter
        for it (a second or more per key on a loaded machine). tests/test_server.py runs the command."""
        return create_key(self.data, owner, getattr(self, "db", None))

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                key: str | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with direct.open(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def ingest(self, prefix: str, body: dict[str, Any], key: str | None, encoding: str = "zstd",
               raw: bytes | None = None) -> tuple[int, Any]:
        payload = raw if raw is not None else encode_body(body)
        return self.request("POST", f"/api/v1/runs/{prefix}/events", payload,
                            {"Content-Encoding": encoding, "Content-Type": "application/octet-stream"}, key)

    def metric_rows(self, prefix: str, metric: str = "train", headers: dict[str, str] | None = None,
                    key: str | None = None) -> list[dict[str, Any]]:
        """Every stored row of a metric, page by page (pages of 100,000 rows, the server's cap, or fewer
        with ``next`` when wide rows pass its value budget; bounded)."""
        rows: list[dict[str, Any]] = []
        start = 0
        for _ in range(1000):
            status, body = self.request("GET", f"/api/v1/experiments/{prefix}/metrics/{metric}?start={start}"
                                               "&limit=100000", headers=headers, key=key)
            page = body.get("rows", []) if status == 200 else []
            rows += page
            if page and "next" in body:  # cut short by the server's page budget: the rest from there
                start = body["next"]
                continue
            if len(page) < 100_000:
                return rows
            start = rows[-1]["index"] + 1
        raise AssertionError("too many pages")

    def document(self, prefix: str, headers: dict[str, str] | None = None,
                 key: str | None = None) -> tuple[int, Any]:
        """(status, the run's document with every stream): its first page of streams, and the rest after
        ``streams_next`` page by page (``.../streams?after=``), merged in (bounded)."""
        status, doc = self.request("GET", f"/api/v1/experiments/{prefix}", headers=headers, key=key)
        after = doc.pop("streams_next", None) if status == 200 else None
        for _ in range(10_000):
            if after is None:
                return status, doc
            page_status, page = self.request("GET", f"/api/v1/experiments/{prefix}/streams?after={quote(after)}",
                                             headers=headers, key=key)
            assert page_status == 200, page
            doc["streams"].update(page["streams"])
            doc["latest"].update(page["latest"])
            after = page.get("next")
        raise AssertionError("too many pages of streams")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=30)  # what it printed, for tests to read
        finally:
            self.proc.kill()
        return self.proc.returncode




def create_key(data: Path, owner: str, db: str | None = None) -> str:
    """``ml-dash keys create --owner OWNER --data DATA [--db DB]``'s key, made in this process: in a thread of
    its own, whose event loop cannot clash with one running in the caller's (Playwright's, in the UI tests)."""
    from ml_dash.server.config import ServerConfig
    from ml_dash.server.serve import create_key as create

    made: list[str] = []
    worker = threading.Thread(target=lambda: made.append(asyncio.run(create(ServerConfig(Path(data), db=db), owner))),
                              name="create-key")
    worker.start()
    worker.join(timeout=60)
    if not made:
        raise RuntimeError(f"no key was made for {owner} in {data}")
    return made[0]


def recv_until_closed(conn: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """What a raw connection receives until the server closes it (True; a reset counts) or ``limit_s``
    passes (False): for tests that speak HTTP by hand (slow heads, silent bodies)."""
    got = b""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        conn.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            break
        except OSError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


class LocalUi(Server):
    """A running ``ml-dash ui DIR`` subprocess (127.0.0.1, port 0): the same client as a server's, which
    sends the token the UI printed (in ``Authorization: token``). Its URL file goes to
    ``runtime`` (``XDG_RUNTIME_DIR``; default: beside DIR), never to the home directory of whoever runs
    the tests."""

    def __init__(self, directory: Path, *extra: str, env: dict[str, str] | None = None,
                 runtime: Path | None = None) -> None:  # not super().__init__ (a server): _start is shared
        self.runtime = runtime or Path(directory).resolve().parent / "runtime"
        self._start(directory, "ui", str(directory), "--port", "0", *extra,
                    env={**os.environ, "XDG_RUNTIME_DIR": str(self.runtime), **(env or {})})
        self.token: str | None = None
        self.open_url = self.url + "/"
        self.open_line = ""
        if "--no-auth" not in extra:
            line = _line_within(self.proc, 60)
            if not line.startswith("open http"):
                self.proc.kill()
                raise RuntimeError(f"ml-dash ui printed no URL to open: {line!r}")
            self.open_line = line
            self.open_url = line.split()[1]
            self.token = parse_qs(urlsplit(self.open_url).fragment)["token"][0]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                key: str | None = None) -> tuple[int, Any]:
        headers = dict(headers or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"token {self.token}")
        return super().request(method, path, body, headers, key)


def _line_within(proc: subprocess.Popen, timeout_s: float) -> str:
    """The next line ``proc`` prints, or "" when none comes within ``timeout_s`` (or it exits)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        return ""
