"""The contract every storage backend and every blob store passes (server/storage/protocol.py,
server/blobs/protocol.py), written against the protocols only: a backend is added by adding one entry
to STORAGE_URLS or BLOB_URLS: how to get the URL of a fresh, empty store for a test. PostgreSQL's comes
from the session's cluster (tests/services/postgres.py), S3's is a key prefix of its own in the
session's SeaweedFS bucket (tests/services/s3.py): where a service cannot run, its cases skip, or fail
in CI. A backend whose service is a process of its own is in SERVICE_BACKENDS, which puts its cases in
the integration ring.

Storage: exactly once under concurrent ingest of one run from two storages on one database (as two
server processes), gaps, resends, conflicts, voids, the metric limit, pages, buckets, log search,
keys, grants, sessions, file records, the columnar read's chunks; and tests/test_models.py's model of the exactly-once rule (random
writers, resends, voids and restarts through the real app) on each backend. Blobs: put verified or
refused (small and past a part, also when the stream breaks off), ranges, size, exists, delete.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
from hypothesis.stateful import run_state_machine_as_test

from ml_dash.format.wire import metric_blocks, metric_rows
from ml_dash.server.blobs import (
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    DigestMismatch,
    InvalidDigest,
    open_blobs,
)
from ml_dash.server.ingest.decode import build_batch
from ml_dash.server.storage import ConflictError, GapError, Storage, StreamLimitError, open_storage
from ml_dash.server.storage.records import IngestBatch

from .test_models import EXACTLY_ONCE_SETTINGS, ExactlyOnce

pytestmark = pytest.mark.timeout(300)

RUN = ("alice", "proj", "run")
LOSS = "metrics/loss"


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Storage]:
    storage = await open_storage(url)
    try:
        yield storage
    finally:
        await storage.close()


def run_with(url: str, body: Callable[[Storage], Awaitable[None]]) -> None:
    async def main() -> None:
        async with opened(url) as storage:
            await body(storage)

    asyncio.run(main())


def batch(streams: dict[str, Any], writer: str = "w1", run_id: str = "run1", prefix: tuple[str, str, str] = RUN,
          **extra: Any) -> IngestBatch:
    """A batch as the server builds it from a request body (the backend's only input)."""
    body = {"identity": {"run_id": run_id, "writer_id": writer}, "streams": streams, **extra}
    return build_batch(*prefix, body, max_events=10**7)


async def streams_of(storage: Storage, eid: int) -> dict[str, int]:
    """Every stream of a run with its stored count, page by page (a run may hold 100,000 streams)."""
    found: dict[str, int] = {}
    after: str | None = ""
    for _ in range(1000):  # bounded
        page, _latest, after = await storage.stream_page(eid, after or "", 1000)
        found.update(page)
        if after is None:
            return found
    raise AssertionError("more pages than expected")


def rows(start: int, count: int, tag: float = 0.0, fields: int = 1) -> dict[str, Any]:
    """Metric rows ``start ..``: ``step`` is the index, ``loss`` says whose rows they are (``tag``)."""
    made = [{"data": {"step": i, "loss": tag + i, **{f"f{k}": k for k in range(fields - 1)}},
             "createdAt": "2026-12-01T00:00:00Z"} for i in range(start, start + count)]
    return {"start": start, "blocks": metric_blocks(made)}


def lines(start: int, messages: list[tuple[str, str]]) -> dict[str, Any]:
    return {"start": start, "rows": [{"message": m, "level": level} for level, m in messages]}


async def exp_id(storage: Storage, prefix: tuple[str, str, str] = RUN) -> int:
    exp = await storage.experiment(*prefix)
    assert exp is not None
    return exp["id"]


async def all_rows(storage: Storage, metric: str = "loss", prefix: tuple[str, str, str] = RUN) -> list[dict[str, Any]]:
    found, start = [], 0
    for _ in range(1000):  # bounded
        page, cut = await storage.metric_rows(await exp_id(storage, prefix), metric, start, 1000)
        found += page
        if cut is None and len(page) < 1000:
            return found
        start = cut if cut is not None else page[-1]["index"] + 1
    raise AssertionError("more pages than expected")


def test_a_run_list_in_recent_order_has_the_run_last_written_to_first(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        for name in ("b-first", "a-second", "c-third"):  # written in this order, named out of it
            await storage.ingest(batch({LOSS: rows(0, 1)}, run_id=name, prefix=("alice", "p" + name[0], name)))
            await asyncio.sleep(0.01)  # last_seen: a later write is a later time
        await storage.ingest(batch({LOSS: rows(1, 2)}, run_id="b-first", prefix=("alice", "pb", "b-first")))
        by_name = await storage.list_experiments("alice", None, None, None, 10, 0)
        recent = await storage.list_experiments("alice", None, None, None, 10, 0, order="recent")
        assert [e["name"] for e in by_name] == ["a-second", "b-first", "c-third"]
        assert [e["name"] for e in recent] == ["b-first", "c-third", "a-second"]
        assert [e["name"] for e in await storage.list_experiments("alice", None, None, None, 1, 1, order="recent")] == ["c-third"]

    run_with(storage_url, body)


# -- ingest: exactly once -------------------------------------------------------------------------
def test_ingest_creates_the_run_and_answers_every_streams_count(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        acked = await storage.ingest(batch({LOSS: rows(0, 10), "logs": lines(0, [("info", "hello")])},
                                           run={"status": "RUNNING", "tags": ["a", "b"], "hostname": "gpu1"},
                                           params={"lr": 0.1}))
        assert acked.acked == {LOSS: 10, "logs": 1} and (acked.run_streams, acked.run_rows) == (2, 11)
        await storage.ingest(batch({}, params={"batch": 32}))  # params merge
        exp = await storage.experiment(*RUN)
        assert exp is not None
        assert (exp["owner"], exp["project"], exp["name"], exp["prefix"]) == (*RUN, "alice/proj/run")
        assert (exp["status"], exp["tags"], exp["hostname"], exp["run_id"]) == ("RUNNING", ["a", "b"], "gpu1", "run1")
        assert exp["params"] == {"lr": 0.1, "batch": 32} and await streams_of(storage, exp["id"]) == {LOSS: 10, "logs": 1}
        assert isinstance(exp["last_seen"], float) and exp["last_seen"] <= time.time()
        assert await storage.experiment("alice", "proj", "nothing") is None
        listed = await storage.list_experiments("alice", None, None, "b", 10, 0)
        assert [e["name"] for e in listed] == ["run"]
        assert await storage.list_experiments("alice", None, "COMPLETED", None, 10, 0) == []
        assert [e["name"] for e in await storage.list_experiments("alice", "proj", None, None, 10, 0, "r")] == ["run"]
        assert await storage.list_experiments(None, None, None, None, 10, 0, "r%") == []  # a prefix, not a pattern
        projects = await storage.projects("alice")
        assert [(p["project"], p["experiments"]) for p in projects] == [("proj", 1)]
        assert await storage.all_owners() == [{"owner": "alice", "experiments": 1}]
        latest = await storage.list_latest([exp["id"]], [])
        assert latest[exp["id"]][0]["loss"]["loss"] == 9.0 and latest[exp["id"]][1] is False

    run_with(storage_url, body)


def test_a_late_older_body_stores_its_rows_but_never_undoes_newer_run_fields_or_params(storage_url: str) -> None:
    """Bodies reach the store out of order (a request the client gave up on is stored after the one that
    replaced it): the documents kept are those of the highest stamp of a writer, whatever the order."""
    async def body(storage: Storage) -> None:
        async def run_and_params() -> tuple[str, str | None, dict[str, Any]]:
            exp = await storage.experiment(*RUN)
            assert exp is not None
            return exp["status"], exp["ended_at"], exp["params"]

        await storage.ingest(batch({LOSS: rows(0, 5)}, run={"status": "RUNNING"}, params={"lr": 0.1}, docs_rev=10))
        await storage.ingest(batch({LOSS: rows(0, 8)}, run={"status": "COMPLETED", "ended_at": "2026-12-07T20:00:00Z"},
                                   params={"lr": 0.3}, docs_rev=30))
        late = await storage.ingest(batch({LOSS: rows(5, 2)}, run={"status": "RUNNING", "ended_at": None},
                                          params={"lr": 0.2}, docs_rev=20))
        assert late.acked == {LOSS: 8}  # its rows: a resend, acknowledged
        assert await run_and_params() == ("COMPLETED", "2026-12-07T20:00:00Z", {"lr": 0.3})
        await storage.ingest(batch({LOSS: rows(8, 1)}, run={"status": "FAILED"}, docs_rev=30))  # a resend: same stamp
        assert (await run_and_params())[0] == "FAILED"
        # another start of the run (a resumed directory) has its own clock: applied whatever its stamp
        await storage.ingest(batch({LOSS: rows(9, 1)}, writer="w2", run={"status": "RUNNING", "ended_at": None},
                                   params={"lr": 0.4}, docs_rev=1))
        assert await run_and_params() == ("RUNNING", None, {"lr": 0.4})
        await storage.ingest(batch({}, writer="w2", run={"status": "COMPLETED"}, docs_rev=2))
        await storage.ingest(batch({}, writer="w2", run={"status": "RUNNING"}, params={"lr": 0.5}, docs_rev=1))
        assert await run_and_params() == ("COMPLETED", None, {"lr": 0.4})
        # a body without a stamp (an older SDK) is applied, and the next stamped one after it too
        await storage.ingest(batch({}, writer="w2", run={"status": "CANCELLED"}))
        assert (await run_and_params())[0] == "CANCELLED"
        await storage.ingest(batch({}, writer="w2", run={"status": "COMPLETED"}, docs_rev=1))
        assert (await run_and_params())[0] == "COMPLETED"
        assert await streams_of(storage, await exp_id(storage)) == {LOSS: 10}  # every row stored, once

    run_with(storage_url, body)


def test_the_exactly_once_rule_holds_against_its_model_over_random_writers_resends_voids_and_restarts(
        storage_url: str) -> None:
    """tests/test_models.py's state machine: the real app over this backend, each example a run of its own."""
    run_state_machine_as_test(lambda: ExactlyOnce(storage_url), settings=EXACTLY_ONCE_SETTINGS)


def test_a_gap_is_refused_whole_with_every_streams_count(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 10), "logs": lines(0, [("info", "a"), ("info", "b")])}))
        with pytest.raises(GapError) as gap:
            await storage.ingest(batch({"metrics/acc": rows(0, 5), LOSS: rows(12, 3)}))
        assert (gap.value.stream, gap.value.acked) == (LOSS, 10)
        # the request's streams (a new one: 0 stored), and every stream of a run this small for a client that
        # did not ask for named counts
        assert gap.value.reply.acked == {LOSS: 10, "logs": 2, "metrics/acc": 0}
        exp = await storage.experiment(*RUN)
        assert exp is not None and await streams_of(storage, exp["id"]) == {LOSS: 10, "logs": 2}  # the other stream's rows too: nothing

    run_with(storage_url, body)


