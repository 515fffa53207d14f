"""What the uploader sends next: rows from memory (the live fast path) or read back from disk."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import msgpack
import msgspec

from ml_dash import Experiment
from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload.metric_lines import uniform_block
from ml_dash.agent.upload.pending import MemoryChunks, end_of_line, read_stream
from ml_dash.agent.upload.transport import HttpTransport
from ml_dash.agent.upload.uploader import RunUploader
from ml_dash.format.jsonlines import ReadReport, iter_records, restore_metric_row
from ml_dash.format.wire import decode_body, metric_blocks, metric_rows

from .fake_server import FakeTransport

TRAIN = "metrics/train"


def _uploader(exp: Experiment) -> RunUploader:
    return RunUploader(exp.directory, exp.prefix, FakeTransport())


def _next(uploader: RunUploader, positions: dict | None = None):
    async def build():
        cursor = await uploader.load()
        return await uploader.builder.next(cursor, positions or {}, None, uploader.max_rows)

    return asyncio.run(build())


def _run(workdir: Path, rows: int, **fields) -> Experiment:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(rows):
            exp.metrics("train").log(step=i, **fields)
    return exp


def _data(exp: Experiment) -> Path:
    return exp.directory / "metrics/train/data.jsonl"


def _sent_blocks(batch) -> list[dict]:
    """The metric blocks as the server will receive them."""
    return decode_body(batch.payload, "zstd")["streams"][TRAIN]["blocks"]


def test_rows_the_agent_just_wrote_are_sent_from_memory(workdir: Path) -> None:
    exp = _run(workdir, 10)
    uploader = _uploader(exp)
    uploader.memory.resume()  # as after the server's first answer
    size = _data(exp).stat().st_size
    uploader.offer(TRAIN, 0, [{"step": i * 10, "_ts": 1.0} for i in range(10)], "c", size)  # not what is on disk
    batch = _next(uploader)
    (stream,) = batch.streams
    assert (stream.start, stream.count, stream.end_offset) == (0, 10, size)
    assert _sent_blocks(batch) == [{"keys": ["step", "_ts"], "cols": [[i * 10 for i in range(10)], [1.0] * 10],
                                    "created": [["c", 10]]}]


def test_a_write_is_offered_chunk_by_chunk_each_with_where_its_lines_end(workdir: Path) -> None:
    """A write of several encoded chunks reaches the upload's memory as one piece per chunk, each ending
    exactly where the file's line of its last row ends: a batch smaller than a write (a smaller
    ML_DASH_UPLOAD_BATCH_ROWS) then takes whole chunks from memory instead of reading the disk."""
    from ml_dash.agent.rundir import CHUNK_ROWS

    offers: list[tuple[str, int, int, int]] = []
    rows = 2 * CHUNK_ROWS + 5
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        exp._session.writer.on_written = lambda stream, start, items, created, end: offers.append(
            (stream, start, len(items), end))
        train = exp.metrics("train")
        for i in range(rows):  # faster than a flush: most of them go in one write
            train.log(step=i, loss=1.0 / (i + 1))
    ends, position = {}, 0
    with _data(exp).open("rb") as f:  # where each row's line ends, from the file itself
        for line in f:
            position += len(line)
            ends[json.loads(line)["index"]] = position
    assert [o[0] for o in offers] == [TRAIN] * len(offers)
    assert [o[1] for o in offers] == [sum(o[2] for o in offers[:k]) for k in range(len(offers))]  # no gap
    assert sum(o[2] for o in offers) == rows and max(o[2] for o in offers) <= CHUNK_ROWS
    assert [o[3] for o in offers] == [ends[start + count - 1] for _, start, count, _ in offers]
    assert len(offers) < rows // CHUNK_ROWS * 4  # chunks, not single rows


def test_a_run_of_several_streams_is_sent_from_memory_whole_chunks_at_a_time(workdir: Path, monkeypatch) -> None:
    """Rows the agent just wrote go from memory in batches of any size from one chunk up, however many
    streams share a batch: a stream whose next chunk does not fit what the batch has left waits for the
    next batch (which starts with it) instead of having part of a chunk read back from disk."""
    from ml_dash.agent.backlog import offset_of_index
    from ml_dash.agent.rundir import CHUNK_ROWS
    from ml_dash.agent.upload import batches

    from_disk: list[int] = []
    real_read = batches.read_stream

    def counting_read(*args, **kwargs):
        read = real_read(*args, **kwargs)
        from_disk.append(read.count if read is not None else 0)
        return read

    monkeypatch.setattr(batches, "read_stream", counting_read)
    names = ["grad", "train", "val"]
    rows = 2 * CHUNK_ROWS + 100
    exp = Experiment(prefix="a/b/c", system_metrics=False, console=False)
    exp.run.start()
    transport = FakeTransport()
    uploader = RunUploader(exp.directory, exp.prefix, transport, batch_rows=2 * CHUNK_ROWS)
    uploader.memory.resume()  # as after the server's first answer
    exp._session.writer.on_written = uploader.offer
    for i in range(rows):
        for name in names:
            exp.metrics(name).log(step=i)
    exp.run.complete()
    report = asyncio.run(uploader.upload(Deadline(60)))
    assert report.complete and report.sent_rows == 3 * rows and sum(from_disk) == 0
    for name in names:
        stream = f"metrics/{name}"
        assert [row["step"] for _, row in sorted(transport.rows[stream].items())] == list(range(rows))
        at = uploader.cursor.at(stream)
        assert at.acked == rows and at.offset == offset_of_index(exp.directory / f"{stream}/data.jsonl", "index", rows)
    assert max(r.rows(f"metrics/{n}") for r in transport.events() for n in names) <= 2 * CHUNK_ROWS


def test_a_row_the_server_refuses_is_never_sent_again_from_memory(workdir: Path) -> None:
    """A row refused by its index (a 4xx naming it) goes as its void: the rows before it are taken from
    memory only in whole chunks that end before it, the rest read from disk up to it."""
    from ml_dash.agent.upload.retry import Outcome

    exp = Experiment(prefix="a/b/c", system_metrics=False, console=False)
    exp.run.start()

    def refuse_50(request) -> Outcome | None:
        payload = (request.body or {}).get("streams", {}).get(TRAIN, {})
        start = payload.get("start", 0)
        if "void" not in payload and start <= 50 < start + request.rows(TRAIN):
            return Outcome(422, body={"error": "value out of range", "stream": TRAIN, "index": 50})
        return None

    transport = FakeTransport([refuse_50] * 10)
    uploader = RunUploader(exp.directory, exp.prefix, transport)  # batches of 16,384: the chunk holds row 50
    uploader.memory.resume()
    exp._session.writer.on_written = uploader.offer
    for i in range(100):
        exp.metrics("train").log(step=i)
    exp.run.complete()
    assert len(uploader.memory) >= 1  # the rows are in memory, row 50 among them
    report = asyncio.run(uploader.upload(Deadline(60)))
    assert report.complete and report.set_aside_rows == 1 and transport.voids[TRAIN] == [(50, 1, "rejected")]
    assert sorted(transport.rows[TRAIN]) == [i for i in range(100) if i != 50]
    carrying_50 = [r for r in transport.events() if refuse_50(r) is not None]
    assert len(carrying_50) == 1  # refused once, then never sent as data again (it was, until stuck)


def _unpacked(stream) -> list[dict]:
    """A stream's blocks as the server receives them (packed ones unpacked)."""
    assert all(isinstance(b, msgspec.Raw) for b in stream.blocks)  # rows always leave packed
    return [msgpack.unpackb(bytes(b)) for b in stream.blocks]


