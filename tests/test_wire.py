"""The bulk wire format: columnar blocks, compression, bounded decoding."""

from __future__ import annotations

import gzip
import json
import math
import random
import struct
import tracemalloc
import zlib

import msgpack
import pytest
import zstandard

from ml_dash.format.wire import (
    LIMITS,
    WIRE_VERSION,
    BodyError,
    BodyLimits,
    block_rows,
    blocks_from_fields,
    decode_body,
    encode_body,
    metric_blocks,
    metric_rows,
    stream_counts,
    stream_page,
    trim_blocks,
    wire_body,
)
from ml_dash.format.wire import acknowledged as read_acknowledged


def test_blocks_round_trip_rows_with_changing_keys_and_none() -> None:
    rows = [
        {"data": {"loss": 0.5, "_ts": 1.0}, "createdAt": "a"},
        {"data": {"loss": None, "_ts": 2.0}, "createdAt": "a"},
        {"data": {"loss": math.inf, "acc": 0.9, "_ts": 3.0}, "createdAt": "b"},
        {"data": {"acc": 0.8, "_ts": 4.0}, "createdAt": "b"},
    ]
    blocks = metric_blocks(rows)
    assert [b["keys"] for b in blocks] == [["loss", "_ts"], ["loss", "acc", "_ts"], ["acc", "_ts"]]
    assert blocks[0]["created"] == [["a", 2]]
    back = metric_rows(7, msgpack.unpackb(msgpack.packb(blocks)))
    assert [r["index"] for r in back] == [7, 8, 9, 10]
    assert [r["data"] for r in back] == [r["data"] for r in rows]  # None stays None, missing stays missing
    assert [r["createdAt"] for r in back] == ["a", "a", "b", "b"]


def test_zstd_and_gzip_bodies_decode_to_the_same_map() -> None:
    body = {"v": 2, "streams": {}}
    assert decode_body(encode_body(body), "zstd") == body
    assert decode_body(gzip.compress(msgpack.packb(body)), "gzip") == body
    assert decode_body(msgpack.packb(body), None) == body


def test_limits_give_the_right_status() -> None:
    small = BodyLimits(max_compressed_bytes=10_000, max_decompressed_bytes=1000)
    with pytest.raises(BodyError) as bomb:
        decode_body(gzip.compress(b"\0" * 100_000), "gzip", small)
    assert bomb.value.status == 413
    with pytest.raises(BodyError) as big:
        decode_body(b"\0" * 20_000, "identity", small)
    assert big.value.status == 413
    with pytest.raises(BodyError) as enc:
        decode_body(b"", "compress", small)
    assert enc.value.status == 415


def test_a_body_may_decompress_to_at_most_max_inflation_times_its_wire_size_past_a_floor() -> None:
    nils = msgpack.packb({"v": 2, "streams": {"metrics/m": {"start": 0, "blocks": [
        {"keys": ["a"], "cols": [[None] * 500_000], "created": [["c", 500_000]]}]}}})
    packed = gzip.compress(nils)
    assert len(nils) > LIMITS.max_inflation * len(packed)
    with pytest.raises(BodyError) as bomb:
        decode_body(packed, "gzip")
    assert bomb.value.status == 413 and f"at most {LIMITS.max_inflation} times its {len(packed)} bytes" in str(bomb.value)
    assert decode_body(nils, "identity")["streams"]["metrics/m"]["start"] == 0  # the same bytes, uncompressed
    floor = msgpack.packb({"v": 2, "pad": [None] * 60_000})  # within the floor: however well it compresses
    assert decode_body(gzip.compress(floor), "gzip")["v"] == 2


@pytest.mark.slow  # a long scenario: left out of the fast ring (docs/development.md)
def test_rows_that_compress_past_the_bound_go_uncompressed_and_others_in_zstd() -> None:
    def body(fields: int) -> dict:
        datas = [{**{f"z{k}": 0 for k in range(fields)}, "_ts": 1795663131.888 + i * 0.001} for i in range(5000)]
        return {"v": 2, "streams": {"metrics/z": {"start": 0, "blocks": blocks_from_fields(datas, "c")}}}

    usual, usual_encoding = wire_body(body(4))
    assert usual_encoding == "zstd" and decode_body(usual, "zstd") == body(4)
    zeros, zeros_encoding = wire_body(body(600))  # 600 zeros a row: zstd would shrink them 1,000 times
    with pytest.raises(BodyError):
        decode_body(encode_body(body(600)), "zstd")
    assert zeros_encoding == "identity" and decode_body(zeros, "identity") == body(600)


