"""The archive object: many metric chunks of one run, each compressed alone, in one content-addressed blob.

Format (version 1), written by :func:`build_object`::

    MAGIC                    b"ml-dash archive 1\\n" (18 bytes): what the garbage collector checks
                             before it deletes a blob (archive.py)
    frame, frame, ...        one zstd frame per archived chunk: the chunk's msgpack blocks (chunks.py)

The database keeps an index row per archived chunk (its metric, first index, row count, the object's
sha256 and the frame's offset and length), so a read fetches one frame by byte range and decompresses
it alone: the object's size never costs a read. A frame records its content size (zstd's header), so
decompression is bounded by :data:`MAX_FRAME_BYTES`.

Before packing, the chunks of one window of ``CHUNK_ROWS`` indices that follow each other are merged
into one (:func:`merge_contiguous`): a run logged in small batches stored a chunk per batch, and its
archive holds one frame per window instead (fewer index rows, better compression, the same rows).

A frame's index row also takes the finest summaries (width 64, ``buckets.SUMMARY_WIDTHS``) of the
windows wholly inside its rows (:meth:`Frame.summarised_windows`), out of ``metric_summaries``: one
row of the database per 4,096 archived rows instead of 64, which is what gets the database under a
fifth of the metric bytes it held (on PostgreSQL a summary row cost about 100 bytes of tuple and
index beside its ~110 bytes). They stay in the database, not in the object, so that the buckets of a
zoomed chart never wait for the blob store. Written by :func:`bundle_summaries`::

    zstd frame of msgpack [window, summary, window, summary, ...]    windows ascending, each summary
                                                                     the stored bytes (chunks.py)
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import zstandard

from .buckets import SUMMARY_WIDTHS
from .chunks import CHUNK_ROWS

MAGIC = b"ml-dash archive 1\n"
#: zstd level: level 3 packs msgpack blocks of floats about as well as 9 at a third of the time.
ZSTD_LEVEL = 3
#: The largest chunk a frame may decode to: a chunk holds at most CHUNK_ROWS rows of a request's
#: bounded width, far below this; a frame claiming more is damage, not data.
MAX_FRAME_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk as the database holds it: rows ``first .. first + count - 1`` of ``metric``."""

    metric: str
    first: int
    count: int
    blocks: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    """A chunk as archived: rows ``first .. first + count - 1`` of ``metric`` in the object's bytes
    ``offset .. offset + length - 1``; ``sources`` are the (first, count) of the database chunks it replaces."""

    metric: str
    first: int
    count: int
    offset: int
    length: int
    sources: tuple[tuple[int, int], ...]

    def summarised_windows(self) -> tuple[int, int]:
        """(first, end) of the windows of the finest summary width that lie wholly within this frame's
        rows: no later row can fall in them, so their summaries move into the frame's index row; a
        window at either edge of the frame keeps its own, which rows of the database may share or continue."""
        width = SUMMARY_WIDTHS[0]
        return -(-self.first // width), (self.first + self.count) // width


def merge_contiguous(chunks: list[StoredChunk]) -> list[tuple[StoredChunk, tuple[tuple[int, int], ...]]]:
    """``chunks`` (in (metric, first) order) with each run of chunks that follow each other within one
    window of ``CHUNK_ROWS`` indices merged into one, each with the (first, count) it was made of."""
    out: list[tuple[StoredChunk, tuple[tuple[int, int], ...]]] = []
    group: list[StoredChunk] = []
    for chunk in chunks:
        if group and (chunk.metric != group[-1].metric or chunk.first != group[-1].first + group[-1].count
                      or chunk.first // CHUNK_ROWS != group[0].first // CHUNK_ROWS):
            out.append(_merged(group))
            group = []
        group.append(chunk)
    if group:
        out.append(_merged(group))
    return out


def _merged(group: list[StoredChunk]) -> tuple[StoredChunk, tuple[tuple[int, int], ...]]:
    sources = tuple((c.first, c.count) for c in group)
    if len(group) == 1:
        return group[0], sources
    # a chunk is a msgpack array of blocks: the merged one is one array of all their blocks, made of
    # their bytes after each array's header (no block is decoded)
    total, bodies = 0, []
    for chunk in group:
        unpacker = msgpack.Unpacker()
        unpacker.feed(chunk.blocks)
        total += unpacker.read_array_header()
        bodies.append(chunk.blocks[unpacker.tell():])
    blocks = msgpack.Packer().pack_array_header(total) + b"".join(bodies)
    first = group[0]
    return StoredChunk(first.metric, first.first, sum(c.count for c in group), blocks), sources


def build_object(chunks: list[StoredChunk]) -> tuple[bytes, list[Frame]]:
    """The object's bytes holding ``chunks`` (merged where they follow each other), and where each frame is."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    parts, frames, offset = [MAGIC], [], len(MAGIC)
    for chunk, sources in merge_contiguous(chunks):
        frame = compressor.compress(chunk.blocks)
        frames.append(Frame(chunk.metric, chunk.first, chunk.count, offset, len(frame), sources))
        parts.append(frame)
        offset += len(frame)
    return b"".join(parts), frames


def bundle_summaries(windows: list[tuple[int, bytes]]) -> bytes | None:
    """The index row's bundle of ``windows`` ((window, stored summary), ascending); None for none."""
    if not windows:
        return None
    flat: list[int | bytes] = []
    for window, summary in windows:
        flat += (window, summary)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(msgpack.packb(flat))


def unbundle_summaries(bundle: bytes) -> list[tuple[int, bytes]]:
    """(window, stored summary) of an index row's bundle, ascending."""
    flat = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(bundle, max_output_size=MAX_FRAME_BYTES))
    return list(zip(flat[::2], flat[1::2]))


def decode_frame(frame: bytes) -> bytes:
    """A frame's chunk (msgpack blocks); ``zstandard.ZstdError`` when it is no whole frame."""
    return zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_FRAME_BYTES)