def _rows_of(stream) -> list[dict]:
    return metric_rows(stream.start, _unpacked(stream))


def test_memory_joins_the_chunks_that_follow_without_a_gap_up_to_the_budget() -> None:
    memory = MemoryChunks()
    memory.offer(TRAIN, 0, [{"x": i} for i in range(4)], "a", 40)
    memory.offer(TRAIN, 4, [{"x": i} for i in range(4, 6)], "b", 60)
    memory.offer(TRAIN, 8, [{"x": 8}], "c", 90)  # after a gap: not joined
    taken = memory.take(TRAIN, 0, budget=100)
    assert (taken.start, taken.count, taken.end_offset) == (0, 6, 60)
    assert _unpacked(taken) == [{"keys": ["x"], "cols": [[0, 1, 2, 3]], "created": [["a", 4]]},
                                {"keys": ["x"], "cols": [[4, 5]], "created": [["b", 2]]}]
    assert memory.take(TRAIN, 0, budget=5).count == 4  # whole chunks only
    assert memory.take(TRAIN, 0, budget=3) is None
    assert memory.take(TRAIN, 2, budget=100) is None  # inside a chunk: the disk has it
    assert memory.take(TRAIN, 6, budget=100) is None  # in the gap
    assert memory.take("metrics/other", 0, budget=100) is None
    assert memory.next_start(TRAIN, 2) == 4 and memory.next_start(TRAIN, 6) == 8 and memory.next_start(TRAIN, 8) is None


