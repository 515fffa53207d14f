"""Model-based tests of the core contracts (Hypothesis): the real thing against a small reference model.

* The server's exactly-once rule: random interleavings of writers of one run (and of another run),
  resends from any offset, overlaps, gaps, voids, two streams in one request and restarts, against
  a model of which writer settled which index. The app runs in this process on a real loopback
  socket over a real store (the handler and storage code the server process runs); the contract suite
  (tests/test_storage_contract.py) runs it on each backend of its ``storage_url`` fixture (SQLite,
  PostgreSQL, and whichever is added there), each example a run of its own in the test's store.
* The uploader against a scripted server: random sequences of every reply the status table names;
  at the end the server holds each row exactly once, and every row is stored or set aside.

Examples are generated from a fixed seed when ``CI`` is set (tests/conftest.py's profile), and
Hypothesis keeps its example database outside the tree.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import Phase, example, given, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload.rejects import set_aside_counts
from ml_dash.agent.upload.retry import Outcome, parse_retry_after
from ml_dash.agent.upload.uploader import RunUploader
from ml_dash.format.wire import encode_body, metric_blocks
from ml_dash.server.app import create_app
from ml_dash.server.config import ServerConfig

from .fake_server import FakeClock, FakeTransport, Request

STREAMS = ("metrics/a", "metrics/b")
WRITERS = ("w1", "w2", "w3")
PREFIX = "alice/p/r"  # and the example's number
_EXAMPLES = itertools.count()
USER = {"X-ML-Dash-User": "alice", "Content-Type": "application/octet-stream", "Content-Encoding": "zstd"}


class Settled:
    """The model: per stream, who settled each index (writer, void?), and which run owns the prefix."""

    def __init__(self) -> None:
        self.by_stream: dict[str, list[tuple[str, bool]]] = {s: [] for s in STREAMS}
        self.run_id: str | None = None

    def outcome(self, run_id: str, writer: str, sends: dict[str, tuple[int, int, bool]]) -> str:
        """'ok', 'run' (another run), 'writer' (another writer's indices) or 'gap'; several failing
        streams may fail either way, so those answers are 'refused'."""
        if self.run_id is not None and run_id != self.run_id:
            return "run"
        failures = set()
        for stream, (start, count, _) in sends.items():
            settled = self.by_stream[stream]
            if start > len(settled):
                failures.add("gap")
            elif any(w != writer for w, _ in settled[start:min(start + count, len(settled))]):
                failures.add("writer")
        if not failures:
            return "ok"
        return failures.pop() if len(failures) == 1 and len(sends) == 1 else "refused"

    def apply(self, run_id: str, writer: str, sends: dict[str, tuple[int, int, bool]]) -> None:
        self.run_id = self.run_id or run_id
        for stream, (start, count, void) in sends.items():
            settled = self.by_stream[stream]
            settled.extend([(writer, void)] * max(0, start + count - len(settled)))


def _payload(writer: str, start: int, count: int, void: bool) -> dict[str, Any]:
    if void:
        return {"start": start, "void": count, "reason": f"set aside by {writer}"}
    rows = [{"data": {"step": i, "w": writer, "_ts": 1000.0 + i}, "createdAt": "2026-11-26T00:00:00.000000Z"}
            for i in range(start, start + count)]
    return {"start": start, "blocks": metric_blocks(rows)}


class ExactlyOnce(RuleBasedStateMachine):
    """The real app (handlers + the store at the URL ``db``) against :class:`Settled`. Each example is a
    run of its own (a prefix no other example uses), so one store serves every example of a test and
    the rule is per run anyway; restarts reopen the same store."""

    def __init__(self, db: str) -> None:
        super().__init__()
        self.data = Path(tempfile.mkdtemp(prefix="ml-dash-model-"))
        self.db = db
        self.prefix = f"{PREFIX}{next(_EXAMPLES)}"
        self.loop = asyncio.new_event_loop()
        self.model = Settled()
        self.client: TestClient | None = None
        self._start()

    def _start(self) -> None:
        config = ServerConfig(data_dir=self.data, allow_user_name=True, ingest_workers=0, db=self.db)

        async def start() -> TestClient:  # the client's cookie jar wants a running loop
            server = TestServer(create_app(config), host="127.0.0.1")
            await server.start_server(auto_decompress=False)  # as serve.py runs it: ingest decompresses, capped
            return TestClient(server)

        self.client = self.loop.run_until_complete(start())

    def _stop(self) -> None:
        assert self.client is not None
        self.loop.run_until_complete(self.client.close())

    def _post(self, body: dict[str, Any]) -> tuple[int, Any]:
        async def post() -> tuple[int, Any]:
            assert self.client is not None
            async with self.client.post(f"/api/v1/runs/{self.prefix}/events", data=encode_body(body), headers=USER) as r:
                return r.status, await r.json()

        return self.loop.run_until_complete(post())

    def _get(self, path: str) -> tuple[int, Any]:
        async def get() -> tuple[int, Any]:
            assert self.client is not None
            async with self.client.get(path, headers=USER) as r:
                return r.status, await r.json()

        return self.loop.run_until_complete(get())

    @rule(writer=st.sampled_from(WRITERS), other_run=st.integers(0, 7).map(lambda n: n == 0),  # now and then
          streams=st.sets(st.sampled_from(STREAMS), min_size=1, max_size=2), data=st.data())
    def send_from_anywhere(self, writer: str, other_run: bool, streams: set[str], data: st.DataObject) -> None:
        """Rows from anywhere around what is settled: a resend, an overlap into others' rows, a gap."""
        sends = {}
        for stream in sorted(streams):
            stored = len(self.model.by_stream[stream])
            start = data.draw(st.integers(0, stored + 2), label=f"{stream} start")
            sends[stream] = (start, data.draw(st.integers(1, 12), label="count"), data.draw(st.booleans(), label="void"))
        self.send(writer, other_run, sends, data.draw(st.booleans(), label="named reply"))

    def send(self, writer: str, other_run: bool, sends: dict[str, tuple[int, int, bool]], named: bool = True) -> None:
        """``named``: as this SDK asks (the reply names the request's streams), else as an older one (every
        stream of this small run)."""
        run_id = "run-2" if other_run else "run-1"
        expected = self.model.outcome(run_id, writer, sends)
        body = {"v": 2, "identity": {"run_id": run_id, "writer_id": writer}, **({"reply": "named"} if named else {}),
                "streams": {s: _payload(writer, *spec) for s, spec in sends.items()}}
        status, reply = self._post(body)
        held = {s: len(v) for s, v in self.model.by_stream.items() if v}
        if expected == "ok":
            assert status == 200, (status, reply, sends)
            self.model.apply(run_id, writer, sends)
            held = {s: len(v) for s, v in self.model.by_stream.items() if v}
            assert reply["acked"] == ({s: held[s] for s in sends} if named else held), reply
            assert (reply["run_streams"], reply["run_rows"]) == (len(held), sum(held.values())), reply
        elif expected == "gap":
            assert status == 409 and "acked" in reply and "conflict" not in reply, (status, reply)
            assert reply["acked"] == ({s: held.get(s, 0) for s in sends} if named else
                                      {**held, **{s: held.get(s, 0) for s in sends}}), reply
            assert (reply["run_streams"], reply["run_rows"]) == (len(held), sum(held.values())), reply
        elif expected in ("writer", "run"):
            assert status == 409 and reply["conflict"]["kind"] == expected, (status, reply)
        else:
            assert status == 409, (status, reply)

    @rule(writer=st.sampled_from(WRITERS), stream=st.sampled_from(STREAMS), count=st.integers(1, 5),
          void=st.booleans())
    def continue_at_the_end(self, writer: str, stream: str, count: int, void: bool) -> None:
        """New rows right after what is stored, by any writer: the ranges of several writers alternate, so
        a later send can cover another writer's range that is not the last one."""
        self.send(writer, False, {stream: (len(self.model.by_stream[stream]), count, void)})

    @rule(writer=st.sampled_from(WRITERS), stream=st.sampled_from(STREAMS), data=st.data())
    def resend_own_rows(self, writer: str, stream: str, data: st.DataObject) -> None:
        """A writer resends from anywhere in what it settled itself: acknowledged, nothing stored again."""
        own = [i for i, (w, _) in enumerate(self.model.by_stream[stream]) if w == writer]
        if not own or self.model.run_id != "run-1":
            return
        start = data.draw(st.sampled_from(own))
        count = 1
        while start + count in own:
            count += 1
        self.send(writer, False, {stream: (start, count, self.model.by_stream[stream][start][1])})

    @rule()
    def restart(self) -> None:
        self._stop()
        self._start()

    @invariant()
    def stored_rows_are_the_settling_writers_own(self) -> None:
        if self.model.run_id is None:
            return
        for stream, settled in self.model.by_stream.items():
            status, page = self._get(f"/api/v1/experiments/{self.prefix}/metrics/{stream.split('/', 1)[1]}"
                                     "?start=0&limit=1000")
            rows = page.get("rows", []) if status == 200 else []
            expected = [(i, w) for i, (w, void) in enumerate(settled) if not void]
            assert [(r["index"], r["data"]["w"]) for r in rows] == expected, (stream, rows, settled)
            assert all(r["data"]["step"] == r["index"] for r in rows)

    def teardown(self) -> None:
        try:
            self._stop()
        finally:
            self.loop.close()
            shutil.rmtree(self.data, ignore_errors=True)


#: how hard the contract suite drives the model on each backend (fast ring: about 15 s on SQLite). No
#: shrinking: a failing sequence is reported as found (25 steps at most, readable), since shrinking it
#: through the real app and its restarts takes minutes, past the suite's timeout
EXACTLY_ONCE_SETTINGS = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                 phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target])


