"""The uploader's view of a server: three requests, each answered by an :class:`~.retry.Outcome`.

:class:`Transport` is the seam the upload is tested at: the fake transport of
the tests scripts replies (statuses, ``Retry-After``, bodies) and records the
requests; :class:`HttpTransport` speaks HTTP to a real server with aiohttp.
A transport never raises for a network failure: it answers ``Outcome(0)``
with the reason, and the retry policy (agent/upload/retry.py) decides what next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

import aiohttp

from ml_dash.format.wire import CONTENT_TYPE, MAX_STREAM_PAGES, stream_page

from .retry import Outcome, parse_retry_after
from .stall import Stalled, StallGuard

logger = logging.getLogger("ml_dash.agent")

#: The longest reply read; a server sending more is cut off here, not read into memory. An ingest reply and
#: the run's document list every stream of the run with its count: a run may hold 100,000 metrics named
#: with up to 128 characters, about 15 MB of JSON (1 MiB, the cap before, stopped the upload of a run of
#: 9,000 long-named metrics with "HTTP 200 without an acknowledgement").
MAX_REPLY_BYTES = 32 << 20


class Transport(Protocol):
    """Requests of one run's upload to one server."""

    remote: str

    async def post_events(self, prefix: str, body: bytes, timeout_s: float, total_s: float | None,
                          encoding: str = "zstd") -> Outcome:
        """POST a bulk body (ml_dash/format/wire.py; ``encoding``: its Content-Encoding) to the run's events:
        ``timeout_s`` for the server to take each part of it or to answer, ``total_s`` for all of it
        (None: as long as it keeps moving)."""

    async def put_file(self, prefix: str, path: str, source: Path, headers: dict[str, str],
                       timeout_s: float, total_s: float | None) -> Outcome:
        """PUT a saved file's content, streamed from ``source``; ``timeout_s`` and ``total_s`` as for
        :meth:`post_events`."""

    async def get_run(self, prefix: str, timeout_s: float) -> Outcome:
        """GET the run as the server has it (404 when it has none)."""

    async def close(self) -> None:
        """Release connections."""