def test_columnar_zstd_is_a_fraction_of_json() -> None:
    rows = [{"index": i, "data": {"loss": 1 / (i + 1), "acc": 0.9, "lr": 1e-3, "grad": 2.0, "step": i, "_ts": 1795663131.0 + i * 0.001},
             "createdAt": "2026-11-26T00:00:00.000000Z"} for i in range(10_000)]
    as_json = sum(len(json.dumps(r)) + 1 for r in rows)
    wire = len(encode_body({"v": 2, "streams": {"metrics/train": {"start": 0, "blocks": metric_blocks(rows)}}}))
    assert wire < 0.25 * as_json, (wire, as_json)


def test_trimming_blocks_drops_exactly_the_first_rows() -> None:
    from ml_dash.format.wire import trim_blocks

    rows = [{"data": {"a": i} if i < 3 else {"b": i}, "createdAt": "x" if i < 2 else "y"} for i in range(6)]
    blocks = metric_blocks(rows)
    for skip in range(7):
        assert metric_rows(skip, trim_blocks(blocks, skip)) == metric_rows(0, blocks)[skip:]



def test_trim_blocks_takes_any_slice_of_any_blocks_as_the_rows_would_be() -> None:
    from ml_dash.format.wire import metric_blocks, metric_rows, trim_blocks

    rows = [{"index": i, "data": {"step": i, **({"extra": i} if i % 7 == 0 else {})},
             "createdAt": f"t{i // 3}"} for i in range(40)]
    blocks = metric_blocks(rows)
    assert len(blocks) > 1  # rows of two shapes: several blocks, several createdAt runs each
    for skip in range(0, 42, 5):
        for take in (None, 0, 1, 3, 17, 100):
            trimmed = trim_blocks(blocks, skip, take)
            want = rows[skip:] if take is None else rows[skip:skip + take]
            assert metric_rows(skip, trimmed) == want, (skip, take)
            # the counts say the same rows (a stored chunk's count is their sum), and nothing is empty:
            # no block without rows, no createdAt run of no rows (or fewer)
            assert sum(block_rows(b) for b in trimmed) == len(want), (skip, take)
            assert all(b["created"] and all(count >= 1 for _, count in b["created"]) for b in trimmed), (skip, take)


@pytest.mark.parametrize(("body", "said"), [
    ({"v": WIRE_VERSION, "x": msgpack.ExtType(1, b"ab")}, "not valid msgpack"),  # no extension types at all
    ({"v": WIRE_VERSION, "x": msgpack.ExtType(1, b"a")}, "not valid msgpack"),
    ({"v": WIRE_VERSION, "x": msgpack.ExtType(1, b"")}, "not valid msgpack"),
    ({"v": WIRE_VERSION, 1: "x"}, "not valid msgpack"),  # map keys are text
    ({"v": WIRE_VERSION + 1}, "unsupported wire version"),  # a newer client's body, not guessed at
    ({"v": WIRE_VERSION - 1}, "unsupported wire version"),
])
def test_a_body_outside_the_wire_format_is_refused_naming_why(body: dict, said: str) -> None:
    with pytest.raises(BodyError) as refused:
        decode_body(msgpack.packb(body, strict_types=False), "identity")
    assert refused.value.status == 400 and said in str(refused.value)


def test_an_ingest_reply_is_read_for_its_counts_and_nothing_malformed_in_it() -> None:
    reply = read_acknowledged({"acked": {"metrics/a": 3, "metrics/b": -1, "metrics/c": True, 4: 1}, "run_rows": 7})
    assert (reply.counts, reply.complete, reply.run_rows) == ({"metrics/a": 3}, False, 7)
    older = read_acknowledged({"acked": {"logs": 0}})  # no run_rows: it names every stream of the run
    assert (older.counts, older.complete, older.run_rows) == ({"logs": 0}, True, None)
    assert read_acknowledged({"acked": {}, "run_rows": -1}).run_rows is None