# -- the uploader against a scripted server -------------------------------------------------------------

ROWS = 60
TRAIN = "metrics/train"


@pytest.fixture(scope="module")
def logged_run() -> Iterator[Path]:
    """One run of ROWS metric rows, copied afresh for every example."""
    from ml_dash import Experiment

    where = Path(tempfile.mkdtemp(prefix="ml-dash-model-run-"))
    exp = Experiment(prefix="a/b/c", local_path=str(where / "a" / "b" / "c"))
    with exp.run:
        for i in range(ROWS):
            exp.metrics("train").log(step=i)
    yield exp.directory
    shutil.rmtree(where, ignore_errors=True)


class PickyServer(FakeTransport):
    """The fake server, refusing some rows for their content (a 422 naming the first such row that is not
    stored yet), every time they come as data, as a real server refuses a bad row on every resend."""

    def __init__(self, bad_rows: set[int], clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.bad_rows = bad_rows

    def _store(self, request: Request) -> Outcome:
        payload = (request.body or {}).get("streams", {}).get(TRAIN, {})
        start = payload.get("start", 0)
        new = range(max(start, self.stored.get(TRAIN, 0)), start + request.rows(TRAIN))
        bad = sorted(self.bad_rows.intersection(new))
        if bad and start <= self.stored.get(TRAIN, 0):
            return Outcome(422, body={"error": f"row {bad[0]} is bad", "stream": TRAIN, "index": bad[0]})
        return super()._store(request)

    def lose_tail(self) -> None:
        """Restored from an older backup: the rows (and voids) past half of what it held are gone."""
        kept = self.stored.get(TRAIN, 0) // 2
        self.stored[TRAIN] = kept
        self.rows[TRAIN] = {i: v for i, v in self.rows.get(TRAIN, {}).items() if i < kept}
        self.voids[TRAIN] = [v for v in self.voids.get(TRAIN, []) if v[0] + v[1] <= kept]


#: Retry-After as servers write it: delta-seconds (whole, zero, huge, negative, fractional), HTTP dates
#: ahead of and behind the client's clock (``{ahead}``: seconds from now), and values that mean nothing
RETRY_AFTER = {"ra-seconds": "3", "ra-zero": "0", "ra-huge": "10000", "ra-negative": "-5", "ra-fraction": "0.000000001",
               "ra-date-ahead": "{ahead:7}", "ra-date-behind": "{ahead:-30}", "ra-garbage": "soon", "ra-nan": "nan",
               "ra-empty": ""}


def _retry_after(header: str, clock: FakeClock) -> float | None:
    """The header read by the client's one parser (agent/upload/retry.py), as the transport reads it."""
    if header.startswith("{ahead:"):
        header = formatdate(clock.now + float(header[7:-1]), usegmt=True)
    return parse_retry_after(header, now=clock)


def _reply(kind: str, server: PickyServer) -> Any:
    """One scripted reply of the status table (a callable sees the request it answers)."""
    if kind in RETRY_AFTER:
        status = 429 if kind.endswith(("zero", "garbage", "empty")) else 503
        return lambda request: Outcome(status, retry_after_s=_retry_after(RETRY_AFTER[kind], server.clock))
    if kind == "ra-none":
        return Outcome(429)
    if kind in ("408", "500", "502", "504", "507"):
        return Outcome(int(kind))
    if kind in ("401", "403"):
        return Outcome(int(kind), body={"error": "no"})
    if kind == "reset-before":
        return Outcome(0, error="connection reset")

    def after_commit(request: Request) -> Outcome | None:
        if request.kind != "events":
            return None
        server._store(request)
        return Outcome(0, error="connection reset after the server committed")

    def too_large(request: Request) -> Outcome | None:
        return Outcome(413, body={"error": "too large"}) if request.rows(TRAIN) > 1 else None

    def lost_tail(request: Request) -> Outcome | None:
        if request.kind != "events":
            return None
        server.lose_tail()
        return server._store(request)  # answered as the server now is: a 409 with its counts, or a 2xx

    return {"reset-after": after_commit, "413": too_large, "lose-tail": lost_tail}[kind]


KINDS = ["ok", *RETRY_AFTER, "ra-none", "408", "500", "502", "504", "507", "401", "403", "reset-before", "reset-after",
         "413", "lose-tail"]


@settings(max_examples=60, deadline=None)
@given(script=st.lists(st.sampled_from(KINDS), max_size=14), batch_rows=st.sampled_from([7, 25, 1000]),
       bad_rows=st.sets(st.integers(0, ROWS - 1), max_size=3))
# found by this test: the void of a refused row stored, its answer lost (a reset after the commit), the pass
# stopped (401); the next process sent the row again over the void, and counted it acknowledged
@example(script=["lose-tail", "reset-after", "401"], batch_rows=7, bad_rows={0})
def test_the_uploader_stores_every_row_once_or_sets_it_aside_whatever_the_server_answers(
        logged_run: Path, script: list[str], batch_rows: int, bad_rows: set[int]) -> None:
    work = Path(tempfile.mkdtemp(prefix="ml-dash-model-up-"))
    try:
        directory = work / "run"
        shutil.copytree(logged_run, directory)
        clock = FakeClock()
        server = PickyServer(bad_rows, clock)
        server.script = [_reply(kind, server) for kind in script if kind != "ok"]
        report = None
        for _ in range(len(script) + 2):  # 401/403 and the end of a deadline stop a pass; the next goes on
            uploader = RunUploader(directory, "a/b/c", server, batch_rows=batch_rows, clock=clock, sleep=clock.sleep)
            report = asyncio.run(uploader.upload(Deadline(3600.0, clock)))
            status = uploader.stream_status({TRAIN: ROWS})[TRAIN]  # what exp.stats() says in remote mode
            assert sum(status.values()) == ROWS and status["pending_upload"] == report.pending_rows, (script, status)
            if report.complete:
                break
        assert report is not None and report.complete, (script, report)
        assert status == {"acknowledged": ROWS - len(bad_rows), "set_aside": len(bad_rows), "pending_upload": 0}
        data = server.rows.get(TRAIN, {})
        voids = {i for start, count, _ in server.voids.get(TRAIN, []) for i in range(start, start + count)}
        assert voids == bad_rows and not (set(data) & voids), (script, sorted(voids))
        assert set(data) | voids == set(range(ROWS)) and server.stored[TRAIN] == ROWS, script
        assert all(row["step"] == i for i, row in data.items()), script
        records = [json.loads(p.read_text()) for p in (directory / ".ml-dash-rejected").glob("*.json")]
        assert sorted(r["first"] for r in records) == sorted(bad_rows), script  # one record per set-aside row
        assert sum(set_aside_counts(directory).get(TRAIN, {}).values()) == len(bad_rows), script
        lines = (directory / "metrics/train/data.jsonl").read_text().splitlines()
        assert [json.loads(line)["index"] for line in lines] == list(range(ROWS))  # nothing on disk touched
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- the buffer's byte bound under random row sizes and a slow disk ------------------------------------------
# docs/guarantees.md "Memory": a row that holds strings longer than 64 characters is counted at its own size, checked
# before it is appended; rows the agent has taken but not yet written count too; past the budget a call
# waits at most ML_DASH_MAX_BLOCK_S, then its row is dropped and counted as buffer_full.

MIB = 1_048_576


class SlowDisk:
    """The disk seam: agent/handles.py's ``_write_all`` (the write syscalls, on the agent's I/O thread)
    takes the next of ``delays`` seconds before each append, as a slow or busy disk would."""

    def __init__(self, delays: list[float]) -> None:
        from ml_dash.agent import handles

        self.real = handles._write_all
        self.delays = delays
        self.calls = 0

    def __call__(self, fd: int, blobs: list[bytes]) -> None:
        import time

        time.sleep(self.delays[self.calls % len(self.delays)])
        self.calls += 1
        self.real(fd, blobs)


class HeldRows:
    """The reference model: the rows accepted and neither written nor dropped, oldest first, each with
    its size by docs/guarantees.md's counting (its strings' UTF-8 bytes; 16 per other value), and the peak
    of the big rows (strings past 64 characters) among them: the bytes the budget bounds exactly."""

    def __init__(self) -> None:
        self.kept: list[tuple[int, int, bool]] = []  # (step, size, big) of rows accepted and not dropped
        self.dropped = 0
        self.peak_big = 0

    def accepted(self, step: int, text: str, dropped: bool) -> None:
        if dropped:
            self.dropped += 1
        else:
            self.kept.append((step, len(text.encode()) + len("text") + len("step") + 16, len(text) > 64))

    def written(self, count: int) -> None:
        """Rows are written in the order they were accepted: the first ``count`` kept rows are on disk."""
        held = self.kept[count:]
        self.peak_big = max(self.peak_big, sum(size for _, size, big in held if big))


@settings(max_examples=20, deadline=None)
@given(texts=st.lists(st.one_of(st.integers(0, 64), st.integers(65, 400_000), st.integers(20_000, 120_000)),
                      min_size=10, max_size=40),
       delays=st.lists(st.sampled_from([0.0, 0.002, 0.01, 0.03]), min_size=1, max_size=4),
       budget_mib=st.sampled_from([0.25, 0.5, 1.0]), max_block_s=st.sampled_from([0.0, 0.005, 0.05]))
def test_the_buffer_holds_at_most_its_budget_whatever_the_row_sizes_and_disk_delays(
        texts: list[int], delays: list[float], budget_mib: float, max_block_s: float) -> None:
    """Rows of random sizes logged into a run whose disk takes random delays per write; after every call
    the model learns whether the row was dropped (the buffer_full count moved: one thread logs, so a drop
    is its own row) and how many rows are written (in order): the big rows held never exceed the budget,
    and at the end every accepted row is on disk in order or counted as dropped for buffer_full."""
    from ml_dash import Experiment
    from ml_dash.agent import handles
    from ml_dash.agent.runtime import Agent

    work = Path(tempfile.mkdtemp(prefix="ml-dash-model-buffer-"))
    budget = Agent.instance().budget
    model = HeldRows()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(handles, "_write_all", SlowDisk(delays))
            patch.setattr(budget, "capacity_bytes", int(budget_mib * MIB))
            patch.setattr(budget, "max_block_s", max_block_s)
            exp = Experiment(prefix="a/b/c", local_path=str(work / "a" / "b" / "c"))
            with exp.run:
                train = exp.metrics("train")
                for step, length in enumerate(texts):
                    text = chr(ord("a") + step % 26) * length
                    before = exp.stats()["streams"].get("metrics/train", {}).get("dropped", {}).get("buffer_full", 0)
                    train.log(step=step, text=text)
                    stats = exp.stats()["streams"]["metrics/train"]
                    model.accepted(step, text, stats["dropped"].get("buffer_full", 0) > before)
                    model.written(stats["written"])
                    assert model.peak_big <= budget_mib * MIB, (model.peak_big, budget_mib, texts, delays)
        target(model.peak_big / (budget_mib * MIB))  # towards examples that fill the buffer
        stats = exp.stats()["streams"]["metrics/train"]
        assert stats["accepted"] == len(texts) and stats["pending"] == 0, stats
        assert stats["dropped"] == ({"buffer_full": model.dropped} if model.dropped else {}), stats
        assert stats["written"] == len(model.kept), stats
        lines = [json.loads(line) for line in (exp.directory / "metrics/train/data.jsonl").read_text().splitlines()]
        assert [r["data"]["step"] for r in lines] == [step for step, _, _ in model.kept]  # each once, in order
        assert [r["index"] for r in lines] == list(range(len(model.kept)))
        assert all(len(r["data"]["text"]) == texts[r["data"]["step"]] for r in lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)
