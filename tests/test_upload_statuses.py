"""Every status branch of the uploader against a fake transport and a fake clock (milliseconds each).

The real thing (a server process, a fault proxy) is in test_faults_remote.py; here each reply is
scripted, so the exact waits, the rewind, the split and the set-aside can be asserted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload.live_upload import LiveUpload
from ml_dash.agent.upload.rejects import set_aside_counts
from ml_dash.agent.upload.retry import Outcome
from ml_dash.agent.upload.uploader import RunUploader, UploadReport
from ml_dash.format.cursor import StreamCursor, UploadCursor

from .fake_server import FakeClock, FakeTransport, Request

TRAIN = "metrics/train"


def _run(rows: int, prefix: str = "a/b/c", params: dict | None = None) -> Path:
    exp = Experiment(prefix=prefix)
    with exp.run:
        if params is not None:
            exp.params.set(params)
        for i in range(rows):
            exp.metrics("train").log(step=i)
    return exp.directory


def _run_of(rows: int, *names: str) -> Path:
    """A run of ``a/b/c`` logging ``rows`` rows (step = index) to each metric of ``names``."""
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(rows):
            for name in names:
                exp.metrics(name).log(step=i)
    return exp.directory


def _log_more(name: str, steps: range, **where: Path) -> None:
    """The run of ``a/b/c`` started again (it goes on), logging ``steps`` to the metric ``name``."""
    more = Experiment(prefix="a/b/c", **where)
    with more.run:
        for i in steps:
            more.metrics(name).log(step=i)


def _upload(directory: Path, transport: FakeTransport, deadline_s: float = 60.0, batch_rows: int = 1000,
            uploader: RunUploader | None = None, prefix: str = "a/b/c") -> tuple[UploadReport, RunUploader]:
    clock = transport.clock or FakeClock()
    transport.clock = clock
    uploader = uploader or RunUploader(directory, prefix, transport, batch_rows=batch_rows, clock=clock,
                                       sleep=clock.sleep)
    report = asyncio.run(uploader.upload(Deadline(deadline_s, clock)))
    return report, uploader


def _stored_steps(transport: FakeTransport, stream: str = TRAIN) -> list[int]:
    return sorted(transport.rows.get(stream, {}))


def _sends_row(request: Request, index: int) -> bool:
    """Whether ``request`` carries row ``index`` of the train stream as data (not as a void)."""
    payload = (request.body or {}).get("streams", {}).get(TRAIN, {})
    start = payload.get("start", 0)
    return "void" not in payload and start <= index < start + request.rows(TRAIN)


def _refusing_row(index: int) -> Callable[[Request], Outcome | None]:
    """A scripted reply refusing row ``index`` for its value whenever it comes as data (a 400 naming it)."""
    def refuse(request: Request) -> Outcome | None:
        if _sends_row(request, index):
            return Outcome(400, body={"error": "value out of range", "stream": TRAIN, "index": index})
        return None

    return refuse


def _adoption_pending(directory: Path) -> None:
    """Mark ``directory`` as resumed while the server was away: it asks the server which run it continues."""
    cursor = UploadCursor.load(directory, FakeTransport.remote, "a/b/c")
    cursor.adopt = "pending"
    cursor.save()


def _continuing_directory(workdir: Path, steps: range) -> Path:
    """A second directory continuing ``a/b/c`` (logging ``steps``), resumed while the server was away."""
    elsewhere = Experiment(prefix="a/b/c", local_path=workdir / "other" / "a/b/c")
    with elsewhere.run:
        for i in steps:
            elsewhere.metrics("train").log(step=i)
    _adoption_pending(elsewhere.directory)
    return elsewhere.directory


def test_row3_retry_after_is_waited_exactly_then_everything_is_sent(workdir: Path) -> None:
    directory = _run(50)
    transport = FakeTransport([Outcome(503, retry_after_s=2.0), Outcome(429, retry_after_s=7.5)])
    report, _ = _upload(directory, transport)
    assert transport.clock.sleeps == [2.0, 7.5]  # as told, not the backoff schedule
    assert report.complete and _stored_steps(transport) == list(range(50))


@pytest.mark.parametrize("status", [500, 502, 504, 507])
def test_server_errors_are_retried_with_backoff(workdir: Path, status: int) -> None:
    directory = _run(20)
    transport = FakeTransport([Outcome(status), Outcome(status)])
    report, _ = _upload(directory, transport)
    assert len(transport.clock.sleeps) == 2 and all(0 <= s <= 30 for s in transport.clock.sleeps)
    assert report.complete and _stored_steps(transport) == list(range(20))


def test_row4_timeouts_are_retried_until_the_deadline_then_the_rows_wait_on_disk(workdir: Path) -> None:
    directory = _run(20)
    transport = FakeTransport([Outcome(0, error="timed out")] * 1000)
    report, _ = _upload(directory, transport, deadline_s=45.0)
    assert report.unreachable and report.reason == "timed out" and report.pending_rows == 20
    assert report.unreachable_since is not None  # when the failures began, for the message that says so
    assert sum(transport.clock.sleeps) <= 45.0 + 1e-6 and len(transport.events()) < 20  # backing off, within the deadline


def test_a_409_with_the_servers_count_rewinds_and_resends_what_it_lacks(workdir: Path) -> None:
    directory = _run(300)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()
    transport.stored[TRAIN] = 120  # the server kept only part of the run
    transport.rows[TRAIN] = {i: True for i in range(120)}
    transport.run_id = json.loads((directory / "experiment.json").read_text())["run_id"]
    cursor = UploadCursor.load(directory, transport.remote, "a/b/c")
    assert cursor.at(TRAIN).acked == 300  # the cursor believes the server has everything
    _log_more("train", range(300, 301))
    report, _ = _upload(directory, transport)
    assert report.complete and _stored_steps(transport) == list(range(301))
    assert any(r.body["streams"].get(TRAIN, {}).get("start") == 120 for r in transport.events())


def test_row21_a_server_that_lost_its_data_gets_everything_again_even_with_nothing_new(workdir: Path) -> None:
    directory = _run(200)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()  # same URL, fresh store
    report, _ = _upload(directory, transport)  # nothing new on disk: the first reply says the server lacks it
    assert report.complete and report.sent_rows == 200 and _stored_steps(transport) == list(range(200))


def test_a_413_splits_the_batch_until_it_fits(workdir: Path) -> None:
    directory = _run(1000)

    def too_big(request: Request) -> Outcome | None:
        return Outcome(413, body={"error": "too large"}) if request.rows(TRAIN) > 200 else None

    transport = FakeTransport([too_big] * 20)
    report, uploader = _upload(directory, transport)
    assert report.complete and _stored_steps(transport) == list(range(1000))
    assert max(r.rows(TRAIN) for r in transport.events()) == 1000  # tried whole first
    assert uploader.max_rows == 125  # halved until it fitted: 500, 250, 125


def test_a_row_the_server_refuses_is_set_aside_alone_and_the_rest_is_stored(workdir: Path) -> None:
    directory = _run(100)
    transport = FakeTransport([_refusing_row(37)] * 10)
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 1
    assert _stored_steps(transport) == [i for i in range(100) if i != 37]
    assert transport.voids[TRAIN] == [(37, 1, "rejected")] and transport.stored[TRAIN] == 100
    counts = set_aside_counts(directory)
    assert counts == {TRAIN: {"rejected": 1}}
    record = json.loads(next((directory / ".ml-dash-rejected").iterdir()).read_text())
    assert record["status"] == 400 and "value out of range" in record["detail"] and '"index":37' in record["content"]


def test_a_request_the_server_refuses_without_naming_a_row_stops_and_keeps_everything(workdir: Path) -> None:
    directory = _run(10)
    transport = FakeTransport([Outcome(415, body={"error": "use zstd"})] * 2)  # with its documents, then without
    report, _ = _upload(directory, transport)
    assert report.stopped == "rejected" and "use zstd" in report.reason and report.pending_rows == 10
    assert not (directory / ".ml-dash-rejected").exists() and transport.stored == {}


@pytest.mark.parametrize("status, stopped", [(401, "auth"), (403, "forbidden")])
def test_refused_credentials_stop_the_upload_and_say_which(workdir: Path, status: int, stopped: str) -> None:
    directory = _run(10)
    transport = FakeTransport([Outcome(status, body={"error": "nope"})])
    report, _ = _upload(directory, transport)
    assert report.stopped == stopped and report.pending_rows == 10 and len(transport.events()) == 1


def test_another_run_under_the_prefix_stops_the_upload_as_a_conflict(workdir: Path) -> None:
    """Nothing of the run goes to a prefix that holds another run: not its rows, nor its files."""
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(10):
            exp.metrics("train").log(step=i)
        exp.files("x").save_text("hello", to="a.txt")
    transport = FakeTransport()
    transport.run_id = "someone-elses-run"
    report, _ = _upload(exp.directory, transport)
    assert report.stopped == "conflict" and report.conflict["run_id"] == "someone-elses-run"
    assert report.pending_rows == 10 and transport.stored == {}
    assert report.pending_files == 1 and transport.files == {} and [r.kind for r in transport.requests] == ["events"]


def test_row18_a_value_msgpack_cannot_carry_costs_only_its_row(workdir: Path) -> None:
    directory = _run(30)
    data = directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    lines[12] = lines[12].replace(b'"step":12', b'"step":1180591620717411303424')  # 2**70, as a hand edit would
    data.write_bytes(b"".join(lines))
    transport = FakeTransport()
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 1
    assert _stored_steps(transport) == [i for i in range(30) if i != 12]
    assert set_aside_counts(directory) == {TRAIN: {"unencodable": 1}}


def test_row13_damaged_lines_that_leave_a_gap_are_set_aside_and_the_rows_after_them_sent(workdir: Path) -> None:
    directory = _run(30)
    data = directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    lines[5] = b'{"index":5,"da\xff\xfe broken}\n'  # a flipped byte: row 5 is gone
    data.write_bytes(b"".join(lines))
    transport = FakeTransport()
    report, _ = _upload(directory, transport)
    assert report.complete and set_aside_counts(directory) == {TRAIN: {"damaged": 1}}
    assert _stored_steps(transport) == [i for i in range(30) if i != 5]


def test_row18_a_line_longer_than_the_read_limit_is_set_aside_instead_of_blocking_the_stream(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_dash.agent.upload import pending

    exp = Experiment(prefix="a/b/c")
    with exp.run:
        exp.metrics("train").log(step=0)
        exp.metrics("train").log(step=1, text="x" * 5000)
        exp.metrics("train").log(step=2)
    monkeypatch.setattr(pending, "MAX_READ_BYTES", 4096)
    monkeypatch.setattr(pending, "PIECE_BYTES", 1024)
    transport = FakeTransport()
    report, _ = _upload(exp.directory, transport)
    assert report.complete and set_aside_counts(exp.directory) == {TRAIN: {"too_long": 1}}
    assert _stored_steps(transport) == [0, 2]


def test_a_file_is_marked_sent_only_after_a_2xx(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        exp.files("m").save(b"weights", "w.bin")
    transport = FakeTransport([lambda r: Outcome(400, body={"error": "checksum mismatch"}) if r.kind == "file" else None])
    report, _ = _upload(exp.directory, transport)
    assert report.refused_files == [("m/w.bin", "HTTP 400: checksum mismatch")] and report.pending_files == 1
    assert UploadCursor.load(exp.directory, transport.remote, "a/b/c").files == {}
    again, _ = _upload(exp.directory, transport)  # the next sync tries again
    assert again.complete and again.sent_files == 1 and transport.files == {"m/w.bin": b"weights"}


def test_the_server_holding_more_than_the_directory_is_reported(workdir: Path) -> None:
    directory = _run(10)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.stored[TRAIN] = 25  # another directory's rows of the same run
    report, _ = _upload(directory, transport)
    assert report.server_has_more == {TRAIN: (25, 10)}


def test_row12_a_live_upload_refused_by_the_server_probes_once_a_minute_not_every_pass(workdir: Path) -> None:
    directory = _run(10)
    clock = FakeClock()
    transport = FakeTransport([Outcome(401, body={"error": "bad key"})] * 3, clock)
    uploader = RunUploader(directory, "a/b/c", transport, clock=clock, sleep=clock.sleep)
    live = LiveUpload(uploader, probe_s=60.0, clock=clock)

    async def passes(n: int, every_s: float) -> None:
        for _ in range(n):
            await live.run_pass()
            clock.now += every_s

    asyncio.run(passes(50, 1.0))  # 50 s of passes every second
    assert len(transport.events()) == 1 and live.state == "stopped"
    asyncio.run(passes(20, 1.0))  # past the minute: one probe
    assert len(transport.events()) == 2


def test_the_end_of_a_run_whose_server_never_answered_makes_one_attempt_without_waiting(workdir: Path) -> None:
    directory = _run(10)
    clock = FakeClock()
    transport = FakeTransport([Outcome(0, error="connection refused")] * 100, clock)
    uploader = RunUploader(directory, "a/b/c", transport, clock=clock, sleep=clock.sleep)
    live = LiveUpload(uploader, clock=clock)
    report = asyncio.run(live.finish(Deadline(30.0, clock)))
    assert len(transport.events()) == 1 and clock.sleeps == [] and report.unreachable and report.pending_rows == 10
    assert transport.closed


def test_row17_a_resumed_directory_adopts_the_servers_run_when_it_first_answers(workdir: Path) -> None:
    first = _run(5, "a/b/c")
    transport = FakeTransport()
    _upload(first, transport)
    elsewhere = _continuing_directory(workdir, range(5, 8))
    report, _ = _upload(elsewhere, transport)
    assert report.complete and transport.stored[TRAIN] == 8
    adopted = UploadCursor.load(elsewhere, transport.remote, "a/b/c")
    assert adopted.base(TRAIN) == 5 and adopted.at(TRAIN) == StreamCursor(3, (elsewhere /
                                                                             "metrics/train/data.jsonl").stat().st_size)


def test_the_end_of_a_run_whose_server_hangs_abandons_the_hung_request(workdir: Path) -> None:
    directory = _run(10)
    clock = FakeClock()
    transport = FakeTransport([Outcome(0, error="connection refused")], clock)
    transport.hanging = 1  # the background pass's request never gets an answer
    uploader = RunUploader(directory, "a/b/c", transport, clock=clock, sleep=clock.sleep)
    live = LiveUpload(uploader, clock=clock)

    async def run_and_end() -> UploadReport:
        live.start()
        for _ in range(100):  # until the background request is in flight
            if transport.requests:
                break
            await asyncio.sleep(0.01)
        return await live.finish(Deadline(30.0, clock))  # waiting for the hung request would take 30 s

    report = asyncio.run(asyncio.wait_for(run_and_end(), 10))
    assert len(transport.events()) == 2 and report.unreachable and report.pending_rows == 10


@pytest.mark.parametrize("status, rows", [(400, 10), (422, 10), (413, 1)])
def test_documents_the_server_refuses_do_not_hold_up_the_rows(workdir: Path, status: int, rows: int) -> None:
    """Whatever 4xx refuses a batch that carries the run's documents without naming a row (a 413 of a
    one-row batch included: the documents may be what is too large), the rows go again without them
    before any is set aside."""
    directory = _run(rows, params={"lr": 0.1})

    def refuse_params(request: Request) -> Outcome | None:
        return Outcome(status, body={"error": "params too odd"}) if "params" in request.body else None

    transport = FakeTransport([refuse_params] * 5)
    report, _ = _upload(directory, transport)
    assert _stored_steps(transport) == list(range(rows)) and report.pending_rows == 0
    assert report.refused_documents == f"HTTP {status}: params too odd" and not report.complete
    assert not (directory / ".ml-dash-rejected").exists()  # no row was set aside for the documents' sake


def test_a_413_of_a_batch_of_documents_only_is_said_as_refused_documents(workdir: Path) -> None:
    """Parameters set after every row was sent go alone; a 413 for them (too large) is theirs: said as
    refused documents, not taken for a refused row, and the upload is not stopped."""
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    exp.metrics("train").log(step=0)
    exp.flush()
    transport = FakeTransport(clock=FakeClock())
    uploader = RunUploader(exp.directory, "a/b/c", transport, clock=transport.clock, sleep=transport.clock.sleep)
    assert _upload(exp.directory, transport, uploader=uploader)[0].complete
    exp.params.set(notes="x" * 1000)
    exp.flush()
    transport.script = [lambda r: Outcome(413, body={"error": "params too large"}) if "params" in r.body else None]
    report, _ = _upload(exp.directory, transport, uploader=uploader)
    assert transport.events()[-1].rows(TRAIN) == 0 and report.stopped is None
    assert report.refused_documents == "HTTP 413: params too large"
    exp.run.complete()


def test_a_413_of_two_rows_splits_them(workdir: Path) -> None:
    directory = _run(2)
    transport = FakeTransport([lambda r: Outcome(413, body={"error": "too large"}) if r.rows(TRAIN) > 1 else None] * 5)
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 0 and _stored_steps(transport) == [0, 1]
    assert [r.rows(TRAIN) for r in transport.events()] == [2, 1, 1]


@pytest.mark.parametrize("index", [10, 50])  # just past the batch's last row, and far past it
def test_a_4xx_naming_a_row_the_batch_does_not_hold_sets_nothing_aside(workdir: Path, index: int) -> None:
    """Only a row of the request the server refused is set aside: an index past the batch (a server
    naming the wrong row) stops the upload as rejected, with every row still pending."""
    directory = _run(10)
    # twice: with the run's documents (which the uploader suspects first), then without them
    transport = FakeTransport([Outcome(400, body={"error": "value out of range", "stream": TRAIN, "index": index})] * 2)
    report, _ = _upload(directory, transport)
    assert report.stopped == "rejected" and report.set_aside_rows == 0 and report.pending_rows == 10
    assert TRAIN not in transport.voids and not (directory / ".ml-dash-rejected").exists()
    assert UploadCursor.load(directory, transport.remote, "a/b/c").refused == {}


def test_a_refused_row_an_earlier_process_recorded_is_sent_as_its_void_whatever_its_index(workdir: Path) -> None:
    """A refused row whose void the server may hold (its answer lost) is kept in the cursor, and a later
    process sends the void, never the row: whether it is still ahead of what the server acknowledged is
    decided by its index (here 600, past the status code it was refused with)."""
    directory = _run(700)
    transport = FakeTransport([lambda r: Outcome(401, body={"error": "no"}) if _sends_row(r, 500) else None])
    report, _ = _upload(directory, transport, batch_rows=500)  # rows 0-499 stored, then the key refused
    assert report.stopped == "auth" and _stored_steps(transport) == list(range(500))
    cursor = UploadCursor.load(directory, transport.remote, "a/b/c")
    cursor.refused[TRAIN] = (600, "value out of range", 422)  # as the process that was refused left it
    cursor.save()
    before = len(transport.events())
    report, _ = _upload(directory, transport, batch_rows=500)  # a new process (a new uploader)
    assert report.complete and transport.voids[TRAIN] == [(600, 1, "rejected")]
    assert _stored_steps(transport) == [i for i in range(700) if i != 600]
    assert not any(_sends_row(r, 600) for r in transport.events()[before:])


def _stored_data(transport: FakeTransport, stream: str = TRAIN) -> dict[int, object]:
    return dict(transport.rows.get(stream, {}))


def test_swapped_or_repeated_lines_are_never_stored_under_another_rows_index(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(20):
            exp.metrics("train").log(step=i, **({"odd": True} if i % 2 else {}))  # keys vary: the general read
    data = exp.directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    lines[7], lines[8] = lines[8], lines[7]  # out of order
    lines[12] = lines[2]  # a repeat of another row where row 12 was
    data.write_bytes(b"".join(lines))
    transport = FakeTransport()
    report, _ = _upload(exp.directory, transport)
    stored = _stored_data(transport)
    assert all(stored[i]["step"] == i for i in stored)  # whatever is stored is stored under its own index
    assert set(stored) == set(range(20)) - {7, 12} and report.set_aside_rows == 2


def test_a_line_that_is_json_but_not_a_record_is_set_aside_and_the_rest_goes_on(workdir: Path) -> None:
    directory = _run(20)
    data = directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    lines[7] = b"[7]\n"
    data.write_bytes(b"".join(lines))
    transport = FakeTransport()
    report, _ = _upload(directory, transport)
    assert report.complete and _stored_steps(transport) == [i for i in range(20) if i != 7]
    assert set_aside_counts(directory) == {TRAIN: {"damaged": 1}}


def test_a_cursor_offset_inside_a_line_is_corrected_not_taken_for_damage(workdir: Path) -> None:
    directory = _run(20)
    transport = FakeTransport()
    _upload(directory, transport)
    cursor = UploadCursor.load(directory, transport.remote, "a/b/c")
    lines = (directory / "metrics/train/data.jsonl").read_bytes().splitlines(keepends=True)
    cursor.streams[TRAIN] = StreamCursor(10, sum(map(len, lines[:10])) + 7)  # 7 bytes into row 10's line
    cursor.save()
    transport.lose_everything()
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 0 and _stored_steps(transport) == list(range(20))


@pytest.mark.parametrize("entry", [{"streams": "x"}, {"documents": [1]}, {"streams": {TRAIN: {"acked": 2**70}}},
                                   {"files": {"a": 1}}, {"adopt": {"run_id": "r", "base": "x"}},
                                   {"documents": {"docs_rev": "x"}}, {"refused": {TRAIN: {"index": "x"}}}])
def test_a_cursor_file_of_the_wrong_shape_reads_as_what_it_can(workdir: Path, entry: dict) -> None:
    directory = _run(5)
    (directory / ".ml-dash-upload.json").write_text(json.dumps(
        {"version": 2, "servers": {FakeTransport.remote: {"a/b/c": entry}}}))
    transport = FakeTransport()
    transport.run_id = None
    report, _ = _upload(directory, transport)
    assert report.pending_rows == 0 and _stored_steps(transport) in (list(range(5)), [])


def test_a_2xx_that_acknowledges_nothing_is_not_taken_for_an_acknowledgement(workdir: Path) -> None:
    directory = _run(10)
    transport = FakeTransport([Outcome(200, body=None)])  # a web page, not an ml-dash server
    report, _ = _upload(directory, transport)
    assert report.stopped == "invalid" and "without an acknowledgement" in report.reason
    assert report.pending_rows == 10 and UploadCursor.load(directory, transport.remote, "a/b/c").streams == {}


def test_a_request_that_cannot_be_made_is_not_retried(workdir: Path) -> None:
    directory = _run(3)
    transport = FakeTransport([Outcome(-1, error="the request cannot be made: bad header")] * 100)
    report, _ = _upload(directory, transport)
    assert report.stopped == "invalid" and len(transport.events()) == 1 and transport.clock.sleeps == []


def test_a_batch_names_at_most_max_streams_and_the_next_starts_after_its_last(workdir: Path) -> None:
    from ml_dash.agent.upload.batches import BatchBuilder
    from ml_dash.agent.upload.pending import MemoryChunks

    exp = Experiment(prefix="a/b/wide")
    with exp.run:
        for m in range(25):
            exp.metrics(f"m{m:02d}").log(v=m)
    builder = BatchBuilder(exp.directory, MemoryChunks(suspended=True), max_streams=10)
    cursor = UploadCursor.load(exp.directory, "http://x", "a/b/wide")

    def names() -> list[str]:  # the same cursor each time: as if every stream had rows again
        batch = asyncio.run(builder.next(cursor, {}, None, 1000))
        return [s.name for s in batch.streams]

    metrics = [f"metrics/m{m:02d}" for m in range(25)]
    first, second, third = names(), names(), names()
    assert first == metrics[:10]
    assert second == metrics[10:20]  # not the first ten again: every stream gets its turn
    assert third == [*metrics[20:], *metrics[:5]]


def test_a_row_too_large_even_alone_is_set_aside_after_the_splits_and_the_rest_is_stored(workdir: Path) -> None:
    """A 413 is a batch too large until the batch is one row: then that row is what the server cannot take
    (RELIABILITY.md: 413 of a single event is permanent for it), set aside with the status."""
    directory = _run(100)

    def too_large_with_row_37(request: Request) -> Outcome | None:
        return Outcome(413, body={"error": "too large"}) if _sends_row(request, 37) else None

    transport = FakeTransport([too_large_with_row_37] * 30)
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 1 and report.refused_documents is None, report
    assert _stored_steps(transport) == [i for i in range(100) if i != 37]
    assert transport.voids[TRAIN] == [(37, 1, "rejected")]
    record = json.loads(next((directory / ".ml-dash-rejected").iterdir()).read_text())
    assert record["first"] == 37 and record["status"] == 413


@pytest.mark.parametrize("extra", ["extra", "zz_extra"])  # found before the stored stream, and after it
def test_a_stream_the_server_will_not_start_waits_a_minute_while_the_others_go_on(workdir: Path, extra: str) -> None:
    """A 4xx naming streams the server will not start (422: the run's metric limit) holds those back, the
    rest is stored; they are offered again once 60 s have passed, not before (docs/remote.md). Their rows
    are counted as pending whichever order the streams are found in."""
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(10):
            exp.metrics("train").log(step=i)
            exp.metrics(extra).log(step=i)
    refusing = True

    def no_new_metric(request: Request) -> Outcome | None:
        if refusing and f"metrics/{extra}" in request.body.get("streams", {}):
            return Outcome(422, body={"error": "the run holds 1 metric, the most allowed", "limit": 1,
                                      "streams": [f"metrics/{extra}"]})
        return None

    transport = FakeTransport([no_new_metric] * 100)
    report, uploader = _upload(exp.directory, transport)
    assert _stored_steps(transport) == list(range(10)) and f"metrics/{extra}" not in transport.stored
    assert set(report.held_back) == {f"metrics/{extra}"} and report.stream_limit == 1 and report.pending_rows == 10
    assert report.held_back_rows == 10  # all of the pending rows: nothing else is waiting
    assert report.refused_documents is None  # the refusal was of the stream, not of the run's fields
    def offers() -> int:
        return sum(1 for r in transport.events() if f"metrics/{extra}" in r.body.get("streams", {}))

    sent = offers()
    transport.clock.now += 59.9
    report, _ = _upload(exp.directory, transport, uploader=uploader)
    assert offers() == sent and set(report.held_back) == {f"metrics/{extra}"}  # not offered yet
    refusing = False  # the operator raised the limit
    transport.clock.now += 0.2  # 60.1 s after the refusal
    report, _ = _upload(exp.directory, transport, uploader=uploader)
    assert report.complete and _stored_steps(transport, f"metrics/{extra}") == list(range(10))


def test_a_server_that_answers_the_same_rewind_to_the_same_rows_stops_the_pass_as_stuck(workdir: Path) -> None:
    """A 409 rewinds to the server's count and the batch is built again; a server that keeps answering so
    for the same rows (its count never moves) stops the pass after 3, saying so, instead of looping."""
    directory = _run(50)
    lying = Outcome(409, body={"acked": {TRAIN: 0}, "run_streams": 1, "run_rows": 0})
    transport = FakeTransport([lying] * 20)
    report, _ = _upload(directory, transport)
    assert report.stopped == "stuck" and "3 times to the same rows" in report.reason
    assert len(transport.events()) == 3 and report.pending_rows == 50


def _gone(request: Request) -> Outcome | None:
    """The count request of a run the server no longer has (deleted, or a store restored without it)."""
    return Outcome(404, body={"error": "no such run"}) if request.kind == "run" else None


def test_a_server_that_no_longer_has_the_run_when_asked_for_its_counts_gets_everything_again(workdir: Path) -> None:
    directory = _run(200)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()
    transport.script = [_gone]
    report, _ = _upload(directory, transport)  # its reply's run rows (0) say the server lost them: a count, a 404
    assert [r.kind for r in transport.requests].count("run") == 1 and transport.script == []
    assert report.complete and report.sent_rows == 200 and _stored_steps(transport) == list(range(200))


@pytest.mark.parametrize("status, stopped", [(401, "auth"), (403, "forbidden")])
def test_refused_credentials_on_the_count_request_stop_the_upload_and_say_which(workdir: Path, status: int,
                                                                                 stopped: str) -> None:
    directory = _run(20)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()
    transport.script = [lambda r: Outcome(status, body={"error": "nope"}) if r.kind == "run" else None]
    report, _ = _upload(directory, transport)
    assert report.stopped == stopped and "nope" in report.reason and not report.unreachable


def test_no_request_of_a_pass_may_wait_past_its_deadline(workdir: Path) -> None:
    """Each request (the adoption's question, the rows, the count after a loss) is given the time left
    before the pass's deadline, not the 30 s request timeout, once less than that is left."""
    directory = _run(200)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()  # its next reply says it lost rows: a count request follows
    _adoption_pending(directory)
    clock = transport.clock
    assert clock is not None
    began, before = clock(), len(transport.requests)
    report, _ = _upload(directory, transport, deadline_s=5.0)
    assert report.complete and _stored_steps(transport) == list(range(200))
    asked = transport.requests[before:]
    kinds = {r.kind for r in asked}
    assert kinds == {"run", "events"} and [r.kind for r in asked].count("run") >= 2  # adoption and count
    assert all(r.timeout_s is not None and 0 < r.timeout_s <= 5.0 - (clock() - began) + 1e-9 for r in asked)


def test_a_directory_resumed_while_away_whose_server_holds_its_own_run_just_goes_on(workdir: Path) -> None:
    """The server's run is this directory's own (the same run id): nothing to adopt, the rows go on from
    where the server stopped, each once, numbered as before (rows 0-299, then 300-599)."""
    directory = _run(300)
    transport = FakeTransport()
    _upload(directory, transport)
    again = Experiment(prefix="a/b/c")  # the same directory started again: its run goes on
    with again.run:
        for i in range(300, 600):
            again.metrics("train").log(step=i)
    _adoption_pending(directory)
    report, _ = _upload(directory, transport)
    assert report.complete and _stored_steps(transport) == list(range(600))
    assert all(transport.rows[TRAIN][i]["step"] == i for i in range(600))
    cursor = UploadCursor.load(directory, transport.remote, "a/b/c")
    assert cursor.adopt is None and cursor.base(TRAIN) == 0


def _totals(transport: FakeTransport, more: int) -> Callable[[Request], Outcome | None]:
    """Replies as the fake server's, with the run's total rows ``more`` above what it holds (as if other
    directories had written to the run); ``more`` is read at each request."""
    def reply(request: Request) -> Outcome | None:
        if request.kind != "events":
            return None
        outcome = transport._store(request)
        body = dict(outcome.body or {})
        if isinstance(body.get("run_rows"), int):
            body["run_rows"] += more
        return Outcome(outcome.status, body=body)

    return reply


def test_a_server_holding_more_of_the_run_is_asked_for_its_counts_once_not_at_every_batch(workdir: Path) -> None:
    directory = _run(1000)
    transport = FakeTransport()
    transport.script = [_totals(transport, 5000)] * 10
    report, _ = _upload(directory, transport, batch_rows=100)
    assert report.complete and _stored_steps(transport) == list(range(1000))
    assert [r.kind for r in transport.requests].count("run") == 1 and len(transport.events()) == 10


def test_an_upload_whose_server_agrees_asks_for_no_counts(workdir: Path) -> None:
    directory = _run(1000)  # run totals past 256: equal, not the same int object
    transport = FakeTransport()
    report, _ = _upload(directory, transport, batch_rows=100)
    assert report.complete and [r.kind for r in transport.requests] == ["events"] * 10


def test_a_loss_is_still_seen_after_the_server_was_found_to_hold_more(workdir: Path) -> None:
    """Once a server's totals said it holds more than this directory sent (asked once, then not again),
    totals below what it acknowledged still mean a loss, of a stream the reply does not name too: every
    count is asked and that stream's rows go again."""
    directory = _run_of(500, "train", "val")
    transport = FakeTransport()
    surplus = [5000]

    def reply(request: Request) -> Outcome | None:
        return _totals(transport, surplus[0])(request)

    transport.script = [reply] * 100
    _, uploader = _upload(directory, transport, batch_rows=200)  # one uploader throughout, as in a live run
    assert [r.kind for r in transport.requests].count("run") == 1  # the surplus, asked about once
    _log_more("train", range(500, 600))  # the next batch carries train only
    transport.rows["metrics/val"] = {i: row for i, row in transport.rows["metrics/val"].items() if i < 300}
    transport.stored["metrics/val"] = 300  # the server lost val's rows 300-499
    surplus[0] = 0
    before = len(transport.events())
    report, _ = _upload(directory, transport, uploader=uploader)
    assert report.complete and _stored_steps(transport) == list(range(600))
    assert _stored_steps(transport, "metrics/val") == list(range(500))
    # the counts said which stream lost what: train, which lost nothing, is not sent again
    assert all(r.body["streams"].get(TRAIN, {}).get("start", 500) >= 500 for r in transport.events()[before:])


@pytest.mark.parametrize("kept", [3, 4])  # two rows short of the 5 the directory follows, and one
def test_a_409_saying_the_server_holds_fewer_rows_than_the_directory_continues_after_stops_as_lost(
        workdir: Path, kept: int) -> None:
    first = _run(5, "a/b/c")
    transport = FakeTransport()
    _upload(first, transport)
    elsewhere = _continuing_directory(workdir, range(5, 10))
    _upload(elsewhere, transport)  # rows 5-9 after the server's 5
    _log_more("train", range(10, 11), local_path=workdir / "other" / "a/b/c")
    transport.rows[TRAIN] = {i: row for i, row in transport.rows[TRAIN].items() if i < kept}
    transport.stored[TRAIN] = kept  # it lost rows this directory's first row follows
    before = len(transport.events())
    report, _ = _upload(elsewhere, transport)
    assert report.stopped == "lost" and "fewer than the 5" in report.reason
    assert len(transport.events()) == before + 1  # the one 409, then nothing sent again


def test_a_count_request_answered_by_something_else_than_an_ml_dash_server_stops_the_upload(workdir: Path) -> None:
    directory = _run(200)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()  # its next reply says it lost rows: a count request follows
    transport.script = [lambda r: Outcome(-1, error="not an ml-dash server's answer") if r.kind == "run" else None]
    report, _ = _upload(directory, transport)
    assert report.stopped == "invalid" and not report.unreachable


@pytest.mark.parametrize("failure", [Outcome(503, retry_after_s=1.0), Outcome(0, error="reset")])
def test_a_count_request_that_keeps_failing_leaves_the_upload_unreachable_not_stopped(workdir: Path,
                                                                                     failure: Outcome) -> None:
    directory = _run(200)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.lose_everything()  # its next reply says it lost rows: a count request follows, and fails
    transport.script = [lambda r: failure if r.kind == "run" else None] * 1000
    report, _ = _upload(directory, transport, deadline_s=10.0)
    assert report.unreachable and report.stopped is None and report.reason


def test_an_adoption_question_answered_by_something_else_than_an_ml_dash_server_stops_the_upload(
        workdir: Path) -> None:
    directory = _run(5)
    _adoption_pending(directory)
    transport = FakeTransport([Outcome(-1, error="not an ml-dash server's answer")])
    report, _ = _upload(directory, transport)
    assert report.stopped == "invalid" and not report.unreachable and not transport.events()


@pytest.mark.parametrize("failure", [Outcome(503, retry_after_s=1.0), Outcome(0, error="reset")])
def test_an_adoption_question_that_keeps_failing_leaves_the_upload_unreachable_not_stopped(
        workdir: Path, failure: Outcome) -> None:
    directory = _run(5)
    _adoption_pending(directory)
    transport = FakeTransport([lambda r: failure if r.kind == "run" else None] * 1000)
    report, _ = _upload(directory, transport, deadline_s=10.0)
    assert report.unreachable and report.stopped is None and report.pending_rows == 5 and not transport.events()
    assert UploadCursor.load(directory, transport.remote, "a/b/c").adopt == "pending"  # asked again next pass


def test_a_reply_without_the_runs_totals_is_taken_for_what_it_names(workdir: Path) -> None:
    """An older server's reply names the request's streams without the run's totals: the rows it names
    are acknowledged, nothing more is asked."""
    directory = _run(300)
    transport = FakeTransport()

    def no_totals(request: Request) -> Outcome | None:
        outcome = transport._store(request)
        body = {k: v for k, v in (outcome.body or {}).items() if k not in ("run_rows", "run_streams")}
        return Outcome(outcome.status, body=body)

    transport.script = [no_totals] * 10
    report, _ = _upload(directory, transport, batch_rows=100)
    assert report.complete and _stored_steps(transport) == list(range(300))
    assert [r.kind for r in transport.requests] == ["events"] * 3


def test_a_reply_naming_every_stream_counts_one_it_leaves_out_as_holding_nothing(workdir: Path) -> None:
    """A reply without the run's totals names every stream the server holds (an older server): a stream it
    leaves out holds no row, so all of that stream's rows go again, its first one included."""
    directory = _run_of(5, "train", "val")
    transport = FakeTransport()
    _, uploader = _upload(directory, transport)
    _log_more("train", range(5, 6))  # the next batch carries train only
    del transport.rows["metrics/val"], transport.stored["metrics/val"]  # the server lost val

    def every_stream(request: Request) -> Outcome | None:
        transport._store(request)
        return Outcome(200, body={"acked": dict(transport.stored)})  # no totals: every stream it holds

    transport.script = [every_stream]
    report, _ = _upload(directory, transport, uploader=uploader)
    assert report.complete and _stored_steps(transport, "metrics/val") == list(range(5))


def test_a_row_the_server_names_is_set_aside_in_the_stream_it_names(workdir: Path) -> None:
    directory = _run_of(10, "train", "val")
    def refuse_val_3(request: Request) -> Outcome | None:
        payload = request.body["streams"].get("metrics/val", {})
        start, rows = payload.get("start", 0), request.rows("metrics/val")
        if start <= 3 < start + rows:  # train's row 3 is in the same request, at the same index
            return Outcome(400, body={"error": "value out of range", "stream": "metrics/val", "index": 3})
        return None

    transport = FakeTransport([refuse_val_3] * 5)
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 1 and transport.voids == {"metrics/val": [(3, 1, "rejected")]}
    assert _stored_steps(transport) == list(range(10)) and _stored_steps(transport, "metrics/val") == [
        0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_a_resumed_directory_whose_server_answers_without_a_run_id_starts_the_run(workdir: Path) -> None:
    directory = _run(5)
    _adoption_pending(directory)
    transport = FakeTransport([lambda r: Outcome(200, body={"streams": {}}) if r.kind == "run" else None])
    report, _ = _upload(directory, transport)
    assert report.complete and _stored_steps(transport) == list(range(5))
    assert UploadCursor.load(directory, transport.remote, "a/b/c").adopt is None


def test_a_stream_limit_that_is_not_a_count_is_ignored_and_the_stream_still_held_back(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        exp.metrics("train").log(step=0)
        exp.metrics("extra").log(step=0)
    refusal = {"error": "no more metrics", "limit": "many", "streams": ["metrics/extra"]}
    transport = FakeTransport([lambda r: Outcome(422, body=refusal) if "metrics/extra" in r.body["streams"] else None])
    report, _ = _upload(exp.directory, transport)
    assert set(report.held_back) == {"metrics/extra"} and report.stream_limit is None
    assert _stored_steps(transport) == [0]


def test_a_file_shorter_than_what_the_server_acknowledged_counts_nothing_pending(workdir: Path) -> None:
    """A stream file cut below its acknowledged rows (restored from an older copy) has nothing pending,
    not a negative count that would hide another stream's pending rows."""
    directory = _run_of(10, "train", "val")
    transport = FakeTransport()
    _, uploader = _upload(directory, transport)
    data = directory / "metrics/train/data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:-1]))  # one row fewer than the server acknowledged
    _log_more("val", range(10, 11))
    assert asyncio.run(uploader.pending_rows()) == 1


def test_stream_status_before_the_cursor_is_read_counts_nothing_acknowledged(workdir: Path) -> None:
    directory = _run(10)
    transport = FakeTransport()
    uploader = RunUploader(directory, "a/b/c", transport)
    uploader.set_aside = {TRAIN: 3}
    assert uploader.stream_status({TRAIN: 10}) == {
        TRAIN: {"acknowledged": 0, "set_aside": 3, "pending_upload": 10}}
    _upload(directory, transport, uploader=uploader)
    uploader.set_aside = {}
    # fewer rows written than acknowledged (a file restored from an older copy): nothing pending, not -5
    assert uploader.stream_status({TRAIN: 5}) == {TRAIN: {"acknowledged": 10, "set_aside": 0, "pending_upload": 0}}


def test_a_resumed_directory_whose_server_has_no_such_run_starts_it(workdir: Path) -> None:
    directory = _run(5, "a/b/c")
    _adoption_pending(directory)  # the server never had the run
    transport = FakeTransport([_gone])
    report, _ = _upload(directory, transport)
    assert report.complete and _stored_steps(transport) == list(range(5)) and transport.script == []
    assert UploadCursor.load(directory, transport.remote, "a/b/c").adopt is None


def test_a_count_request_the_server_keeps_failing_leaves_the_rows_waiting_not_resent(workdir: Path) -> None:
    """A 503 on the count request is the server being away, not the run being gone: nothing is rewound or
    sent again, and the pass ends unreachable within its deadline."""
    directory = _run(200)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.stored[TRAIN] = 120  # it lost part of the run: its replies will say so
    sent = len(transport.events())
    transport.script = [lambda r: Outcome(503, retry_after_s=1.0) if r.kind == "run" else None] * 1000
    report, _ = _upload(directory, transport, deadline_s=10.0)
    assert report.unreachable and report.stopped is None and "503" in report.reason
    assert len(transport.events()) == sent + 1 and transport.stored[TRAIN] == 120  # its first reply, then counts


@pytest.mark.parametrize("status, stopped", [(503, None), (401, "auth")])
def test_a_resumed_directory_whose_server_fails_its_question_waits_to_adopt_and_sends_nothing(
        workdir: Path, status: int, stopped: str | None) -> None:
    directory = _run(5, "a/b/c")
    _adoption_pending(directory)
    transport = FakeTransport([lambda r: Outcome(status, retry_after_s=1.0, body={"error": "nope"})] * 1000)
    report, _ = _upload(directory, transport, deadline_s=10.0)
    assert report.stopped == stopped and report.unreachable == (stopped is None) and transport.events() == []
    assert UploadCursor.load(directory, transport.remote, "a/b/c").adopt == "pending"


def test_no_request_starts_once_the_passs_deadline_has_passed_and_the_rest_waits(workdir: Path) -> None:
    """Each request takes 10 s of the server's time here: a pass of 25 s sends three (the last one starts
    at 20 s), says it ran out of time, and leaves the rest on disk for the next."""
    directory = _run(1000)
    transport = FakeTransport()

    def slow(request: Request) -> Outcome | None:
        transport.clock.now += 10.0
        return None

    transport.clock = FakeClock()
    transport.script = [slow]  # never consumed: it answers None, the server stores as usual
    report, uploader = _upload(directory, transport, deadline_s=25.0, batch_rows=100)
    assert len(transport.events()) == 3 and report.out_of_time and not report.complete
    assert report.pending_rows == 700 and _stored_steps(transport) == list(range(300))
    assert uploader.stream_status({TRAIN: 1000})[TRAIN] == {"acknowledged": 300, "set_aside": 0, "pending_upload": 700}


def test_a_pass_sends_a_run_of_many_batches_whole(workdir: Path) -> None:
    """A long backlog is one pass, however many requests it takes (the per-pass bound is for a server that
    answers without the upload getting anywhere, at 65,536 requests)."""
    directory = _run(2000)
    transport = FakeTransport()
    report, _ = _upload(directory, transport, batch_rows=20)
    assert report.complete and report.requests >= 100 and _stored_steps(transport) == list(range(2000))


@pytest.mark.parametrize("off_by", [7, -7, 1])
def test_a_cursor_offset_off_the_line_start_is_corrected_and_the_next_rows_go_whole(workdir: Path,
                                                                                 off_by: int) -> None:
    """The saved offset of the acknowledged rows is a few bytes off (a hand edit, an older bug): it is set
    to the start of the first unacknowledged line, so that the rows after it go whole, none set aside."""
    directory = _run(20)
    transport = FakeTransport()
    _upload(directory, transport)
    transport.rows[TRAIN] = {i: row for i, row in transport.rows[TRAIN].items() if i < 10}
    transport.stored[TRAIN] = 10  # the server holds rows 0..9, as the cursor below says
    lines = (directory / "metrics/train/data.jsonl").read_bytes().splitlines(keepends=True)
    cursor = UploadCursor.load(directory, transport.remote, "a/b/c")
    cursor.streams[TRAIN] = StreamCursor(10, sum(map(len, lines[:10])) + off_by)
    cursor.save()
    report, _ = _upload(directory, transport)
    assert report.complete and report.set_aside_rows == 0 and report.sent_rows == 10
    assert _stored_steps(transport) == list(range(20)) and all(transport.rows[TRAIN][i]["step"] == i for i in range(20))


@pytest.mark.parametrize("failure", [Outcome(503, retry_after_s=1.0), Outcome(0, error="reset"),
                                     Outcome(401, body={"error": "bad key"})])
def test_a_failing_or_refusing_server_makes_the_upload_keep_nothing_in_memory(workdir: Path, failure: Outcome) -> None:
    """While the server is failing (or refuses the key) the rows wait on disk, not in memory: the copies
    kept for the fast path are dropped and none are taken until the server stores a batch again."""
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    for i in range(10):
        exp.metrics("train").log(step=i)
    exp.flush()
    transport = FakeTransport(clock=FakeClock())
    uploader = RunUploader(exp.directory, "a/b/c", transport, clock=transport.clock, sleep=transport.clock.sleep)
    assert _upload(exp.directory, transport, uploader=uploader)[0].complete
    assert not uploader.memory.suspended  # the server answered: the fast path is on
    exp.metrics("train").log(step=10)
    exp.flush()
    size = (exp.directory / "metrics/train/data.jsonl").stat().st_size
    assert uploader.memory.offer(TRAIN, 10, [{"step": 10, "_ts": 1.0}], "c", size) and len(uploader.memory) == 1
    transport.script = [failure] * 1000
    report, _ = _upload(exp.directory, transport, deadline_s=10.0, uploader=uploader)
    assert not report.complete and report.pending_rows == 1
    assert uploader.memory.suspended and len(uploader.memory) == 0 and uploader.memory.bytes == 0
    assert not uploader.memory.offer(TRAIN, 11, [{"step": 11, "_ts": 1.0}], "c", size)
    exp.run.complete()


def test_has_work_says_whether_a_pass_has_anything_to_send(workdir: Path) -> None:
    """What a live run's background pass asks before it sends (agent/upload/live_upload.py): rows past the
    cursor, changed params, files not acknowledged, an adoption waiting."""
    exp = Experiment(prefix="a/b/c")
    exp.run.start()
    for i in range(50):  # a file of a few KB: its size is compared by value, not as a small cached int
        exp.metrics("train").log(step=i)
    exp.flush()
    transport = FakeTransport(clock=FakeClock())
    uploader = RunUploader(exp.directory, "a/b/c", transport, clock=transport.clock, sleep=transport.clock.sleep)

    def has_work() -> bool:
        return asyncio.run(uploader.has_work())

    assert has_work()  # a row never sent
    _upload(exp.directory, transport, uploader=uploader)
    assert not has_work()
    exp.metrics("train").log(step=50)
    exp.flush()
    assert has_work()  # a new row
    _upload(exp.directory, transport, uploader=uploader)
    exp.params.set(lr=0.1)
    exp.flush()
    assert has_work()  # changed params
    _upload(exp.directory, transport, uploader=uploader)
    exp.files("x").save_text("hello", to="a.txt")
    exp.flush()
    assert has_work()  # a file
    _upload(exp.directory, transport, uploader=uploader)
    assert not has_work()
    assert uploader.cursor is not None
    uploader.cursor.adopt = "pending"
    assert has_work()  # an adoption waiting for the server's answer
    exp.run.complete()


def test_a_server_error_past_the_deadline_leaves_the_upload_unreachable_not_stopped(workdir: Path) -> None:
    directory = _run(20)
    transport = FakeTransport([Outcome(500)] * 1000)
    report, _ = _upload(directory, transport, deadline_s=10.0)
    assert report.unreachable and report.stopped is None and report.refused_documents is None and report.pending_rows == 20
    assert not (directory / ".ml-dash-rejected").exists()


def test_refused_documents_and_then_a_refused_row_are_each_said_for_what_they_are(workdir: Path) -> None:
    """The documents refused first (the rows go again without them), then a row of those refused for its own
    reason: the row is set aside, and the documents are still said to be refused."""
    directory = _run(10, params={"lr": 0.1})

    def refuse(request: Request) -> Outcome | None:
        if "params" in request.body:
            return Outcome(400, body={"error": "params too odd"})
        return _refusing_row(5)(request)

    transport = FakeTransport([refuse] * 10)
    report, _ = _upload(directory, transport)
    assert report.refused_documents == "HTTP 400: params too odd" and report.set_aside_rows == 1
    assert _stored_steps(transport) == [i for i in range(10) if i != 5] and transport.voids[TRAIN] == [(5, 1, "rejected")]


def test_documents_suspected_for_a_row_s_refusal_are_sent_again_once_the_row_is_found(workdir: Path) -> None:
    """A refusal naming nothing makes the uploader try the rows without the documents; the same refusal
    then naming a row shows the row was the cause: the row is set aside and the documents go with the
    next request of the same pass (they are not refused)."""
    directory = _run(10, params={"lr": 0.1})

    def refuse(request: Request) -> Outcome | None:
        if not _sends_row(request, 5):
            return None
        if "params" in request.body:
            return Outcome(400, body={"error": "bad value"})  # names nothing: the documents are suspected
        return Outcome(400, body={"error": "bad value", "stream": TRAIN, "index": 5})

    transport = FakeTransport([refuse] * 10)
    report, _ = _upload(directory, transport)
    assert report.complete and report.refused_documents is None and report.set_aside_rows == 1
    assert any("params" in r.body for r in transport.events()[2:])  # after the row was found, in this pass


def test_a_file_a_pass_that_is_not_a_live_run_s_cannot_store_now_is_tried_again_in_the_pass(workdir: Path) -> None:
    """`ml-dash sync` and a run's end are patient: a file the server answers 503 for is tried again
    within the deadline (a live run's background pass leaves it for a later pass instead)."""
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        exp.metrics("train").log(step=0)
        exp.files("x").save_text("hello", to="a.txt")
    transport = FakeTransport([lambda r: Outcome(503, retry_after_s=1.0) if r.kind == "file" else None])
    report, _ = _upload(exp.directory, transport)
    assert report.complete and report.pending_files == 0 and list(transport.files.values()) == [b"hello"]
    assert [r.kind for r in transport.requests].count("file") == 2


def test_until_the_server_first_answers_each_request_is_a_small_probe(workdir: Path) -> None:
    """A new uploader keeps nothing in memory and sends batches of at most 8,192 rows (PROBE_ROWS) until a
    batch is stored; then full batches."""
    directory = _run(20_000)
    transport = FakeTransport([Outcome(503, retry_after_s=1.0)] * 3)
    uploader = RunUploader(directory, "a/b/c", transport, batch_rows=16_384)
    assert uploader.memory.suspended
    report, _ = _upload(directory, transport, uploader=uploader)
    # three refused probes, the stored one, then the rest in one batch
    assert report.complete and [r.rows(TRAIN) for r in transport.events()] == [8192] * 4 + [20_000 - 8192]


def test_a_row_the_server_refuses_by_its_index_is_found_in_a_directory_that_continues_a_run(workdir: Path) -> None:
    """A directory continuing a run numbers its rows from 0; the server names a row by the run's index:
    the row set aside is the one the server named (server index 6 = this directory's row 1)."""
    first = _run(5, "a/b/c")
    transport = FakeTransport()
    _upload(first, transport)
    elsewhere = _continuing_directory(workdir, range(5, 10))
    transport.script = [_refusing_row(6)] * 10
    report, _ = _upload(elsewhere, transport)
    assert report.complete and report.set_aside_rows == 1 and transport.voids[TRAIN] == [(6, 1, "rejected")]
    assert _stored_steps(transport) == [i for i in range(10) if i != 6]
    record = json.loads(next((elsewhere / ".ml-dash-rejected").iterdir()).read_text())
    assert record["first"] == 1 and '"step":6' in record["content"]


@pytest.mark.parametrize("cause", [{"pending_rows": 1}, {"pending_files": 1}, {"stopped": "auth"},
                                   {"unreachable": True}, {"out_of_time": True}, {"refused_documents": "HTTP 400"}])
def test_a_report_is_complete_only_when_nothing_at_all_is_left_or_refused(cause: dict) -> None:
    """What `ml-dash sync`'s exit status and a run's end rest on: any one cause alone makes it incomplete."""
    assert UploadReport().complete
    assert not UploadReport(**cause).complete