def test_a_page_of_streams_is_followed_only_forwards() -> None:
    page = {"streams": {"metrics/b": 2}, "latest": {"b": {"x": 1}}, "next": "metrics/b"}
    assert stream_page("metrics/a", page) == ({"metrics/b": 2}, {"b": {"x": 1}}, "metrics/b")
    assert stream_page("metrics/b", page)[2] is None  # in place: not followed round a loop
    assert stream_page("metrics/c", page)[2] is None  # backwards
    assert stream_page("", {"streams": {}, "streams_next": "logs"})[2] == "logs"  # the run document's first page
    with pytest.raises(TypeError):
        stream_page("", {"streams": [1]})


def test_the_decompression_bound_is_the_readmes_16_mib_and_256_times_past_64_kib() -> None:
    """The literal bounds README.md states, not the constants (a changed constant must fail here)."""
    assert LIMITS.decompressed_cap(100) == 64 * 1024  # within the floor, however well it compresses
    assert LIMITS.decompressed_cap(1_000) == 256_000
    assert LIMITS.decompressed_cap(65_536) == 16 * 1024 * 1024
    assert LIMITS.decompressed_cap(10**9) == 16 * 1024 * 1024


@pytest.mark.parametrize(("size", "kept"), [(1 << 20, True), ((1 << 20) + 1, False)])
def test_a_text_of_one_mib_decodes_and_one_byte_more_is_refused(size: int, kept: bool) -> None:
    """A metric row or a log line is at most 1 MiB (README): a string that long must reach the checks."""
    body = msgpack.packb({"v": WIRE_VERSION, "text": "x" * size})
    if kept:
        assert len(decode_body(body, "identity")["text"]) == size
    else:
        with pytest.raises(BodyError) as refused:
            decode_body(body, "identity")
        assert refused.value.status == 400


@pytest.mark.parametrize(("raw", "encoding", "status", "said"), [
    (msgpack.packb([1, 2]), "identity", 400, "body must be a msgpack map"),
    (b"not zstd at all", "zstd", 400, "body is not valid zstd"),
    (b"not gzip at all", "gzip", 400, "body is not valid gzip"),
    (msgpack.packb({"v": 2}), "lz4", 415, "unsupported Content-Encoding"),  # sorts after identity
    (msgpack.packb({"v": 2}), "br", 415, "unsupported Content-Encoding"),  # and before it
])
def test_each_bad_body_gets_its_status_and_says_what_is_wrong(raw: bytes, encoding: str, status: int,
                                                             said: str) -> None:
    with pytest.raises(BodyError) as refused:
        decode_body(raw, encoding)
    assert refused.value.status == status and said in str(refused.value)


def test_a_reply_of_stream_counts_keeps_only_valid_counts() -> None:
    assert stream_counts({"streams": {"logs": 0, "metrics/a": 5, "metrics/b": -1, "metrics/c": True, 3: 1}}) == {
        "logs": 0, "metrics/a": 5}
    assert stream_counts({"streams": [1]}) == {} and stream_counts(None) == {} and stream_counts({}) == {}


def test_trimming_a_whole_first_block_leaves_the_others_as_they_were() -> None:
    rows = [{"data": {"a": i} if i < 3 else {"b": i}, "createdAt": "x"} for i in range(6)]
    blocks = metric_blocks(rows)
    assert len(blocks) == 2 and trim_blocks(blocks, 3) == blocks[1:]  # no empty block left in its place


def test_a_single_row_makes_one_block_and_comes_back_whole() -> None:
    rows = [{"data": {"loss": 0.5, "step": 1}, "createdAt": "x"}]
    blocks = metric_blocks(rows)
    assert blocks == [{"keys": ["loss", "step"], "cols": [[0.5], [1]], "created": [["x", 1]]}]
    assert [r["data"] for r in metric_rows(7, blocks)] == [rows[0]["data"]]


