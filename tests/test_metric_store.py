"""The server's metric store (server/storage/sqlite/metrics.py) against brute force over the same rows:
pages from any index, and buckets from stored summaries, for batches of any size and alignment."""

from __future__ import annotations

import math
import random
import sqlite3
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash.format.wire import metric_blocks, pack
from ml_dash.server.storage.buckets import SUMMARY_WIDTHS, bucket_edges, plan
from ml_dash.server.storage.chunks import CHUNK_ROWS, prepare_rows, unpack_summary
from ml_dash.server.storage.sqlite import metrics as sqlite_metrics


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(sqlite_metrics.SCHEMA)
    return db


def _row(i: int, rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {"step": i, "loss": rng.random()}
    if i % 97 == 0:
        data["loss"] = float("nan")
    if i % 13 == 0:
        data["acc"] = -rng.random()  # a field only some rows have: its own blocks
    if i % 31 == 0:
        data["note"] = "text"
    return {"data": data, "createdAt": "2026-12-01T00:00:00Z"}


def _store(db: sqlite3.Connection, rows: list[dict[str, Any]], start: int, sizes: list[int]) -> None:
    position = start
    for size in sizes:
        batch = rows[position - start:position - start + size]
        if batch:
            sqlite_metrics.store_rows(db, 1, "train", prepare_rows(position, metric_blocks(batch)))
        position += size


def _expected(rows: list[dict[str, Any]], first_index: int, buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each bucket recomputed from the rows it says it covers."""
    out = []
    for bucket in buckets:
        covered = rows[bucket["first"] - first_index:bucket["last"] - first_index + 1]
        fields: dict[str, dict[str, Any]] = {}
        for row in covered:
            for key, value in row["data"].items():
                if type(value) not in (int, float) or (isinstance(value, float) and math.isnan(value)):
                    continue
                stats = fields.setdefault(key, {"min": value, "max": value, "first": value, "last": value})
                stats["min"], stats["max"], stats["last"] = min(stats["min"], value), max(stats["max"], value), value
        out.append({"first": bucket["first"], "last": bucket["last"], "count": len(covered), "fields": fields})
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_buckets_from_summaries_equal_brute_force_for_any_batching_and_range(seed: int) -> None:
    rng = random.Random(seed)
    n = 70_000
    rows = [_row(i, rng) for i in range(n)]
    sizes = [rng.choice([1, 7, 63, 64, 65, 1000, 4096, 5000, 20_000]) for _ in range(200)]
    db = _db()
    _store(db, rows, 0, sizes)
    stored = min(n, sum(sizes))
    for _ in range(25):
        start = rng.randrange(stored)
        end = rng.choice([stored, rng.randrange(start + 1, stored + 1)])
        wanted = rng.choice([1, 2, 10, 100, 1000])
        _width, buckets = sqlite_metrics.buckets(db, 1, "train", start, end, stored, wanted)
        assert len(buckets) <= wanted
        assert sum(b["count"] for b in buckets) == end - start
        assert buckets[0]["first"] == start and buckets[-1]["last"] == end - 1
        assert buckets == _expected(rows, 0, buckets)
        width, summary = plan(start, end, wanted)
        if summary is not None:  # at least about half the buckets asked for
            assert len(buckets) >= min(wanted, (end - start) // width) // 2


@pytest.mark.parametrize("seed", [4, 5])
def test_buckets_of_a_fixed_width_are_aligned_to_it_and_equal_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    n = 60_000
    rows = [_row(i, rng) for i in range(n)]
    db = _db()
    _store(db, rows, 0, [rng.choice([1, 63, 1000, 4096, 7000]) for _ in range(100)])
    stored = db.execute("SELECT SUM(count) FROM metric_chunks").fetchone()[0]
    for _ in range(25):
        width = rng.choice([1, 7, 63, 64, 128, 960, 1024, 3072, 16_384, 32_768])
        start = rng.randrange(stored)
        end = rng.randrange(start + 1, stored + 1)
        got_width, buckets = sqlite_metrics.buckets(db, 1, "train", start, end, stored, 10_000, width)
        assert got_width == width
        assert all(b["first"] // width == b["last"] // width for b in buckets)  # each within one aligned window
        assert all(b["first"] % width == 0 for b in buckets[1:]) and buckets[0]["first"] == start
        assert buckets[-1]["last"] == end - 1 and buckets == _expected(rows, 0, buckets)


def test_every_width_the_server_plans_is_one_a_live_chart_may_ask_for_again() -> None:
    """The widths plan() chooses are below 64 or multiples of the widest summary not above them: the
    rule fixed_width() holds ``width=`` to, so a live chart can always extend what it was given."""
    rng = random.Random(8)
    for _ in range(20_000):
        start = rng.randrange(10**9)
        width, _summary = plan(start, start + rng.randrange(1, 10**10), rng.choice([1, 10, 100, 1000, 5000, 10_000]))
        widest = max((w for w in SUMMARY_WIDTHS if w <= width), default=None)
        assert widest is None or width % widest == 0, width


def _plan_by_steps(start: int, end: int, buckets: int) -> tuple[int, int | None]:
    """plan() as first written: the width grown one summary at a time until the aligned buckets fit."""
    exact = bucket_edges(start, end, buckets)
    usable = [w for w in SUMMARY_WIDTHS if w <= 2 * exact]
    if not usable:
        return exact, None
    summary = usable[-1]
    width = -(-exact // summary) * summary
    while (end - 1) // width - start // width + 1 > buckets:
        width += summary
    return width, summary


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 3 * 10**6), st.integers(1, 3 * 10**6), st.sampled_from([1, 2, 3, 10, 100, 1000, 5000]))
def test_plan_chooses_the_smallest_width_that_fits_as_growing_it_step_by_step_does(start: int, length: int,
                                                                                     buckets: int) -> None:
    assert plan(start, start + length, buckets) == _plan_by_steps(start, start + length, buckets)


def test_one_bucket_over_a_huge_range_is_planned_at_once() -> None:
    """Growing the width a summary at a time took 6 s here (2^40 / 16,384 steps), on the server's loop."""
    width, summary = plan(2**40 - 1, 2**41, 1)
    assert (width, summary) == (2**41, 16384) and (2**41 - 1) // width == (2**40 - 1) // width


def test_a_live_chart_extends_its_buckets_with_the_last_one_and_the_new_ones() -> None:
    """What the UI does while a run logs: it keeps the buckets of 0:n, and for 0:m asks only from its
    last bucket's start at the same width; the result is what a whole read of 0:m gives."""
    rng = random.Random(6)
    rows = [_row(i, rng) for i in range(50_000)]
    db = _db()
    width, held = 1024, []
    stored = 0
    for size in [500, 3000, 64, 1, 20_000, 9000, 17_435]:
        sqlite_metrics.store_rows(db, 1, "train", prepare_rows(stored, metric_blocks(rows[stored:stored + size])))
        stored += size
        since = held[-1]["first"] // width * width if held else 0
        _w, new = sqlite_metrics.buckets(db, 1, "train", since, stored, stored, 100, width)
        held = [b for b in held if b["first"] < since] + new
        assert held == sqlite_metrics.buckets(db, 1, "train", 0, stored, stored, 100, width)[1]
        assert held == _expected(rows, 0, held)


def test_a_whole_series_is_bucketed_from_summaries_not_rows() -> None:
    rng = random.Random(5)
    rows = [_row(i, rng) for i in range(100_000)]
    db = _db()
    _store(db, rows, 0, [3000] * 34)
    db.execute("UPDATE metric_chunks SET blocks = ?", (msgpack.packb([]),))  # rows unreadable from here on
    _width, buckets = sqlite_metrics.buckets(db, 1, "train", 0, 100_000, 100_000, 100)
    assert sum(b["count"] for b in buckets) == 100_000
    assert buckets == _expected(rows, 0, buckets)


def test_summaries_exist_for_every_width_and_window() -> None:
    rng = random.Random(9)
    rows = [_row(i, rng) for i in range(40_000)]
    db = _db()
    _store(db, rows, 0, [777] * 52)
    for width in SUMMARY_WIDTHS:
        windows = [w for (w,) in db.execute("SELECT window FROM metric_summaries WHERE width = ? ORDER BY window",
                                            (width,))]
        assert windows == list(range(-(-40_000 // width)))


def test_summaries_are_stored_as_flat_arrays_and_maps_of_a_database_before_still_read() -> None:
    """Version 2 of the summary (chunks.py) leaves the key strings of version 1's maps out: at most 65% of
    their bytes. A database written before holds version 1: its buckets read the same, and a batch that
    continues one of its windows merges into it."""
    rng = random.Random(21)
    rows = [_row(i, rng) for i in range(20_000)]
    db = _db()
    _store(db, rows, 0, [1000] * 10)
    stored = db.execute("SELECT width, window, summary FROM metric_summaries").fetchall()
    assert all(isinstance(msgpack.unpackb(blob), list) for _w, _win, blob in stored)
    as_maps = [(pack(unpack_summary(blob)), width, window) for width, window, blob in stored]  # version 1
    assert sum(len(blob) for _w, _win, blob in stored) <= 0.65 * sum(len(blob) for blob, _w, _win in as_maps)
    db.executemany("UPDATE metric_summaries SET summary = ? WHERE width = ? AND window = ?", as_maps)
    _store(db, rows[10_000:], 10_000, [1000] * 10)  # the first batch continues a version 1 window of each width
    for start, end, wanted in [(0, 20_000, 20), (0, 20_000, 300), (5, 19_999, 100), (9_000, 12_000, 40)]:
        _width, buckets = sqlite_metrics.buckets(db, 1, "train", start, end, 20_000, wanted)
        assert sum(b["count"] for b in buckets) == end - start
        assert buckets == _expected(rows, 0, buckets)


def test_a_page_from_any_index_holds_the_rows_from_there() -> None:
    rng = random.Random(11)
    rows = [_row(i, rng) for i in range(30_000)]
    db = _db()
    _store(db, rows, 0, [rng.choice([5, 900, 4096, 9000]) for _ in range(40)])
    stored = db.execute("SELECT SUM(count) FROM metric_chunks").fetchone()[0]
    assert max(db.execute("SELECT count FROM metric_chunks").fetchone()) <= CHUNK_ROWS
    for start in [0, 1, 4095, 4096, 4097, stored - 1, *rng.sample(range(stored), 20)]:
        limit = rng.choice([1, 10, 1000, 5000])
        page, _ = sqlite_metrics.page(db, 1, "train", start, limit)
        assert [r["index"] for r in page] == list(range(start, min(stored, start + limit)))
        assert [r["data"]["step"] for r in page] == [r["index"] for r in page]


def test_a_set_aside_range_leaves_a_hole_that_pages_and_buckets_skip() -> None:
    rng = random.Random(13)
    rows = [_row(i, rng) for i in range(10_000)]
    db = _db()
    sqlite_metrics.store_rows(db, 1, "train", prepare_rows(0, metric_blocks(rows[:5000])))
    sqlite_metrics.store_rows(db, 1, "train", prepare_rows(6000, metric_blocks(rows[6000:])))  # 5000..5999 a void
    assert [r["index"] for r in sqlite_metrics.page(db, 1, "train", 5500, 3)[0]] == [6000, 6001, 6002]
    _width, buckets = sqlite_metrics.buckets(db, 1, "train", 0, 10_000, 10_000, 10)
    assert sum(b["count"] for b in buckets) == 9000
    kept = rows[:5000] + [{"data": {}, "createdAt": ""}] * 1000 + rows[6000:]  # a hole counts nothing
    expected = _expected(kept, 0, buckets)
    for bucket, want in zip(buckets, expected):
        want["count"] -= sum(1 for i in range(bucket["first"], bucket["last"] + 1) if 5000 <= i < 6000)
    assert buckets == expected


def test_an_old_database_is_rebuilt_into_split_chunks_and_summaries() -> None:
    rng = random.Random(17)
    rows = [_row(i, rng) for i in range(20_000)]
    db = _db()
    db.execute("INSERT INTO metric_chunks (exp_id, metric, first_idx, count, blocks) VALUES (1, 'train', 0, 20000, ?)", (msgpack.packb(metric_blocks(rows)),))
    sqlite_metrics.rebuild(db)
    assert db.execute("SELECT COUNT(*), MAX(count), SUM(count) FROM metric_chunks").fetchone() == (5, 4096, 20_000)
    _width, buckets = sqlite_metrics.buckets(db, 1, "train", 0, 20_000, 20_000, 20)
    assert buckets == _expected(rows, 0, buckets)


def test_row25_a_page_decodes_at_most_two_chunks_wherever_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cost in proportion to the page: a 1,000-row page of a long series decodes at most two stored
    chunks (at most 8,192 rows), at any offset; whole-series buckets decode none."""
    rng = random.Random(19)
    rows = [_row(i, rng) for i in range(200_000)]
    db = _db()
    _store(db, rows, 0, [50_000] * 4)
    decoded: list[int] = []
    real_unpackb = msgpack.unpackb

    def counting_unpackb(blob: bytes, **kwargs: Any) -> Any:
        value = real_unpackb(blob, **kwargs)
        if isinstance(value, list) and value and isinstance(value[0], dict):  # a chunk's blocks (a summary
            # is a flat array of numbers and names, chunks.py)
            decoded.append(sum(sum(n for _, n in block["created"]) for block in value))
        return value

    monkeypatch.setattr(sqlite_metrics.msgpack, "unpackb", counting_unpackb)
    for start in [0, 4095, 100_000, 199_000, *rng.sample(range(199_000), 20)]:
        decoded.clear()
        assert len(sqlite_metrics.page(db, 1, "train", start, 1000)[0]) == 1000
        assert len(decoded) <= 2 and sum(decoded) <= 2 * CHUNK_ROWS
    decoded.clear()
    sqlite_metrics.buckets(db, 1, "train", 0, 200_000, 200_000, 1000)
    assert decoded == []


def test_latest_keeps_each_fields_last_value_across_batches_and_blocks() -> None:
    db = _db()
    rows = [{"data": {"loss": 0.9, "acc": 0.1}, "createdAt": "t"}, {"data": {"loss": 0.8}, "createdAt": "t"}]
    sqlite_metrics.store_rows(db, 1, "train", prepare_rows(0, metric_blocks(rows)))
    later = [{"data": {"loss": 0.5, "lr": 1e-3}, "createdAt": "t"}]
    sqlite_metrics.store_rows(db, 1, "train", prepare_rows(2, metric_blocks(later)))
    sqlite_metrics.store_rows(db, 2, "eval", prepare_rows(0, metric_blocks(rows[:1])))
    assert sqlite_metrics.latest(db, [1, 2, 3]) == {1: {"train": {"loss": 0.5, "acc": 0.1, "lr": 1e-3}},
                                                   2: {"eval": {"loss": 0.9, "acc": 0.1}}}
