"""The bulk upload body: msgpack, zstd-compressed, many streams of one run per request.

Format version 2 (a msgpack map)::

    {"v": 2,
     "identity": {"run_id": "9f1c...", "writer_id": "47ab..."},                             # required
     "run": {"status": "RUNNING", "description": ..., "tags": [...], "metadata": {...},
             "created_at": ..., "started_at": ..., "ended_at": ..., "status_reason": ...,
             "hostname": ...},                                                               # optional
     "params": {"model.lr": 0.001, ...},                                                     # optional, latest wins
     "docs_rev": 1796672400123456789,                            # with run or params: their snapshot's stamp
     "streams": {
        "metrics/train": {"start": 0, "blocks": [
            {"keys": ["loss", "step", "_ts"], "cols": [[0.5, 0.4], [0, 1], [1795.1, 1795.2]],
             "created": [["2026-11-26T05:52:17.001761Z", 2]]}]},
        "logs": {"start": 0, "rows": [{"timestamp": ..., "level": ..., "message": ..., "metadata": {...}}]},
        "metrics/val": {"start": 7, "void": 1, "reason": "unencodable"}}}

Metric rows are columnar: consecutive rows with the same keys form one block,
so zstd sees runs of similar numbers and a missing key stays distinct from
None. ``created`` is run-length encoded. Indices are implicit: ``start`` plus
the row's position. NaN and infinities are plain msgpack floats.

Identity (version 2): ``run_id`` names the run (created with its first run
directory, shared by every directory that continues it) and ``writer_id`` the
start of a directory that wrote these rows (each start of a directory has its own). The server keeps, per stream, which writer
stored which index range: a resend of the same writer's rows is acknowledged
again without storing anything, while different rows under stored indices
(another directory, another run) get a 409 with ``conflict``, never a 2xx.

Documents: ``run`` and ``params`` are a snapshot of experiment.json and parameters.json, stamped with
``docs_rev`` (an int below 2^63: the client's wall clock in nanoseconds, strictly increasing in one
process, and above the highest stamp the server acknowledged from the directory, kept in its upload
cursor, so that a later ``ml-dash sync`` stamps above the run's own process whatever its clock). Bodies can reach the server out of order (a request the client
gave up on may still be stored after the one that replaced it), so the server applies a body's
documents only when their stamp is at least that of the ones it applied last from the same writer
(ml_dash/server/storage/document_order.py); its rows are stored either way.

A *void* (``"void": n``) tells the server that rows ``start .. start+n-1`` are
set aside by the client (kept on its disk, counted there): the server records
the range, so the stream stays contiguous and later rows are stored.

Replies: 2xx ``{"acked": {stream: rows stored}, "run_streams": n, "run_rows": n}``;
409 with the same fields for a batch that starts past the stored rows; 409
``{"conflict": {...}}``; 4xx ``{"error", "stream"?, "index"?}``. A body with
``"reply": "named"`` (this client sends it always) gets in ``acked`` the streams
it names, and only those: a reply costs what its request does, never what the
run holds (a run may hold 100,000 streams; a reply listing them took 0.14 s of
the server and several MB for each small batch). A stream a reply does not name
is unchanged, never "0 stored". ``run_streams`` and ``run_rows`` (the run's
streams, and its stored rows summed over them) let the client see that the
server holds less than it acknowledged (a server that lost its data): it then
asks for every count once (``GET /api/v1/experiments/{prefix}``).

Older clients did not send ``reply`` and took a stream missing from ``acked``
for "0 stored": they would rewind it and send it again, back and forth between
batches, and one whose rewind of a short stream found the end of its file (a
bug of theirs, agent/backlog.py) sent its next row under an index the server
took for a resend, never storing it. So for them the server lists every stream
of a run of at most ``BodyLimits.max_streams`` streams (a reply no larger than
a request's worth), and refuses whole, with 426 and a reason, a body that would
leave a run with more: such a client stops that upload and keeps its rows on
disk, pending, until an upgraded one sends them. Older servers (no
``run_rows`` in the reply) list every stream, and this client reads such a
reply as it did.

Bodies are compressed with zstd (``Content-Encoding: zstd``); gzip and
identity are accepted. :func:`decode_body` caps the decompressed size, and
the decompressed bytes per byte on the wire (:class:`BodyLimits`), so a small
bomb cannot expand into memory nor claim millions of rows of nils; a client
whose rows compress better than that sends them uncompressed
(:func:`wire_body`). One request names at most ``BodyLimits.max_streams``
streams.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

import msgpack
import msgspec
import zstandard

from .values import to_builtin

WIRE_VERSION = 2
_data = itemgetter("data")
_created = itemgetter("createdAt")
CONTENT_TYPE = "application/vnd.ml-dash.bulk+msgpack"
_ZSTD_LEVEL = 3


class BodyError(ValueError):
    """A request body that is malformed (400), too large (413) or oddly encoded (415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: What a body says to ask for a reply that names only its own streams (see "Replies").
NAMED_REPLY = {"reply": "named"}


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """An ingest reply as the client reads it: the stored count of each stream it names; whether it names
    every stream of the run (an older server's reply, without ``run_rows``); and the run's stored rows."""

    counts: dict[str, int]
    complete: bool
    run_rows: int | None


def acknowledged(reply: dict[str, Any]) -> Acknowledged:
    """The counts of an ingest reply (2xx or 409); anything malformed in it (a hostile or broken server)
    is left out."""
    acked = reply.get("acked")
    counts = {k: v for k, v in acked.items() if isinstance(k, str) and _is_count(v)} if isinstance(acked, dict) else {}
    run_rows = reply.get("run_rows")
    if not _is_count(run_rows):
        return Acknowledged(counts, True, None)
    return Acknowledged(counts, False, run_rows)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def stream_counts(reply: dict[str, Any] | None) -> dict[str, int]:
    """The rows a server reply says it stores per stream (``{"streams": {name: count}}``); anything
    else in it (a hostile or broken server) is left out."""
    streams = reply.get("streams") if isinstance(reply, dict) else None
    if not isinstance(streams, dict):
        return {}
    return {k: v for k, v in streams.items() if isinstance(k, str) and _is_count(v)}


#: Pages of a run's streams a reader follows (1,000 streams each: ten times what a run may hold).
MAX_STREAM_PAGES = 1_000


def stream_page(after: str, page: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """One page of a run's streams (``GET .../streams?after=``, or the run document's first page):
    (stream -> stored rows, metric -> latest values, the name to ask the next page after). The next name
    is None at the end and whenever it does not come after ``after`` (names only grow: a server that pages
    backwards or in place is not followed round a loop). TypeError for a page without a map of streams."""
    page = page if isinstance(page, dict) else {}
    streams, latest, cut = page.get("streams"), page.get("latest"), page.get("next", page.get("streams_next"))
    if not isinstance(streams, dict):
        raise TypeError("a page of streams without a map of streams")
    return streams, latest if isinstance(latest, dict) else {}, cut if isinstance(cut, str) and cut > after else None


def metric_blocks(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Columnar blocks from metric records ``{"data": {...}, "createdAt": ...}`` in index order."""
    rows = list(rows)
    return _blocks(list(map(_data, rows)), list(map(_created, rows)))


def blocks_from_fields(datas: list[dict[str, Any]], created_at: str) -> list[dict[str, Any]]:
    """Columnar blocks straight from the agent's field dicts (one ``createdAt`` for all of them)."""
    return _blocks(datas, [created_at] * len(datas))


def _blocks(datas: list[dict[str, Any]], created: list[Any]) -> list[dict[str, Any]]:
    """One block per run of rows with the same keys, built with C-level iterators (map,
    itemgetter, groupby): this runs for every row uploaded. A training loop usually logs the same
    keys every step, which takes the one-block path: every dict has as many keys as the first
    and holds each of them (itemgetter raises KeyError otherwise), so all have the same keys."""
    if not datas:
        return []
    keys = list(datas[0])
    width = len(keys)
    if min(map(len, datas)) == width == max(map(len, datas)):
        try:
            return [columns_block(keys, [list(map(itemgetter(k), datas)) for k in keys], created)]
        except KeyError:
            pass
    blocks, position = [], 0
    for key_set, group in groupby(map(tuple, datas)):
        count = len(list(group))
        rows = datas[position:position + count]
        blocks.append(columns_block(list(key_set), [list(map(itemgetter(k), rows)) for k in key_set],
                                    created[position:position + count]))
        position += count
    return blocks


def columns_block(keys: list[str], cols: list[list[Any]], created: list[Any]) -> dict[str, Any]:
    """A block from its columns and the rows' ``createdAt`` values (run-length encoded here)."""
    if created.count(created[0]) == len(created):
        stamps = [[created[0], len(created)]]
    else:
        stamps = [[stamp, len(list(run))] for stamp, run in groupby(created)]
    return {"keys": keys, "cols": cols, "created": stamps}


def metric_rows(start: int, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of :func:`metric_blocks` again, with their indices (``start`` onwards)."""
    rows: list[dict[str, Any]] = []
    index = start
    for block in blocks:
        keys, cols = block["keys"], block["cols"]
        stamps = [stamp for stamp, count in block["created"] for _ in range(count)]
        for position, created in enumerate(stamps):
            rows.append({"index": index, "data": {k: col[position] for k, col in zip(keys, cols)}, "createdAt": created})
            index += 1
    return rows


def block_rows(block: dict[str, Any]) -> int:
    return sum(count for _, count in block["created"])


def trim_blocks(blocks: list[dict[str, Any]], skip: int, take: int | None = None) -> list[dict[str, Any]]:
    """The same blocks without their first ``skip`` rows, and (given ``take``) only the next ``take``:
    a page of a chunk costs the page, not the chunk, when it is turned into rows."""
    out = []
    left_to_take = take
    for block in blocks:
        if left_to_take is not None and left_to_take <= 0:
            break
        rows = block_rows(block)
        if skip >= rows:
            skip -= rows
            continue
        end = rows if left_to_take is None else min(rows, skip + left_to_take)
        if skip or end < rows:
            block = {"keys": block["keys"], "cols": [col[skip:end] for col in block["cols"]],
                     "created": _slice_runs(block["created"], skip, end)}
        if left_to_take is not None:
            left_to_take -= end - skip
        skip = 0
        out.append(block)
    return out


def _slice_runs(runs: list[list[Any]], start: int, end: int) -> list[list[Any]]:
    """Rows ``start:end`` of run-length encoded ``[value, count]`` pairs, still run-length encoded."""
    out, position = [], 0
    for value, count in runs:
        low, high = max(start, position), min(end, position + count)
        if low < high:
            out.append([value, high - low])
        position += count
        if position >= end:
            break
    return out


#: msgspec's msgpack encoder writes the same bytes as ``msgpack.packb(use_bin_type=True)`` at about
#: a fifth of the cost (0.14 against 0.72 µs per 4-scalar row, measured on a 131k-row block).
_packer = msgspec.msgpack.Encoder(enc_hook=to_builtin)


def pack(value: Any) -> bytes:
    """msgpack bytes of ``value``; wrapped in ``msgspec.Raw`` they go into a body as they are."""
    return _packer.encode(value)


def encode_body(body: dict[str, Any]) -> bytes:
    """msgpack then zstd (numpy scalars, which the agent's rows may hold, become Python numbers)."""
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(_packer.encode(body))


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Caps on what one request may carry: the server refuses a body past any of them (413 or 400 naming
    it), and the client builds none that would be (agent/upload/batches.py)."""

    # 16 MiB on the wire and after decompression: twice what a client sends at most (pending.BATCH_BYTES)
    max_compressed_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 16 * 1024 * 1024
    # Decompressed bytes per byte on the wire, past the first 64 KiB. A megabyte of nils or of one
    # repeated value compresses to a few hundred bytes, yet every byte of it is a value the server decodes,
    # checks and stores: a 2 KiB body once claimed 60 columns of 1,000,000 rows. Real bodies stay far
    # below (rows of random floats 1.5x, log lines 20-75x, rows of 60 constant fields 150x), and the
    # client sends a body that is not uncompressed (wire_body).
    max_inflation: int = 256
    inflation_floor_bytes: int = 64 * 1024
    # Streams one request may carry: each costs the server a handful of statements and a summary per
    # width, whatever its rows (one 79 KiB body once named 100,000 new streams).
    max_streams: int = 1_000
    # Lengths a container may declare, checked before anything is allocated: a column holds at most
    # the events of one request; maps are run fields, params, streams, a row's fields.
    max_array_len: int = 1_000_000
    max_map_len: int = 131_072
    max_str_len: int = 1 << 20  # a metric row or a log line (ml_dash/format/values.py MAX_ROW_BYTES)

    def decompressed_cap(self, wire_bytes: int) -> int:
        """The most bytes a body of ``wire_bytes`` may decompress to."""
        return min(self.max_decompressed_bytes, max(self.inflation_floor_bytes, self.max_inflation * wire_bytes))


LIMITS = BodyLimits()


def wire_body(body: dict[str, Any], limits: BodyLimits = LIMITS) -> tuple[bytes, str]:
    """(the bytes to send, their Content-Encoding): zstd, or the msgpack itself when it compresses so well
    that the server would refuse it compressed (more than ``limits.max_inflation`` times): the server's
    cost follows the values, so a body of them pays for its wire bytes."""
    packed = _packer.encode(body)
    compressed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(packed)
    if len(packed) > limits.decompressed_cap(len(compressed)):
        return packed, "identity"
    return compressed, "zstd"


def decode_body(raw: bytes, content_encoding: str | None, limits: BodyLimits = LIMITS) -> dict[str, Any]:
    """Decompress (bounded) and unpack a bulk body; raises :class:`BodyError` with its HTTP status."""
    if len(raw) > limits.max_compressed_bytes:
        raise BodyError(413, f"body of {len(raw)} bytes exceeds {limits.max_compressed_bytes}")
    encoding = (content_encoding or "identity").strip().lower()
    cap = limits.decompressed_cap(len(raw))
    if encoding == "zstd":
        payload = _unzstd(raw, cap, limits)
    elif encoding in ("gzip", "x-gzip"):
        payload = _gunzip(raw, cap, limits)
    elif encoding == "identity":
        payload = raw
        if len(payload) > limits.max_decompressed_bytes:
            raise BodyError(413, "body too large")
    else:
        raise BodyError(415, f"unsupported Content-Encoding {content_encoding!r}; use zstd, gzip or identity")
    try:
        # msgpack's unpacker has a fixed nesting stack: deeper bodies raise StackError (400)
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_array_len=limits.max_array_len,
                               max_map_len=limits.max_map_len, max_str_len=limits.max_str_len,
                               max_bin_len=limits.max_str_len, max_ext_len=0, ext_hook=_no_extensions)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise BodyError(400, f"body is not valid msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(400, "body must be a msgpack map")
    if body.get("v") != WIRE_VERSION:
        raise BodyError(400, f"unsupported wire version {body.get('v')!r}; this server speaks {WIRE_VERSION}")
    return body


def _no_extensions(code: int, data: bytes) -> Any:
    """msgpack's extension types are no part of the format; ``max_ext_len=0`` still lets an empty one by."""
    raise ValueError(f"extension type {code} is not part of the wire format")


def _unzstd(raw: bytes, limit: int, limits: BodyLimits) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BodyError(400, f"body is not valid zstd: {exc}") from None
    if len(out) > limit:
        raise _too_large(len(raw), limit, limits)
    return out


def _gunzip(raw: bytes, limit: int, limits: BodyLimits) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(len(raw), limit, limits)
    return out


def _too_large(wire_bytes: int, limit: int, limits: BodyLimits) -> BodyError:
    if limit >= limits.max_decompressed_bytes:
        return BodyError(413, f"decompressed body exceeds {limit} bytes")
    return BodyError(413, f"decompressed body exceeds {limit} bytes: at most {limits.max_inflation} times its "
                          f"{wire_bytes} bytes on the wire (or {limits.inflation_floor_bytes}); values this repetitive "
                          "cost the server far more than they cost to send: send them uncompressed or fewer at a time")