def test_a_resend_by_the_same_writer_is_acknowledged_again_and_stored_once(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        assert (await storage.ingest(batch({LOSS: rows(0, 10)}))).acked == {LOSS: 10}
        assert (await storage.ingest(batch({LOSS: rows(0, 10, tag=0.5)}))).acked == {LOSS: 10}  # a resend: re-acked
        assert (await storage.ingest(batch({LOSS: rows(5, 10)}))).acked == {LOSS: 15}  # overlaps: only the rest is new
        stored = await all_rows(storage)
        assert [r["index"] for r in stored] == list(range(15))
        assert [r["data"]["loss"] for r in stored] == [float(i) for i in range(15)]  # the first rows stay

    run_with(storage_url, body)


def test_another_writers_rows_or_another_run_under_the_name_are_conflicts(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 10)}))
        with pytest.raises(ConflictError) as other_writer:
            await storage.ingest(batch({LOSS: rows(5, 10, tag=0.5), "logs": lines(0, [("info", "x")])}, writer="w2"))
        assert other_writer.value.details == {"kind": "writer", "stream": LOSS, "first": 0, "end": 10}
        with pytest.raises(ConflictError) as other_run:
            await storage.ingest(batch({LOSS: rows(10, 1)}, run_id="run2"))
        assert other_run.value.details["kind"] == "run" and other_run.value.details["run_id"] == "run1"
        exp = await storage.experiment(*RUN)
        assert exp is not None and await streams_of(storage, exp["id"]) == {LOSS: 10}  # nothing of either, the log line included
        assert (await storage.ingest(batch({LOSS: rows(10, 5, tag=0.5)}, writer="w2"))).acked == {LOSS: 15}  # after: fine

    run_with(storage_url, body)