def test_a_body_of_16_mib_on_the_wire_is_read_and_one_byte_more_is_not() -> None:
    """README: 16 MiB a body. At the bound the bytes are decoded (zeros: not a map, so 400); past it, 413."""
    with pytest.raises(BodyError) as at_bound:
        decode_body(b"\0" * (16 * 1024 * 1024), "identity")
    assert at_bound.value.status == 400
    with pytest.raises(BodyError) as past:
        decode_body(b"\0" * (16 * 1024 * 1024 + 1), "identity")
    assert past.value.status == 413


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_compressed_body_that_inflates_to_exactly_its_cap_is_read_and_one_byte_more_is_not(encoding: str) -> None:
    """A small body may inflate to 64 KiB (README): exactly that is read; a byte more is a 413."""
    compress = gzip.compress if encoding == "gzip" else zstandard.ZstdCompressor().compress
    for pad, expected in ((65_525, 65_536), (65_526, 65_537)):  # a map {"v", "pad"} of that many bytes
        packed = msgpack.packb({"v": WIRE_VERSION, "pad": "x" * pad})
        assert len(packed) == expected and len(compress(packed)) < 256  # within the floor's reach
        if expected == 64 * 1024:
            assert len(decode_body(compress(packed), encoding)["pad"]) == pad
        else:
            with pytest.raises(BodyError) as refused:
                decode_body(compress(packed), encoding)
            assert refused.value.status == 413