class HttpTransport:
    """:class:`Transport` over HTTP (aiohttp), ignoring proxy variables: the server is named exactly."""

    def __init__(self, remote: str, headers: dict[str, str]) -> None:
        self.remote = remote.rstrip("/")
        self.headers = headers
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:  # created on the loop that uses it
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    def _url(self, prefix: str, *parts: str) -> str:
        return "/".join([self.remote, "api/v1/runs", prefix, *(urllib.parse.quote(p, safe="/") for p in parts)])

    async def post_events(self, prefix: str, body: bytes, timeout_s: float, total_s: float | None,
                          encoding: str = "zstd") -> Outcome:
        """POST a bulk body (zstd, or identity: ml_dash/format/wire.py wire_body) to the run's events."""
        headers = {**self.headers, "Content-Encoding": encoding, "Content-Type": CONTENT_TYPE}
        return await self._request("POST", self._url(prefix, "events"), timeout_s, total_s, body=body, headers=headers)

    async def put_file(self, prefix: str, path: str, source: Path, headers: dict[str, str],
                       timeout_s: float, total_s: float | None) -> Outcome:
        try:
            handle = open(source, "rb")  # noqa: ASYNC230, SIM115  # reopened on every attempt: a retry resends it whole
        except OSError as exc:
            return Outcome(0, error=f"cannot read {source}: {exc}")
        with handle:  # streamed from the file: never whole in memory
            return await self._request("PUT", self._url(prefix, "files", path), timeout_s, total_s, body=handle,
                                       headers={**self.headers, **headers})

    async def get_run(self, prefix: str, timeout_s: float) -> Outcome:
        """GET the run's summary: its run id and every stream's count.

        A run's document carries its first page of streams and ``streams_next``; the rest is read page by
        page (``/streams?after=``) and merged in. Seeing one page would not do: a recount after a loss, or
        an adoption on resume, would take every stream past it for empty and send its rows again. At most
        :data:`MAX_STREAM_PAGES` pages, each after a later name than the one before (never a loop)."""
        url = f"{self.remote}/api/v1/experiments/{prefix}"
        outcome = await self._request("GET", url, timeout_s, timeout_s, headers=self.headers)
        if not outcome.ok or outcome.body is None or not isinstance(outcome.body.get("streams"), dict):
            return outcome
        streams, _, after = stream_page("", outcome.body)
        outcome.body.pop("streams_next", None)
        for _ in range(MAX_STREAM_PAGES + 1):
            if after is None:
                return outcome
            query = urllib.parse.urlencode({"after": after})
            page = await self._request("GET", f"{url}/streams?{query}", timeout_s, timeout_s, headers=self.headers)
            if not page.ok:  # a failed page fails the whole read: a retry starts it again
                return page
            try:
                more, _, after = stream_page(after, page.body)
            except TypeError:
                return Outcome(-1, error=f"{url}/streams answered without a map of streams")
            streams.update(more)
        return Outcome(-1, error=f"{url} has more than {MAX_STREAM_PAGES} pages of streams")

    async def _request(self, method: str, url: str, idle_s: float, total_s: float | None,
                       body: bytes | BinaryIO | None = None, headers: dict[str, str] | None = None) -> Outcome:
        """One request whose every wait (connecting, each part of the body, the answer) is at most
        ``idle_s``, and all of it at most ``total_s`` (None: no bound while it moves)."""
        timeout = aiohttp.ClientTimeout(total=total_s, sock_connect=idle_s, sock_read=idle_s)
        try:
            async with StallGuard(idle_s) as guard:
                data = _pieces(guard, body)
                if data is not None:  # a known length, not chunked: the server and proxies see the size first
                    headers = {**(headers or {}), "Content-Length": str(_length(body))}
                async with self._client().request(method, url, timeout=timeout, data=data, headers=headers) as resp:
                    raw = await _read_reply(resp)
                    return Outcome(resp.status, parse_retry_after(resp.headers.get("Retry-After")), _json_object(raw))
        except aiohttp.InvalidURL as exc:
            return Outcome(-1, error=f"invalid URL: {_describe(exc)}")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:  # asyncio's is not TimeoutError on 3.10
            logger.debug("%s %s failed: %r", method, url, exc)
            return Outcome(0, error=_describe(exc))
        except ValueError as exc:  # raised before anything is sent (a header value with a newline): never retried
            return Outcome(-1, error=f"the request cannot be made: {_describe(exc)}")

    async def close(self) -> None:
        """Close the connections (a new request opens them again)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_reply(resp: aiohttp.ClientResponse) -> bytes:
    """The whole reply body, to its end (a read returns what has arrived, maybe one TCP segment of it),
    or nothing when it is longer than :data:`MAX_REPLY_BYTES`."""
    if resp.content_length is not None and resp.content_length > MAX_REPLY_BYTES:
        return b""
    parts: list[bytes] = []
    size = 0
    while size <= MAX_REPLY_BYTES:
        part = await resp.content.read(MAX_REPLY_BYTES + 1 - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"" if size > MAX_REPLY_BYTES else b"".join(parts)


def _json_object(raw: bytes) -> dict | None:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _pieces(guard: StallGuard, body: bytes | BinaryIO | None) -> AsyncIterator[bytes] | None:
    if body is None:
        return None
    return guard.pieces_of(body) if isinstance(body, bytes) else guard.pieces_from(body)


def _length(body: bytes | BinaryIO | None) -> int:
    """The body's length in bytes (a file's from its current position to its end)."""
    if body is None:
        return 0
    if isinstance(body, bytes):
        return len(body)
    return os.fstat(body.fileno()).st_size - body.tell()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Stalled):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