def test_voids_are_settled_once_and_hold_no_rows(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 10)}))
        void = {"start": 10, "void": 5, "reason": "damaged line"}
        assert (await storage.ingest(batch({LOSS: void}))).acked == {LOSS: 15}
        assert (await storage.ingest(batch({LOSS: void}))).acked == {LOSS: 15}  # resent: re-acked
        with pytest.raises(ConflictError):
            await storage.ingest(batch({LOSS: void}, writer="w2"))
        assert (await storage.ingest(batch({LOSS: rows(15, 5)}))).acked == {LOSS: 20}
        assert [r["index"] for r in await all_rows(storage)] == [*range(10), *range(15, 20)]
        page, _ = await storage.metric_rows(await exp_id(storage), "loss", 12, 3)
        assert [r["index"] for r in page] == [15, 16, 17]  # a page from inside a void starts after it

    run_with(storage_url, body)


def test_a_batch_past_the_runs_metric_limit_is_refused_whole(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 1)}), max_metrics=2)
        with pytest.raises(StreamLimitError) as refused:
            await storage.ingest(batch({"metrics/a": rows(0, 1), "metrics/b": rows(0, 1), "metrics/c": rows(0, 1)}),
                                 max_metrics=2)
        assert refused.value.streams == ["metrics/b", "metrics/c"] and refused.value.limit == 2
        exp = await storage.experiment(*RUN)
        assert exp is not None and await streams_of(storage, exp["id"]) == {LOSS: 1}
        assert (await storage.ingest(batch({LOSS: rows(1, 1), "metrics/a": rows(0, 1)}), max_metrics=2)).acked == \
            {LOSS: 2, "metrics/a": 1}

    run_with(storage_url, body)


