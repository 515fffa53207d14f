"""The file routes: streamed uploads checked against their sha256, listings, and downloads that never
run as part of the UI."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from aiohttp import web

from ml_dash.format.jsonlines import DecodeError, loads
from ml_dash.format.naming import clean_relative_path

from .. import ui
from ..access import BLOBS, CONFIG, GATE, STORAGE, caller, experiment_of, run_prefix
from ..blobs.errors import BlobNotFound, BlobTooLarge, BlobUnavailable, DigestMismatch, InvalidDigest
from ..errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Unavailable
from ..http.admission import BodyHold
from ..http.answers import json_response
from ..http.bodies import body_chunks
from ..http.ranges import RangeNotSatisfiable, byte_range

logger = logging.getLogger("ml_dash.server")

#: A file upload is read and written this much at a time.
FILE_PIECE_BYTES = 1 << 20


async def put_file(request: web.Request) -> web.Response:
    """Stream a file in, verify its sha256, store it content-addressed, record it under the run."""
    owner, project, name = run_prefix(request)
    who = await caller(request)
    if who != owner:
        raise Forbidden(f"{who!r} may write only under {who}/...")
    path = _file_path(request)
    declared = request.headers.get("X-Content-SHA256", "").lower()
    entry_header = request.headers.get("X-File-Entry")
    try:
        entry = loads(entry_header) if entry_header else {}
    except DecodeError:
        entry = None
    if not isinstance(entry, dict):
        raise BadRequest("X-File-Entry must be a JSON object")
    config = request.app[CONFIG]
    if request.content_length is not None and request.content_length > config.max_file_bytes:
        # refused before a byte of it is read (or a slot of the body budget held), as ingest refuses
        raise PayloadTooLarge(f"a file of {request.content_length} bytes; this server takes at most "
                              f"{config.max_file_bytes} bytes a file")
    # one of the caller's bodies under way; streamed to disk a piece at a time: the piece in hand is what
    # the upload holds of the body budget
    gate = request.app[GATE]
    async with gate.callers.admit(who), gate.bodies.hold(0, who) as hold:
        pieces = _held_pieces(body_chunks(request, FILE_PIECE_BYTES, config.body_idle_timeout_s), hold)
        try:
            size = await request.app[BLOBS].put(pieces, declared, config.max_file_bytes)
        except BlobTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        except (InvalidDigest, DigestMismatch) as exc:
            raise BadRequest(str(exc)) from None
        except BlobUnavailable as exc:  # nothing stored; the client waits as told and sends it again
            _note_unavailable(exc)
            raise Unavailable(str(exc), retry_after_s=exc.retry_after_s) from None
    await request.app[STORAGE].put_file(owner, project, name, path, declared, size, entry)
    return json_response({"path": path, "sha256": declared, "sizeBytes": size})


_last_unavailable_note = [0.0]


def _note_unavailable(exc: BlobUnavailable) -> None:
    """The operator learns the blob store is failing (the clients only retry): a warning at most once a
    minute, naming the failure (no credential is ever in it)."""
    now = time.monotonic()
    if now - _last_unavailable_note[0] >= 60:
        _last_unavailable_note[0] = now
        logger.warning("file requests get 503: %s", exc)


async def _held_pieces(chunks: AsyncIterator[bytes], hold: BodyHold) -> AsyncIterator[bytes]:
    """Each piece holds its bytes of the body budget while it is written, and nothing while the next is
    awaited: an upload that trickles holds nothing (one reserved its piece for its whole life, so that
    a few dozen trickling uploads took a key's share). A piece waits for room as a body's first step
    does; it holds nothing meanwhile, so no one waits on it. What is still held when the upload ends
    early is given back by the hold's block."""
    async for chunk in chunks:
        await hold.take(len(chunk))
        yield chunk
        hold.drop()


_PREVIEW_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                  ".webp": "image/webp"}


def _preview_type(path: str) -> str:
    """The type a preview is served as: images as themselves, anything else as plain text (the UI
    shows text and JSON as text; an HTML file is shown as its source, never rendered)."""
    suffix = path[path.rfind("."):].lower() if "." in path else ""
    return _PREVIEW_TYPES.get(suffix, "text/plain; charset=utf-8")


def _file_path(request: web.Request) -> str:
    try:
        path = clean_relative_path("file path", request.match_info["path"])
    except (TypeError, ValueError) as exc:
        raise BadRequest(str(exc)) from None
    if not path:
        raise BadRequest("empty file path")
    return path


async def list_files(request: web.Request) -> web.Response:
    exp = await experiment_of(request)
    return json_response({"files": await request.app[STORAGE].files(exp["id"])})


async def get_file(request: web.Request) -> web.StreamResponse:
    """A file's content, streamed from the blob store: one byte range with ``Range`` (206; 416 past
    the end), 304 for ``If-None-Match`` of its ETag (the sha256: content-addressed, it never changes)."""
    exp = await experiment_of(request)
    path = _file_path(request)
    entry = next((e for e in await request.app[STORAGE].files(exp["id"]) if e["path"] == path), None)
    if entry is None:
        raise NotFound(f"no file {path!r} in {exp['prefix']}")
    blobs, sha256 = request.app[BLOBS], entry["checksum"]
    try:
        size = await blobs.size(sha256)
    except InvalidDigest as exc:
        raise BadRequest(str(exc)) from None
    except BlobNotFound:
        raise NotFound(f"the content of {path!r} in {exp['prefix']} is not on this server") from None
    except BlobUnavailable as exc:
        _note_unavailable(exc)
        raise Unavailable(str(exc), retry_after_s=exc.retry_after_s) from None
    etag = f'"{sha256}"'
    # a stored file never runs as part of the UI: sandboxed, never sniffed, downloaded unless the UI
    # asks to preview a kind it shows as text or as an image
    preview = request.query.get("preview") == "1" and _preview_type(path)
    headers = {"Content-Security-Policy": ui.FILE_CSP, "Content-Type": preview or "application/octet-stream",
               "Content-Disposition": "inline" if preview else "attachment", "ETag": etag, "Accept-Ranges": "bytes"}
    if etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
    try:
        span = byte_range(request.headers.get("Range"), size, request.headers.get("If-Range"), etag)
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = span or (0, size)
    response = web.StreamResponse(status=206 if span else 200, headers=headers)
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response.content_length = end - start
    try:
        pieces = await blobs.open_range(sha256, start, end)  # BlobNotFound here, before the reply starts
    except BlobUnavailable as exc:
        _note_unavailable(exc)
        raise Unavailable(str(exc), retry_after_s=exc.retry_after_s) from None
    async with aclosing(pieces):
        await response.prepare(request)
        if request.method != "HEAD":
            async for piece in pieces:
                await response.write(piece)
    await response.write_eof()
    return response