def _bomb(encoding: str, raw_bytes: int) -> bytes:
    """``raw_bytes`` zeros compressed, made a MiB at a time (the zeros are never held whole)."""
    zeros = b"\0" * (1024 * 1024)
    if encoding == "gzip":
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join([*(packer.compress(zeros) for _ in range(raw_bytes // len(zeros))), packer.flush()])
    writer = zstandard.ZstdCompressor().compressobj()
    return b"".join([*(writer.compress(zeros) for _ in range(raw_bytes // len(zeros))), writer.flush()])


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_a_compression_bomb_is_refused_without_being_inflated_past_the_16_mib_cap(encoding: str) -> None:
    """README: a body decompresses to at most 16 MiB. A 96 MiB bomb is refused with a 413, and decoding it
    holds about the cap, never the bomb (a read without a limit would inflate all of it, then refuse)."""
    bomb = _bomb(encoding, 96 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024  # each byte on the wire inflates to at least ~100
    tracemalloc.start()
    try:
        with pytest.raises(BodyError) as refused:
            decode_body(bomb, encoding)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert peak < 40 * 1024 * 1024, f"decoding a {len(bomb)}-byte {encoding} bomb held {peak} bytes at its peak"
    # the error names the bound that refused it: 16 MiB in all, or 256 times the wire bytes (past 64 KiB)
    if 256 * len(bomb) >= 16 * 1024 * 1024:
        assert str(refused.value) == "decompressed body exceeds 16777216 bytes"
    else:
        assert f"exceeds {256 * len(bomb)} bytes: at most 256 times its {len(bomb)} bytes" in str(refused.value)


def test_rows_whose_first_row_has_fewer_keys_than_later_ones_keep_every_value() -> None:
    """The one-block path is for rows that all have the first row's keys; a later row with a key more
    must not lose it."""
    fields = [{"step": 0}, {"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "acc": 0.9}]
    blocks = blocks_from_fields(fields, "c")
    assert [r["data"] for r in metric_rows(0, blocks)] == fields


def _gzip_of_exact_size(payload: bytes, wire_bytes: int) -> bytes:
    """``payload`` as a gzip member of exactly ``wire_bytes`` bytes: stored (level 0) deflate blocks, padded
    with the header's extra field (RFC 1952 FEXTRA), which every gzip reader skips."""
    packer = zlib.compressobj(0, zlib.DEFLATED, -15)
    deflated = packer.compress(payload) + packer.flush()
    trailer = struct.pack("<II", zlib.crc32(payload), len(payload) & 0xFFFFFFFF)
    extra = wire_bytes - (10 + 2 + len(deflated) + len(trailer))
    assert 0 <= extra <= 0xFFFF, extra
    header = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", extra) + b"x" * extra
    return header + deflated + trailer


def test_a_compressed_body_of_16_mib_on_the_wire_is_read_and_one_byte_more_is_not() -> None:
    """README: 16 MiB a body on the wire, whatever its encoding: a gzip body of exactly 16 MiB that
    inflates to less is read; the same body one byte longer is a 413 naming the bound."""
    mib16 = 16 * 1024 * 1024
    pad = [b"\0" * 1_000_000] * 16 + [b"\0" * (mib16 - 16_000_000 - 8192)]  # a byte string is 1 MiB at most
    payload = msgpack.packb({"v": WIRE_VERSION, "pad": pad})
    at_bound = _gzip_of_exact_size(payload, mib16)
    assert len(at_bound) == mib16
    assert decode_body(at_bound, "gzip")["pad"] == pad
    past = _gzip_of_exact_size(payload, mib16 + 1)
    with pytest.raises(BodyError) as refused:
        decode_body(past, "gzip")
    assert refused.value.status == 413 and f"{mib16 + 1} bytes exceeds {mib16}" in str(refused.value)


def test_an_uncompressed_body_past_the_decompressed_bound_is_a_413_when_the_wire_bound_is_larger() -> None:
    limits = BodyLimits(max_compressed_bytes=10_000, max_decompressed_bytes=1_000)
    body = msgpack.packb({"v": WIRE_VERSION, "pad": "x" * 5_000})
    with pytest.raises(BodyError) as refused:
        decode_body(body, "identity", limits)
    assert refused.value.status == 413
    assert decode_body(msgpack.packb({"v": WIRE_VERSION, "pad": "x" * 900}), "identity", limits)["v"] == WIRE_VERSION


@pytest.mark.parametrize("encoding", ["zstd, gzip", "gzip, zstd", "zstd;q=1", "br", "compress"])
def test_a_content_encoding_the_server_does_not_read_is_a_415_whatever_its_name(encoding: str) -> None:
    with pytest.raises(BodyError) as refused:
        decode_body(encode_body({"v": WIRE_VERSION}), encoding)
    assert refused.value.status == 415 and "Content-Encoding" in str(refused.value)


def test_a_gzip_body_with_matches_across_its_whole_32_kib_window_is_read() -> None:
    """gzip's window is 32 KiB: a body repeating 20 KB of bytes it cannot otherwise compress refers back
    further than 16 KiB, and must still be read."""
    chunk = random.Random(0).randbytes(20_000)
    body = {"v": WIRE_VERSION, "a": chunk, "b": chunk}
    packed = gzip.compress(msgpack.packb(body))
    assert len(packed) < 30_000  # the repeat was matched, 20,000 bytes back
    assert decode_body(packed, "gzip") == body


def test_a_request_may_name_1000_streams_and_not_1001() -> None:
    """README: 1,000 streams named in a request at most (the figure, not the constant)."""
    from ml_dash.server.errors import PayloadTooLarge
    from ml_dash.server.ingest.decode import build_batch

    def body(streams: int) -> dict:
        block = metric_blocks([{"data": {"v": 1.0}, "createdAt": "c"}])
        return {"v": WIRE_VERSION, "identity": {"run_id": "r", "writer_id": "w"},
                "streams": {f"metrics/m{k}": {"start": 0, "blocks": block} for k in range(streams)}}

    assert len(build_batch("o", "p", "n", body(1_000), max_events=10**6).streams()) == 1_000
    with pytest.raises(PayloadTooLarge) as refused:
        build_batch("o", "p", "n", body(1_001), max_events=10**6)
    assert "1001 streams in one request; at most 1000" in str(refused.value)


def test_str_int_and_float_subclasses_go_on_the_wire_as_their_plain_values() -> None:
    """What a run's parameters and metadata may hold (values.check_json) the wire carries: a subclass of
    str, int or float is sent as its plain value (msgspec hands them to the encoder's hook)."""
    class Name(str):
        pass

    class Count(int):
        pass

    class Rate(float):
        pass

    body = {"v": WIRE_VERSION, "params": {"opt": Name("adam"), "layers": Count(12), "lr": Rate(0.5)}}
    raw, encoding = wire_body(body)
    assert decode_body(raw, encoding)["params"] == {"opt": "adam", "layers": 12, "lr": 0.5}