async def _client(storage: Storage, writer: str, tag: float, total: int, step: int,
                  accepted: list[tuple[int, int, float]]) -> None:
    """An uploader: batches from where the server says it stands, until ``total`` rows or a conflict."""
    start = 0
    for _ in range(10 * total):  # bounded
        if start >= total:
            return
        count = min(step, total - start)
        try:
            acked = await storage.ingest(batch({LOSS: rows(start, count, tag)}, writer=writer))
        except GapError as exc:
            start = exc.acked
            continue
        except ConflictError:
            return  # another writer holds these indices: this one stops, as a client sets them aside
        accepted.append((start, start + count, tag))
        start = acked.acked[LOSS]
    raise AssertionError("the client made no progress")


def test_concurrent_ingest_of_one_run_through_two_storages_stores_every_row_once(storage_url: str) -> None:
    """Two storages on one database (two server processes), one writer resending through both (a
    client whose retries a load balancer sends to either): every row once, in order, each acked."""
    async def main() -> None:
        async with opened(storage_url) as first, opened(storage_url) as second:
            accepted: list[tuple[int, int, float]] = []
            await asyncio.gather(*(_client(s, "w1", 0.0, 3000, 97, accepted) for s in (first, second, first, second)))
            for storage in (first, second):
                stored = await all_rows(storage)
                assert [r["index"] for r in stored] == list(range(3000))
                assert [r["data"]["loss"] for r in stored] == [float(i) for i in range(3000)]

    asyncio.run(main())


