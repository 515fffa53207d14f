"""The file routes: streamed uploads checked against their sha256, listings, and downloads that never
run as part of the UI."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ml_dash.format.jsonlines import DecodeError, loads
from ml_dash.format.naming import clean_relative_path

from .. import ui
from ..access import BLOBS, CONFIG, GATE, LOCAL_INDEX, STORAGE, caller, experiment_of, run_prefix
from ..blobs.fs import BlobError
from ..errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, json_response
from ..http.admission import BodyHold
from ..http.bodies import body_chunks

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
    # streamed to disk a piece at a time: the piece in hand is what the upload holds of the body budget
    async with request.app[GATE].bodies.hold(0, who) as hold:
        pieces = _held_pieces(body_chunks(request, FILE_PIECE_BYTES, config.body_idle_timeout_s), hold)
        try:
            size = await request.app[BLOBS].put_stream(pieces, declared, config.max_file_bytes)
        except BlobError as exc:
            raise (PayloadTooLarge if exc.status == 413 else BadRequest)(str(exc)) from None
    await request.app[STORAGE].put_file(owner, project, name, path, declared, size, entry)
    return json_response({"path": path, "sha256": declared, "sizeBytes": size})


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
    exp = await experiment_of(request)
    path = _file_path(request)
    for entry in await request.app[STORAGE].files(exp["id"]):
        if entry["path"] == path:
            try:
                # a stored file never runs as part of the UI: sandboxed, never sniffed, downloaded
                # unless the UI asks to preview a kind it shows as text or as an image
                preview = request.query.get("preview") == "1" and _preview_type(path)
                headers = {"Content-Security-Policy": ui.FILE_CSP,
                           "Content-Type": preview or "application/octet-stream",
                           "Content-Disposition": "inline" if preview else "attachment"}
                local = request.app.get(LOCAL_INDEX)
                where = local.file_path(entry["checksum"]) if local is not None else None
                return web.FileResponse(where or request.app[BLOBS].path(entry["checksum"]), headers=headers)
            except BlobError as exc:
                raise BadRequest(str(exc)) from None
    raise NotFound(f"no file {path!r} in {exp['prefix']}")