def test_a_disk_read_stops_where_memory_can_take_over(workdir: Path) -> None:
    exp = _run(workdir, 10)
    uploader = _uploader(exp)
    uploader.memory.resume()
    lines = _data(exp).read_bytes().splitlines(keepends=True)
    uploader.offer(TRAIN, 6, [{"step": i} for i in range(6, 10)], "c", sum(map(len, lines)))
    first = _next(uploader)
    assert [(s.start, s.count) for s in first.streams] == [(0, 6)]  # from disk, up to the chunk
    second = _next(uploader, first.positions_after())
    assert [(s.start, s.count) for s in second.streams] == [(6, 4)]
    assert _sent_blocks(second)[0]["created"] == [["c", 4]]  # from memory


def test_memory_is_bounded_and_frees_what_the_server_acknowledged() -> None:
    memory = MemoryChunks(limit_bytes=100)
    assert memory.offer(TRAIN, 0, [{"x": 1.5}] * 60, "c", 0)  # ~540 bytes: over the limit now
    assert not memory.offer(TRAIN, 60, [{"x": 1.5}] * 60, "c", 0)  # behind: refused, the disk has it
    memory.forget_before({TRAIN: 59})
    assert memory.bytes > 100 and len(memory) == 1  # row 59 is not acknowledged yet
    memory.forget_before({TRAIN: 60})
    assert memory.bytes == 0 and len(memory) == 0
    assert memory.offer(TRAIN, 60, [{"x": 1.5}] * 60, "c", 0)


def _records(path: Path) -> list[dict]:
    return [restore_metric_row(r) for r in iter_records(path, ReadReport())]


def test_the_fast_decode_gives_the_same_block_as_the_general_one(workdir: Path) -> None:
    exp = _run(workdir, 300, loss=0.5, tag="x", missing=None, flag=True)
    data = _data(exp).read_bytes()
    assert uniform_block(data, len(data), 0) == metric_blocks(_records(_data(exp)))[0]
    assert uniform_block(data, len(data), 1) is None  # the indices must start where asked
    cut = data.index(b"\n") + 1
    assert uniform_block(data, cut, 0)["cols"][0] == [0]  # only the lines before ``end``