def test_two_writers_racing_for_one_run_through_two_storages_never_get_each_others_rows_acked(
        storage_url: str) -> None:
    """Two writers of one run (two directories) race through two storages on one database: each index
    is settled by one of them, and every batch acknowledged to a writer holds that writer's rows."""
    async def main() -> None:
        async with opened(storage_url) as first, opened(storage_url) as second:
            accepted: list[tuple[int, int, float]] = []
            await asyncio.gather(_client(first, "w1", 0.0, 2000, 50, accepted),
                                 _client(second, "w2", 0.25, 2000, 70, accepted))
            stored = await all_rows(first)
            assert [r["index"] for r in stored] == list(range(len(stored)))
            loss = {r["index"]: r["data"]["loss"] for r in stored}
            for start, end, tag in accepted:  # an acknowledged batch is what is stored under its indices
                assert [loss[i] for i in range(start, end)] == [tag + i for i in range(start, end)]
            assert {loss[i] - i for i in loss} <= {0.0, 0.25}

    asyncio.run(main())


# -- reads ----------------------------------------------------------------------------------------
def test_metric_pages_are_bounded_in_rows_and_values_and_say_where_to_go_on(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 10_000), "metrics/wide": rows(0, 600, fields=1000)}))
        eid = await exp_id(storage)
        page, cut = await storage.metric_rows(eid, "loss", 4090, 20)
        assert [r["index"] for r in page] == list(range(4090, 4110)) and cut is None  # across a chunk's edge
        assert page[0]["data"] == {"step": 4090, "loss": 4090.0}
        assert await storage.metric_rows(eid, "loss", 9995, 100) == (await storage.metric_rows(eid, "loss", 9995, 5))
        assert await storage.metric_rows(eid, "loss", 10_000, 10) == ([], None)
        wide, cut = await storage.metric_rows(eid, "wide", 0, 600)
        assert cut is not None and len(wide) == cut < 600  # cut by the value budget, not by the limit
        rest, again = await storage.metric_rows(eid, "wide", cut, 600)
        assert again is None and [r["index"] for r in wide + rest] == list(range(600))
        assert await storage.metric_rows(eid, "nothing", 0, 10) == ([], None)

    run_with(storage_url, body)


async def chunk_rows(storage: Storage, eid: int, metric: str, start: int, end: int | None,
                     max_bytes: int = 1 << 30) -> tuple[list[dict[str, Any]], list[int | None]]:
    """The rows of a range read through ``metric_chunks`` call after call (following ``next``), and each
    call's ``next``."""
    found, cuts = [], []
    for _ in range(1000):  # bounded
        chunks, cut = await storage.metric_chunks(eid, metric, start, end, max_bytes)
        cuts.append(cut)
        for first, count, blob in chunks:
            got = metric_rows(first, msgpack.unpackb(blob))
            assert len(got) == count and got[0]["index"] == first
            found += got
        if cut is None:
            return found, cuts
        assert cut > start
        start = cut
    raise AssertionError("more calls than expected")


def test_metric_chunks_are_the_stored_rows_of_a_range_cut_by_a_byte_budget(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 10_000)}))
        await storage.ingest(batch({LOSS: {"start": 10_000, "void": 5, "reason": "unencodable"}}))
        await storage.ingest(batch({LOSS: rows(10_005, 100)}))
        eid = await exp_id(storage)
        every = await all_rows(storage)
        assert (await chunk_rows(storage, eid, "loss", 0, None))[0] == every
        for start, end in ((4090, 4110), (1, 2), (4095, 8193), (9990, 10_010), (10_003, 10_007), (0, 10**9)):
            found, _ = await chunk_rows(storage, eid, "loss", start, end)
            assert found == [r for r in every if start <= r["index"] < end], (start, end)
        found, cuts = await chunk_rows(storage, eid, "loss", 100, None, max_bytes=1)  # a chunk a call at least
        assert found == every[100:] and len(cuts) > 2 and cuts[-1] is None
        assert await storage.metric_chunks(eid, "loss", 10_105, None, 1 << 20) == ([], None)
        assert await storage.metric_chunks(eid, "nothing", 0, None, 1 << 20) == ([], None)

    run_with(storage_url, body)


