"""A misbehaving HTTP server on 127.0.0.1 for the client's side of the fault matrix: it answers every GET
with a scripted JSON body (or trickles one byte at a time), as a broken or malicious ml-dash server would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EvilServer:
    """``routes``: path (without the query) -> JSON-able body; ``trickle_s``: seconds between the bytes."""

    def __init__(self, routes: dict[str, Any], trickle_s: float | None = None) -> None:
        self.routes = routes
        self.trickle_s = trickle_s
        self.requests: list[str] = []
        handler = _handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="evil-server")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(owner: EvilServer) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            owner.requests.append(path)
            body = owner.routes.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if owner.trickle_s is None:
                self.wfile.write(raw)
                return
            for i in range(min(len(raw), 600)):  # bounded: a minute at most, then the connection ends
                self.wfile.write(raw[i:i + 1])
                self.wfile.flush()
                time.sleep(owner.trickle_s)

    return Handler
