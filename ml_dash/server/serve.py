"""Running the server: bind, announce the real port, stop gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from .app import create_app
from .auth import new_key
from .config import ServerConfig
from .http.connections import default_max_connections, raise_descriptor_limit
from .http.hosts import is_loopback
from .http.protocol import QuietAppRunner
from .storage.factory import open_storage, shown
from .storage.protocol import KeyRow, Storage

logger = logging.getLogger("ml_dash.server")
T = TypeVar("T")


async def serve(config: ServerConfig, host: str, port: int, shutdown_timeout_s: float = 10.0,
                local_root: Path | None = None, label: str = "ml-dash server",
                on_listening: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then finish in-flight requests (up to the timeout) and return.
    With ``local_root``, the runs under it, read-only (``ml-dash ui``). ``on_listening`` is called with
    the URL once it is bound (the port is known only then)."""
    if config.allow_user_name and not is_loopback(host):
        print(f"warning: --allow-user-name on {host} lets anyone on the network write as any user", file=sys.stderr)
    # The handlers first: a SIGTERM that comes as soon as the server says it listens (a supervisor, a test
    # that read the URL) must stop it cleanly, with its URL file removed, not kill it by the default action.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    descriptors = raise_descriptor_limit()  # every connection holds one, and the server's files more
    max_connections = config.max_connections or default_max_connections(descriptors)
    runner = app_runner(config, shutdown_timeout_s, local_root, max_connections)
    await runner.setup()
    # Everything alive now lives as long as the server: frozen, the cyclic collector stops walking it
    # on every full collection (which held a 3 ms page for 20-25 ms in one call of about twelve).
    gc.collect()
    gc.freeze()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    if local_root is not None:
        where = f"runs in {local_root}"
    elif config.db is not None or config.blobs is not None:  # named as they may be printed: no password
        where = f"database {shown(config.storage_url)}, files in {shown(config.blob_url)}"
    else:
        where = f"data in {config.data_dir}"
    print(f"{label} listening on http://{host}:{bound_port} ({where})", flush=True)
    if on_listening is not None:
        on_listening(f"http://{host}:{bound_port}")
    await stop.wait()
    await runner.cleanup()
    print(f"{label} stopped", flush=True)


def app_runner(config: ServerConfig, shutdown_timeout_s: float = 10.0, local_root: Path | None = None,
               max_connections: int = 0) -> QuietAppRunner:
    """The app and the connection settings ``serve`` runs it with (also what the tests run in-process);
    ``max_connections`` 0: no limit."""
    # auto_decompress=False: the ingest handler decompresses with a cap (a zip bomb gets 413);
    # aiohttp's own decompression would inflate without limit
    return QuietAppRunner(create_app(config, local_root=local_root), shutdown_timeout=shutdown_timeout_s, access_log=None,
                          auto_decompress=False, keepalive_timeout=config.keepalive_timeout_s,
                          # after an early answer (408, 413), drain the unread body for 2 s, not 10
                          lingering_time=2.0,
                          head_timeout_s=config.head_timeout_s, max_connections=max_connections)


async def _with_storage(config: ServerConfig, action: Callable[[Storage], Awaitable[T]]) -> T:
    """Open the server's storage (the server itself may be running: every backend allows several
    processes on one database), act, close."""
    storage = await open_storage(config.storage_url)
    try:
        return await action(storage)
    finally:
        await storage.close()


async def create_key(config: ServerConfig, owner: str) -> str:
    """Store a new key for ``owner`` (hashed) and return the token, which is not kept anywhere."""
    key = new_key()
    await _with_storage(config, lambda storage: storage.add_key(key.key_id, owner, key.secret_sha256))
    return key.token


async def revoke_key(config: ServerConfig, key_id: str) -> bool:
    """Refuse the key from the next request on; False when no such key exists."""
    return await _with_storage(config, lambda storage: storage.revoke_key(key_id))


async def list_keys(config: ServerConfig, owner: str) -> list[KeyRow]:
    return await _with_storage(config, lambda storage: storage.keys(owner))


async def grant(config: ServerConfig, owner: str, member: str) -> None:
    """Let ``member`` read ``owner``'s runs."""
    await _with_storage(config, lambda storage: storage.grant(owner, member))
