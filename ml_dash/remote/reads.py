"""The SDK's read methods against the server (remote mode, for a run this process did not write).

``Experiment(prefix, remote=..., api_key=...)`` on another machine, or after
the run ended elsewhere, has no local copy: ``exp.metrics("train").read()``,
``exp.logs.read()``, ``exp.params.get()`` and ``exp.files(...).list()`` /
``.download()`` then ask the server's JSON read API. A run written by this
process is read from its directory instead, which holds at least everything
the server has (rows reach the server only after they are on disk).

Reads are synchronous (like the local ones), bounded by a timeout, and fail
with :class:`~ml_dash.errors.MLDashError` naming the server and its reason;
a run the server does not have reads as empty, as a missing local run does.
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import MLDashError
from ..format.credentials import credential_headers
from ..format.jsonlines import restore_metric_row
from ..format.latest import NON_FINITE_KEY
from ..format.layout import LOG_KEY, METRIC_KEY
from ..format.wire import MAX_STREAM_PAGES, stream_page

PAGE_ROWS = 50_000  # the server's largest page
MAX_PAGES = 1_000_000
#: Pages of a run's streams: 1,000 streams a page from an ml-dash server, which holds at most 100,000 a run
#: by default; a server that names more is refused here rather than followed for ever.
MAX_JSON_BYTES = 256 * 1024 * 1024  # a page of 50,000 rows is a few MB; a server sending more is refused
MAX_ERROR_BYTES = 64 * 1024
#: No proxies from the environment: the uploader (aiohttp) ignores them too, so reads and writes
#: reach the same server the same way.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerReads:
    """Reads one run (``owner/project/name``) from ``remote``."""

    def __init__(self, remote: str, prefix: str, api_key: str | None, user_name: str | None,
                 timeout_s: float = 30.0, page_rows: int = PAGE_ROWS) -> None:
        self.remote = remote.rstrip("/")
        self.prefix = prefix
        self.base = f"{self.remote}/api/v1/experiments/{prefix}"
        self.headers = credential_headers(api_key, user_name)
        self.timeout_s = timeout_s
        self.page_rows = page_rows

    def _open(self, url: str) -> Any:
        request = urllib.request.Request(url, headers=self.headers)
        try:
            return _opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            try:
                reason = json.loads(err.read(MAX_ERROR_BYTES) or b"{}").get("error")
            except (ValueError, AttributeError):
                reason = None
            reason = reason[:500] if isinstance(reason, str) else None
            raise MLDashError(f"cannot read {self.prefix} from {self.remote}: HTTP {err.code}"
                              f"{': ' + reason if reason else ''}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise MLDashError(f"cannot read {self.prefix} from {self.remote}: {reason}") from None

    def _get(self, path: str = "", **params: Any) -> dict[str, Any] | None:
        """One JSON object from the server, within ``timeout_s`` for all of it (urllib's timeout is per
        read: a server trickling a byte at a time would hold it for ever), and at most MAX_JSON_BYTES."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._get_url(f"{self.base}{path}{query}", path)

    def api(self, path: str, **params: Any) -> dict[str, Any] | None:
        """A JSON object from ``{remote}/api/v1{path}`` (None on 404), as :meth:`_get` reads the run's."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._get_url(f"{self.remote}/api/v1{path}{query}", path)

    def _get_url(self, url: str, path: str) -> dict[str, Any] | None:
        def fetch() -> Any:
            response = self._open(url)
            if response is None:
                return None
            with response:
                raw = response.read(MAX_JSON_BYTES + 1)
            if len(raw) > MAX_JSON_BYTES:
                raise MLDashError(f"{self.remote} answered {path or 'the run'} with more than {MAX_JSON_BYTES:,} bytes")
            try:
                body = json.loads(raw)
            except (TypeError, ValueError):  # ValueError: not JSON, or not UTF-8
                raise MLDashError(f"{self.remote} answered {path or 'the run'} with something that is not JSON") from None
            if not isinstance(body, dict):
                raise MLDashError(f"{self.remote} answered {path or 'the run'} with JSON that is not an object")
            return body

        return _within(fetch, self.timeout_s, f"cannot read {self.prefix} from {self.remote}: no answer within "
                                               f"{self.timeout_s:g} s")

    def open_stream(self, path: str, **params: Any) -> Any:
        """The open response of ``{base}{path}`` for the caller to read as it arrives (each read bounded by
        ``timeout_s``), or None on 404; MLDashError as for :meth:`_get`."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._open(f"{self.base}{path}{query}")

    def experiment(self) -> dict[str, Any] | None:
        """The run's summary (params, status, every stream's size, each metric field's latest value), or None
        when the server has no such run. A run's document carries its first page of streams and, past
        them, ``streams_next``: the rest is read page by page (``/streams?after=``) and merged in."""
        doc = self._get()
        if doc is None or not isinstance(doc.get("streams"), dict):
            return doc
        streams, _, after = stream_page("", doc)
        doc.pop("streams_next", None)
        latest = doc.get("latest")
        for _ in range(MAX_STREAM_PAGES + 1):  # bounded: a server that pages forever ends here
            if after is None:
                return doc
            try:
                page = self._get("/streams", after=after)
                more, values, after = stream_page(after, page)
            except TypeError:
                raise MLDashError(f"{self.remote} answered the streams of {self.prefix} without a map of streams") \
                    from None
            streams.update(more)
            if isinstance(latest, dict):
                latest.update(values)
                marks = page.get(NON_FINITE_KEY) if isinstance(page, dict) else None
                if isinstance(marks, dict) and isinstance(doc.setdefault(NON_FINITE_KEY, {}), dict):
                    doc[NON_FINITE_KEY].update(marks)
        raise MLDashError(f"{self.remote} sent more than {MAX_STREAM_PAGES} pages of the streams of {self.prefix}")

    def pages(self, path: str, field: str, key: str, start: int = 0,
              limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The rows under ``field`` of ``path``'s pages from index ``start`` on, ``limit`` rows at most,
        as the server sends them (a missing run has none), following ``next`` past pages the server
        cut short by their size. Each page starts after the last row's ``key``:
        a stream may skip indices (rows set aside by their client), so counting rows would repeat some."""
        taken = 0
        for _ in range(MAX_PAGES):  # bounded: a server that pages forever ends here
            size = self.page_rows if limit is None else min(self.page_rows, limit - taken)
            if size <= 0:
                return
            body = self._get(path, start=start, limit=size) or {}
            page = body.get(field, [])
            if not isinstance(page, list):
                raise MLDashError(f"{self.remote} answered {path} without a list of {field}")
            page = [row for row in page if isinstance(row, dict) and isinstance(row.get(key), int) and row[key] >= start]
            if page:
                yield page
                start = page[-1][key] + 1
            taken += len(page)
            # a page cut short by the server's size budget says where the rest starts: a short page
            # with ``next`` is not the end
            cut = body.get("next")
            if isinstance(cut, int) and not isinstance(cut, bool) and cut >= start and page:
                start = cut
                continue
            if len(page) < size:
                return
        raise MLDashError(f"{self.remote} sent more than {MAX_PAGES} pages of {path}")

    def metric_rows(self, metric: str, start: int, limit: int | None) -> list[dict[str, Any]]:
        """Rows of ``metric`` from ``start`` on (``limit`` at most), non-finite values restored."""
        pages = self.pages(f"/metrics/{urllib.parse.quote(metric)}", "rows", METRIC_KEY, start, limit)
        return [restore_metric_row(row) for page in pages for row in page]

    def logs(self, level: str | None) -> list[dict[str, Any]]:
        """Every log line (of ``level`` when given), in order."""
        lines = [line for page in self.pages("/logs", "logs", LOG_KEY) for line in page]
        return lines if level is None else [line for line in lines if line.get("level") == level]

    def params(self) -> dict[str, Any]:
        return dict((self._get() or {}).get("params") or {})  # the document alone: no stream pages

    def files(self) -> list[dict[str, Any]]:
        """The run's file entries (those that are objects)."""
        found = (self._get("/files") or {}).get("files", [])
        return [entry for entry in found if isinstance(entry, dict)] if isinstance(found, list) else []

    def download(self, path: str, target: Path) -> None:
        """Stream the saved file ``path`` to ``target``; FileNotFoundError when the server has none."""
        response = self._open(f"{self.base}/files/{urllib.parse.quote(path)}")
        if response is None:
            raise FileNotFoundError(f"no saved file {path!r} in {self.prefix} on {self.remote}")
        with response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)


def _within(fn: Any, timeout_s: float, message: str) -> Any:
    """``fn()`` on a daemon thread, waited for at most ``timeout_s``; MLDashError(``message``) after that
    (the thread is left to its socket's own timeout)."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="ml-dash-read", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise MLDashError(message)
    if failure:
        raise failure[0]
    return result[0]