def test_rows_the_fast_decode_declines_are_read_the_general_way(workdir: Path) -> None:
    exp = Experiment(prefix="a/b/c")
    with exp.run:
        train = exp.metrics("train")
        train.log(step=0, loss=1.0)
        train.log(step=1, loss=math.nan)  # non-finite markers
        train.log(step=2)  # other keys
        train.log(**{"step": 3, "train/loss": 0.25})
    data = _data(exp).read_bytes()
    assert uniform_block(data, len(data), 0) is None
    stream = read_stream(TRAIN, _data(exp), 0, 0, budget=100)
    assert stream.count == 4 and stream.end_offset == len(data)
    packed = [bytes(b) for b in stream.blocks]  # bytes: NaN is not equal to itself as a float
    assert packed == [msgpack.packb(b) for b in metric_blocks(_records(_data(exp)))]
    assert math.isnan(_unpacked(stream)[0]["cols"][1][1])


def test_a_read_stops_at_the_budget_on_a_line_boundary(workdir: Path) -> None:
    exp = _run(workdir, 50, loss=0.5)
    path = _data(exp)
    lines = path.read_bytes().splitlines(keepends=True)
    for budget in (1, 7, 49, 50, 80):
        stream = read_stream(TRAIN, path, 0, 0, budget)
        expected = min(budget, 50)
        assert stream.count == expected and stream.end_offset == sum(map(len, lines[:expected]))
    later = read_stream(TRAIN, path, 7, sum(map(len, lines[:7])), 10)
    assert later.start == 7 and [r["data"]["step"] for r in _rows_of(later)] == list(range(7, 17))


def test_end_of_line_walks_from_its_guess_to_the_exact_line() -> None:
    data = b"a\n" + b"bbbbbbbbbbbbbbbbbbbbbbbbbbb\n" * 3 + b"c\n" * 20
    total = data.count(b"\n")
    for lines in range(1, total + 1):
        position = end_of_line(data, lines, len(data), total)
        assert data[:position].count(b"\n") == lines and data[position - 1:position] == b"\n"


def test_rows_written_during_a_pass_are_pending_but_only_a_failing_server_is_unreachable(workdir: Path,
                                                                                         tmp_path: Path) -> None:
    from .server_process import Server

    exp = _run(workdir, 100)
    path = _data(exp)
    line = path.read_bytes().splitlines(keepends=True)[-1].replace(b'"index":99', b'"index":100')

    async def upload(url: str, **kwargs) -> object:
        transport = HttpTransport(url, {"X-ML-Dash-User": "a"})
        try:
            return await RunUploader(exp.directory, exp.prefix, transport).upload(**kwargs)
        finally:
            await transport.close()

    server = Server(tmp_path / "server", "--allow-user-name")
    try:
        appended = []

        def writer_appends(sent: int) -> None:  # as the agent's writer would, while the pass runs
            if not appended:
                appended.append(sent)
                with open(path, "ab") as f:
                    f.write(line)

        report = asyncio.run(upload(server.url, deadline=Deadline(10), progress=writer_appends))
        assert appended == [100] and report.sent_rows + report.pending_rows == 101 and not report.unreachable
    finally:
        server.stop()
    report = asyncio.run(upload(server.url, deadline=Deadline(0.5)))  # nothing listens there now
    assert report.unreachable and report.sent_rows == 0 and "Connect" in (report.reason or "")


def test_memory_keeps_nothing_while_the_server_is_failing() -> None:
    memory = MemoryChunks()
    assert memory.offer(TRAIN, 0, [{"x": 1}] * 10, "c", 0)
    memory.suspend()
    assert memory.bytes == 0 and len(memory) == 0 and memory.take(TRAIN, 0, 100) is None
    assert not memory.offer(TRAIN, 10, [{"x": 1}] * 10, "c", 0)
    memory.resume()
    assert memory.offer(TRAIN, 20, [{"x": 1}] * 10, "c", 0)


