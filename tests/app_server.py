"""The server's app in the test's own process: for tests of what a handler does, where a real process is
not the point (starting one costs 1.3 to 3 s; this, milliseconds).

It is what ``ml-dash server --host 127.0.0.1 --port 0`` runs (the same ``create_app``, the same runner
and connection settings: ml_dash/server/serve.py's ``app_runner``) on a real loopback socket, on a thread
of its own with its own event loop, with the same client as :class:`~tests.server_process.Server`. What
differs: ingest bodies are decoded in this process (``ingest_workers=0``: no decoding workers, so no
per-worker memory cap), and there is no process to signal, kill or read the log of. Tests of those take
the real one (the ``server`` fixture), and so does every test of a row of the fault matrix.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from ml_dash.server.config import ServerConfig
from ml_dash.server.http.hosts import LOOPBACK_HOSTS
from ml_dash.server.serve import app_runner

from .server_process import Server


class AppServer(Server):
    """``ServerConfig`` fields as keyword arguments (``allow_user_name=True``, ...); by default the
    config ``ml-dash server`` gives itself on 127.0.0.1."""

    def __init__(self, data: Path, **config: Any) -> None:  # not super().__init__ (a process): the client is shared
        self.data = data
        self.db = config.get("db")  # keys go to that database (Server.key)
        self.config = ServerConfig(**{"data_dir": data, "allowed_hosts": LOOPBACK_HOSTS, **config, "ingest_workers": 0})
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="app-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout=60) or self._failure is not None:
            raise RuntimeError(f"the in-process app did not start: {self._failure!r}")
        self.url = f"http://127.0.0.1:{self.port}"

    _failure: BaseException | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = app_runner(self.config, shutdown_timeout_s=10.0)
            self._loop.run_until_complete(self._runner.setup())
            from aiohttp import web

            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:  # noqa: BLE001  # reported by the constructor, in the test's thread
            self._failure = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())  # as serve() ends: in-flight requests finish
        self._loop.close()

    def stop(self) -> int:
        """Finish what is in flight and close the app (its storage included); 0, as a clean exit."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self.stdout = self.stderr = ""
        return 0