def test_buckets_cover_the_series_with_each_buckets_true_extremes(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        total = 20_000
        made = [{"data": {"v": (i * 7919) % 1000 - 500}, "createdAt": "2026-12-01T00:00:00Z"} for i in range(total)]
        await storage.ingest(batch({"metrics/v": {"start": 0, "blocks": metric_blocks(made)}}))
        eid = await exp_id(storage)
        for start, end, wanted, width in [(0, None, 100, None), (333, 17_777, 50, None), (1024, 16_384, 15, 1024),
                                          (5, 60, 100, None)]:
            got_width, found = await storage.metric_buckets(eid, "v", start, end, wanted, width)
            stop = total if end is None else end
            assert len(found) <= wanted and (width is None or got_width == width)
            assert sum(b["count"] for b in found) == stop - start
            for b in found:
                values = [made[i]["data"]["v"] for i in range(b["first"], b["last"] + 1)]
                assert (b["fields"]["v"]["min"], b["fields"]["v"]["max"]) == (min(values), max(values))
                assert (b["fields"]["v"]["first"], b["fields"]["v"]["last"]) == (values[0], values[-1])
        assert (await storage.metric_buckets(eid, "v", total, None, 10))[1] == []

    run_with(storage_url, body)


def test_the_run_lists_latest_values_are_the_first_metrics_by_name_and_those_asked_for(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({f"metrics/m{i:02d}": rows(0, 3, tag=i) for i in range(20)}))
        await storage.ingest(batch({"metrics/x": rows(0, 1)}, prefix=("alice", "proj", "small")))
        wide, small = await exp_id(storage), await exp_id(storage, ("alice", "proj", "small"))
        latest = await storage.list_latest([wide, small, 10**9], ["m19", "nosuch"])
        assert set(latest) == {wide, small}  # a run without metrics is absent
        fields, more = latest[wide]
        assert list(fields) == ["m19", *(f"m{i:02d}" for i in range(16))] and more is True
        assert fields["m19"] == {"step": 2, "loss": 21.0} and fields["m00"]["loss"] == 2.0
        assert latest[small] == ({"x": {"step": 0, "loss": 0.0}}, False)

    run_with(storage_url, body)


def test_log_pages_filter_by_level_and_search_the_whole_run(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        messages = [("error" if i % 100 == 7 else "info", f"step {i} {'Needle' if i == 4321 else 'hay'}")
                    for i in range(5000)]
        await storage.ingest(batch({"logs": lines(0, messages)}))
        eid = await exp_id(storage)
        page, cut = await storage.log_rows(eid, 10, 3, None)
        assert [(r["sequenceNumber"], r["message"]) for r in page] == [(i, f"step {i} hay") for i in (10, 11, 12)]
        assert cut is None
        errors, _ = await storage.log_rows(eid, 0, 1000, "error")
        assert [r["sequenceNumber"] for r in errors] == list(range(7, 5000, 100))
        tail, _ = await storage.log_rows(eid, 0, 2, None, tail=True)
        assert [r["sequenceNumber"] for r in tail] == [4998, 4999]
        for search in ("needle", "NEEDLE", "eedl"):  # case-insensitive, a substring, anywhere in the run
            found, _ = await storage.log_rows(eid, 0, 10, None, search)
            assert [r["sequenceNumber"] for r in found] == [4321], search
        assert (await storage.log_rows(eid, 4322, 10, None, "needle"))[0] == []  # from start
        assert (await storage.log_rows(eid, 0, 10, "error", "needle"))[0] == []  # and of the level
        assert (await storage.log_rows(eid, 0, 10, None, "100%"))[0] == []  # a literal, not a pattern

    run_with(storage_url, body)


def test_file_records_are_listed_by_path_and_replaced_by_a_later_one(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        sha_a, sha_b = "a" * 64, "b" * 64
        await storage.put_file(*RUN, "models/b.pt", sha_b, 20, {"description": "best"})
        await storage.put_file(*RUN, "a.txt", sha_a, 3, {})
        await storage.put_file(*RUN, "models/b.pt", sha_a, 3, {"description": "newer"})
        files = await storage.files(await exp_id(storage))
        assert [(f["path"], f["checksum"], f["sizeBytes"]) for f in files] == [("a.txt", sha_a, 3),
                                                                               ("models/b.pt", sha_a, 3)]
        assert files[1]["description"] == "newer"

    run_with(storage_url, body)


# -- keys, grants, sessions -------------------------------------------------------------------------
def test_keys_are_checked_by_secret_hash_listed_without_it_and_revoked_for_good(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        secret = hashlib.sha256(b"secret").hexdigest()
        await storage.add_key("0123456789ab", "alice", secret)
        assert await storage.key_owner("0123456789ab", secret) == "alice"
        assert await storage.key_owner("0123456789ab", hashlib.sha256(b"wrong").hexdigest()) is None
        assert await storage.key_owner("ffffffffffff", secret) is None
        listed = await storage.keys("alice")
        assert [set(k) for k in listed] == [{"key_id", "created_at", "revoked_at"}]
        assert listed[0]["key_id"] == "0123456789ab" and listed[0]["revoked_at"] is None
        await storage.add_session("t" * 64, "alice", time.time() + 60, "0123456789ab")
        assert await storage.revoke_key("0123456789ab") is True
        assert await storage.key_owner("0123456789ab", secret) is None
        assert await storage.session_owner("t" * 64) is None  # signed in with it: signed out
        assert (await storage.keys("alice"))[0]["revoked_at"] is not None
        assert await storage.revoke_key("0123456789ab") is True  # known, revoked before
        assert await storage.revoke_key("ffffffffffff") is False
        assert await storage.keys("bob") == []

    run_with(storage_url, body)


def test_a_key_added_through_one_storage_is_seen_at_once_by_another_on_the_database(storage_url: str) -> None:
    """``ml-dash keys`` while the server runs: its storage and the server's are two on one database."""
    async def main() -> None:
        async with opened(storage_url) as server, opened(storage_url) as command:
            secret = hashlib.sha256(b"s").hexdigest()
            assert await server.key_owner("00000000000a", secret) is None
            await command.add_key("00000000000a", "carol", secret)
            assert await server.key_owner("00000000000a", secret) == "carol"
            await command.revoke_key("00000000000a")
            assert await server.key_owner("00000000000a", secret) is None

    asyncio.run(main())


def test_grants_let_a_member_read_an_owners_runs(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.ingest(batch({LOSS: rows(0, 1)}))
        assert await storage.can_read("alice", "alice") is True
        assert await storage.can_read("bob", "alice") is False
        await storage.grant("alice", "bob")
        await storage.grant("alice", "bob")  # twice is once
        assert await storage.can_read("bob", "alice") is True
        assert await storage.can_read("alice", "bob") is False  # one way
        assert await storage.owners("bob") == [{"owner": "alice", "experiments": 1}, {"owner": "bob", "experiments": 0}]

    run_with(storage_url, body)


def test_sessions_last_until_they_expire_or_are_dropped(storage_url: str) -> None:
    async def body(storage: Storage) -> None:
        await storage.add_session("a" * 64, "alice", time.time() + 60, None)
        await storage.add_session("b" * 64, "bob", time.time() - 1, None)
        assert await storage.session_owner("a" * 64) == "alice"
        assert await storage.session_owner("b" * 64) is None  # expired
        assert await storage.session_owner("c" * 64) is None
        await storage.drop_session("a" * 64)
        assert await storage.session_owner("a" * 64) is None
        await storage.drop_session("a" * 64)  # nothing to drop: fine

    run_with(storage_url, body)


# -- blobs ----------------------------------------------------------------------------------------
async def _stream(data: bytes, piece: int = 65_536) -> AsyncIterator[bytes]:
    for at in range(0, len(data), piece):
        yield data[at:at + piece]


async def _read(blobs: BlobStore, sha: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([piece async for piece in await blobs.open_range(sha, start, end)])


def _with_blobs(url: str, body: Callable[[BlobStore], Awaitable[None]]) -> None:
    async def main() -> None:
        blobs = await open_blobs(url)
        try:
            await body(blobs)
        finally:
            await blobs.close()

    asyncio.run(main())


def test_a_blob_is_stored_only_when_its_content_matches_its_sha256(blob_url: str) -> None:
    data = os.urandom(1_000_003)
    sha = hashlib.sha256(data).hexdigest()

    async def body(blobs: BlobStore) -> None:
        with pytest.raises(DigestMismatch):
            await blobs.put(_stream(data), "0" * 64, 10**9)
        assert not await blobs.exists("0" * 64)
        with pytest.raises(BlobTooLarge):
            await blobs.put(_stream(data), sha, 1_000_000)
        assert not await blobs.exists(sha)
        consumed: list[bytes] = []

        async def watched() -> AsyncIterator[bytes]:
            consumed.append(b"")
            yield data

        with pytest.raises(InvalidDigest):
            await blobs.put(watched(), "not-a-digest", 10**9)
        assert consumed == []  # refused before a byte was read
        # the same content twice, at once: stored once, both succeed
        assert await asyncio.gather(blobs.put(_stream(data), sha, 10**9), blobs.put(_stream(data), sha, 10**9)) == \
            [len(data), len(data)]
        assert await blobs.exists(sha) and await blobs.size(sha) == len(data)

    _with_blobs(blob_url, body)


def test_a_blob_is_read_whole_or_by_range_and_deleted(blob_url: str) -> None:
    data = os.urandom(700_001)
    sha = hashlib.sha256(data).hexdigest()

    async def body(blobs: BlobStore) -> None:
        await blobs.put(_stream(data), sha, 10**9)
        assert await _read(blobs, sha) == data
        assert await _read(blobs, sha, 5, 10) == data[5:10]
        assert await _read(blobs, sha, 300_000) == data[300_000:]
        assert await _read(blobs, sha, 699_990, 10**9) == data[699_990:]  # an end past the size: to the end
        assert await _read(blobs, sha, 700_001) == b""
        await blobs.ping()  # reachable: /ready's question
        reader = await blobs.open_range(sha)
        assert len(await reader.__anext__()) > 0
        await reader.aclose()  # left early: released
        with pytest.raises(BlobNotFound):
            await blobs.open_range("e" * 64)  # raised on opening, before any piece
        with pytest.raises(BlobNotFound):
            await blobs.size("e" * 64)
        assert await blobs.delete(sha) is True
        assert not await blobs.exists(sha)
        assert await blobs.delete(sha) is False
        with pytest.raises(BlobNotFound):
            await blobs.open_range(sha)

    _with_blobs(blob_url, body)


def test_a_blob_past_one_part_is_stored_whole_and_read_across_its_parts(blob_url: str) -> None:
    """20 MiB: an S3 store sends it in parts (8 MiB each); every store gives back exactly its bytes."""
    data = os.urandom(20 * 1024 * 1024 + 7)
    sha = hashlib.sha256(data).hexdigest()

    async def body(blobs: BlobStore) -> None:
        with pytest.raises(DigestMismatch):
            await blobs.put(_stream(data, 1 << 20), "1" * 64, 10**9)
        assert not await blobs.exists("1" * 64)
        assert await blobs.put(_stream(data, 1 << 20), sha, 10**9) == len(data)
        assert await blobs.size(sha) == len(data)
        across = (8 * 1024 * 1024 - 3, 16 * 1024 * 1024 + 5)
        assert await _read(blobs, sha, *across) == data[across[0]:across[1]]
        assert hashlib.sha256(await _read(blobs, sha)).hexdigest() == sha
        assert await blobs.put(_stream(data, 1 << 20), sha, 10**9) == len(data)  # again: nothing changes

    _with_blobs(blob_url, body)


@pytest.mark.parametrize("size", [300_000, 12 * 1024 * 1024], ids=["small", "past-a-part"])
def test_a_put_whose_stream_breaks_off_leaves_nothing(blob_url: str, size: int) -> None:
    """The client went away mid-upload: nothing under its name, and the same content stores later."""
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()

    async def broken() -> AsyncIterator[bytes]:
        async for piece in _stream(data[:size - 1000], 1 << 20):
            yield piece
        raise ConnectionResetError("the client went away")

    async def body(blobs: BlobStore) -> None:
        with pytest.raises(ConnectionResetError):
            await blobs.put(broken(), sha, 10**9)
        assert not await blobs.exists(sha)
        with pytest.raises(BlobNotFound):
            await blobs.open_range(sha)
        assert await blobs.put(_stream(data), sha, 10**9) == size
        assert await _read(blobs, sha) == data

    _with_blobs(blob_url, body)