def test_a_read_in_small_pieces_gives_the_rows_of_one_read(workdir: Path, monkeypatch) -> None:
    from ml_dash.agent.upload import pending

    exp = _run(workdir, 500, loss=0.5)
    path = _data(exp)
    whole = read_stream(TRAIN, path, 0, 0, budget=1000)
    monkeypatch.setattr(pending, "PIECE_BYTES", 1000)  # ~7 lines a piece, cut mid-line
    pieces = read_stream(TRAIN, path, 0, 0, budget=1000)
    assert (pieces.count, pieces.end_offset) == (whole.count, whole.end_offset) == (500, path.stat().st_size)
    assert len(pieces.blocks) > 50 and _rows_of(pieces) == _rows_of(whole) == metric_rows(0, metric_blocks(_records(path)))
    part = read_stream(TRAIN, path, 0, 0, budget=123)
    assert part.count == 123 and [r["index"] for r in _rows_of(part)] == list(range(123))


def test_the_piecewise_read_stops_before_rows_it_cannot_take_fast(workdir: Path, monkeypatch) -> None:
    from ml_dash.agent.upload import pending

    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(300):
            exp.metrics("train").log(step=i, loss=math.nan if i == 200 else 0.5)
    path = _data(exp)
    monkeypatch.setattr(pending, "PIECE_BYTES", 2000)
    first = read_stream(TRAIN, path, 0, 0, budget=1000)
    assert 0 < first.count <= 200 and [r["index"] for r in _rows_of(first)] == list(range(first.count))
    rest = read_stream(TRAIN, path, first.count, first.end_offset, budget=1000)  # the general path
    assert rest.start == first.count and rest.start + rest.count == 300
    assert rest.end_offset == path.stat().st_size
    assert math.isnan(_rows_of(rest)[200 - first.count]["data"]["loss"])


def test_the_http_transport_reads_retry_after_and_the_servers_words(workdir: Path, tmp_path: Path) -> None:
    from .fault_proxy import FaultProxy
    from .server_process import Server

    server = Server(tmp_path / "srv", "--allow-user-name")
    proxy = FaultProxy(int(server.url.rsplit(":", 1)[1]))
    proxy.set(mode="status", rate=1.0, status_line="503 Service Unavailable", retry_after="7")

    async def post(url: str) -> object:
        transport = HttpTransport(url, {"X-ML-Dash-User": "alice"})
        try:
            return await transport.post_events("alice/p/r", b"x", 5.0, 5.0)
        finally:
            await transport.close()

    try:
        told = asyncio.run(post(proxy.url))
        direct = asyncio.run(post(server.url))
    finally:
        proxy.close()
        server.stop()
    assert told.status == 503 and told.retry_after_s == 7.0
    assert direct.status == 400 and "zstd" in direct.reason  # the server's own words, read to the end


def test_a_pass_over_a_run_of_many_streams_reads_only_the_streams_that_grew(workdir: Path, monkeypatch) -> None:
    """A run of thousands of metrics (issue 14): an upload pass costs a stat per stream, and a read only for
    a stream with rows past its cursor (it opened and read every stream's file, twice, on every pass)."""
    import ml_dash.agent.upload.uploader as uploader_module
    from ml_dash.agent.upload import batches

    exp = Experiment(prefix="a/b/c")
    with exp.run:
        for i in range(300):
            exp.metrics(f"layer{i}").log(v=i)
    uploader = _uploader(exp)
    report = asyncio.run(uploader.upload(Deadline(30)))
    assert report.sent_rows == 300 and report.pending_rows == 0
    with open(exp.directory / "metrics/layer7/data.jsonl", "ab") as f:  # as the agent's writer would
        f.write(b'{"index":1,"data":{"v":-1,"_ts":1.0},"createdAt":"2026-01-01T00:00:00Z"}\n')
    reads: list[str] = []
    for module, name in ((batches, "read_stream"), (uploader_module, "rows_on_disk")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, real=real, **kw: reads.append(str(args[0])) or real(*args, **kw))
    report = asyncio.run(uploader.upload(Deadline(30)))
    assert report.sent_rows == 1 and report.pending_rows == 0
    assert set(reads) == {"metrics/layer7"}, sorted(set(reads))[:5]
