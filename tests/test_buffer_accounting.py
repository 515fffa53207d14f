"""The buffer's byte accounting (agent/streams.py) against a reference model, over random sequences.

The byte bound (docs/guarantees.md) rests on one number: what a stream says it holds, ``buffered_bytes()``:
its queued rows, each at the stream's row estimate or, for a big row, at its own size, plus the rows the
agent took and has not written yet. A stream here is driven as the hot path and the agent drive it (rows
appended, big rows admitted at their size, writes taken in chunks and finished in any order), and after
every step its figures must be the model's, exactly: an accounting that is off by a few rows is how a
buffer passes its budget unseen (issue 16: the bound held in tests while rows taken but not written went
uncounted).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ml_dash.agent.budget import BufferBudget
from ml_dash.agent.streams import RowStream, SizedRow, Write, memory_bound_mb

ROW_BYTES = 100  # the stream's estimate of one ordinary row
WAKE_EVERY = 1000  # rows between the hot path's calls to the slow path (never reached here: rows come in fives)


class Accounting(RuleBasedStateMachine):
    """The model: the queued rows as (row, size or None), and the writes taken and not yet finished."""

    @initialize()
    def start(self) -> None:
        budget = BufferBudget(1 << 40, 0.0, lambda: 0, lambda: None)  # never full: the accounting alone
        self.stream = RowStream(budget, "metrics/m", Path("unused"), "index", _no_encoder, ROW_BYTES, WAKE_EVERY)
        self.queued: list[tuple[Any, int | None]] = []
        self.unfinished: list[tuple[Write, list[tuple[Any, int | None]]]] = []
        self.count = 0

    def _row(self) -> dict[str, int]:
        self.count += 1
        return {"n": self.count}

    @rule(n=st.integers(1, 5))
    def log_rows(self, n: int) -> None:
        """The hot path: rows appended to the queue, counted at the stream's estimate."""
        for _ in range(n):
            row = self._row()
            self.stream.queue.append(row)
            self.queued.append((row, None))

    @rule(size=st.integers(1, 5000))
    def log_a_big_row(self, size: int) -> None:
        """A big row: admitted at its own size, then appended."""
        row = self._row()
        item = self.stream.admit_sized(row, size)
        assert isinstance(item, SizedRow) and item.size == size
        self.stream.queue.append(item)
        self.queued.append((row, size))

    @rule(chunk_rows=st.integers(1, 4), rows=st.integers(1, 12), sized_bytes=st.integers(1, 9000))
    def take_a_write(self, chunk_rows: int, rows: int, sized_bytes: int) -> None:
        """The agent takes one write: the oldest rows, at most ``rows`` of them in chunks of ``chunk_rows``,
        stopping once the big rows taken reach ``sized_bytes``."""
        write = self.stream.take_write(chunk_rows, rows, sized_bytes)
        expected: list[tuple[Any, int | None]] = []
        sized = 0
        while self.queued and len(expected) < rows and sized < sized_bytes:
            row, size = self.queued.pop(0)
            expected.append((row, size))
            sized += size or 0
        taken = [row for chunk in write.chunks for row in chunk]
        assert taken == [row for row, _ in expected]  # the rows themselves, oldest first, none twice
        assert [len(chunk) for chunk in write.chunks] == _chunk_lengths(len(expected), chunk_rows)
        assert write.rows == len(expected)
        assert write.sized_bytes == sized
        assert write.bytes == sized + ROW_BYTES * sum(1 for _, size in expected if size is None)
        # the hot path's next call to the slow path: a wake-up's worth of rows after what is queued now
        assert self.stream.wake_at == len(self.queued) + WAKE_EVERY
        if expected:
            self.unfinished.append((write, expected))

    @precondition(lambda self: self.unfinished)
    @rule(which=st.integers(0, 1 << 16))
    def finish_a_write(self, which: int) -> None:
        """Rows written (or counted dropped): their bytes are free, whichever write finishes first."""
        write, _ = self.unfinished.pop(which % len(self.unfinished))
        self.stream.written(write)

    @invariant()
    def figures_are_the_models(self) -> None:
        in_flight = [item for _, rows in self.unfinished for item in rows]
        queued_bytes = sum(size if size is not None else ROW_BYTES for _, size in self.queued)
        flight_bytes = sum(size if size is not None else ROW_BYTES for _, size in in_flight)
        assert self.stream.buffered_bytes() == queued_bytes + flight_bytes
        assert self.stream.in_flight_bytes == flight_bytes
        assert self.stream.in_flight_sized == sum(size or 0 for _, size in in_flight)
        assert self.stream.sized_bytes == sum(size or 0 for _, size in self.queued)
        assert self.stream.sized_count == sum(1 for _, size in self.queued if size is not None)
        assert len(self.stream.queue) == len(self.queued)
        assert self.stream.accepted() == self.count


def _no_encoder(*_args: Any) -> bytes:
    raise AssertionError("nothing is encoded here")


def _chunk_lengths(rows: int, chunk_rows: int) -> list[int]:
    return [min(chunk_rows, rows - start) for start in range(0, rows, chunk_rows)]


Accounting.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_the_buffers_figures_are_the_models_after_every_step = Accounting.TestCase


def test_the_memory_bound_is_one_and_a_half_buffers_plus_the_stated_overhead() -> None:
    """docs/guarantees.md: a run's peak RSS rises at most 1.5 x ``ML_DASH_MAX_BUFFER_MB`` + 32 MB in local
    mode, + 128 MB in remote mode (the literal figures, not the module's constants)."""
    assert memory_bound_mb(64, remote=False) == 96 + 32
    assert memory_bound_mb(64, remote=True) == 96 + 128
    assert memory_bound_mb(8, remote=True) == 12 + 128
    assert memory_bound_mb(0.5, remote=False) == 0.75 + 32


def test_a_stream_forgotten_in_a_forked_child_holds_nothing() -> None:
    """A forked child's copy of a stream (its parent writes the run) drops what it copied: it counts no
    bytes towards the child's budget, neither queued nor in flight."""
    budget = BufferBudget(1 << 40, 0.0, lambda: 0, lambda: None)
    stream = RowStream(budget, "metrics/m", Path("unused"), "index", _no_encoder, ROW_BYTES, 1 << 30)
    stream.queue.extend([{"n": 1}, {"n": 2}])
    big = stream.admit_sized({"n": 3}, 4000)
    stream.queue.append(big)
    stream.take_write(1, 2, 10_000)
    assert stream.buffered_bytes() > 0
    stream.forget()
    assert (stream.buffered_bytes(), stream.in_flight_bytes, stream.in_flight_sized, stream.sized_bytes,
            stream.sized_count, len(stream.queue)) == (0, 0, 0, 0, 0, 0)


def _stream(capacity: int, buffered: Any, max_block_s: float = 0.0) -> RowStream:
    budget = BufferBudget(capacity, max_block_s, buffered, lambda: None)
    return RowStream(budget, "metrics/m", Path("unused"), "index", _no_encoder, ROW_BYTES, 1 << 30)


def test_a_dropping_stream_takes_rows_again_only_once_the_buffer_is_at_most_half_full() -> None:
    """docs/guarantees.md: after a wait ran out, a stream drops without waiting until the buffer is below half
    its budget; a row of ``extra`` bytes counts with what is buffered."""
    stream = _stream(14, lambda: 3)
    stream._start_dropping()
    assert stream._wait_for_room(5) is False and stream.state == "dropping"  # 3 + 5 > 14 // 2
    stream = _stream(14, lambda: 2)
    stream._start_dropping()
    assert stream._wait_for_room(5) is True and stream.state == "open"  # 2 + 5 <= 7
    stream = _stream(14, lambda: 0)
    stream._start_dropping()
    assert stream._wait_for_room(1) is True and stream.state == "open"  # well below half: 0 + 1 <= 7


def test_a_caller_waiting_for_room_is_let_in_as_soon_as_the_agent_frees_it() -> None:
    """The bounded wait ends when the rows written free room, not at its deadline with a drop."""
    levels = iter([20, 20, 4])  # full, still full, then written out

    def buffered() -> int:
        return next(levels, 4)

    stream = _stream(16, buffered, max_block_s=30.0)
    assert stream._wait_for_room(8) is True and stream.waits == 1


def test_a_caller_finding_no_room_waits_its_bound_before_it_drops() -> None:
    """docs/guarantees.md: a full buffer makes a log() call wait (up to max_block_s), then drop: it waits
    first. Only the lower bound is asserted (a wait is never shorter than its deadline on a busy machine)."""
    import time

    stream = _stream(16, lambda: 20, max_block_s=0.3)  # full, and nothing is written out
    began = time.monotonic()
    assert stream._wait_for_room(8) is False and stream.waits == 1
    assert time.monotonic() - began >= 0.29


def test_a_big_row_logged_after_its_run_ended_is_refused_and_holds_nothing() -> None:
    """A closed, sealed stream refuses a row at the call (StreamClosedError) and takes it back out of its
    queue: a big one too, which the queue holds wrapped with its size."""
    from ml_dash.agent.streams import StreamClosedError

    stream = _stream(1 << 40, lambda: 0)
    stream.close()
    stream.seal.sealed = True
    row = {"text": "x" * 100}
    item = stream.admit_sized(row, 5000)
    assert item is not None
    stream.queue.append(item)
    try:
        stream.on_threshold(row)
    except StreamClosedError:
        pass
    else:
        raise AssertionError("a row after the end was taken")
    assert (len(stream.queue), stream.sized_bytes, stream.sized_count, stream.buffered_bytes()) == (0, 0, 0, 0)


def test_a_metric_rows_estimate_covers_its_measured_size() -> None:
    """agent/streams.py: a buffered metric row measured 424 bytes at 6 fields, 736 at 11, 2,816 at 51
    (tracemalloc, CPython 3.11): the estimate is never below them, and grows with every field."""
    from ml_dash.agent.streams import metric_row_bytes

    for fields, measured in ((6, 424), (11, 736), (51, 2816)):
        assert measured <= metric_row_bytes(fields) <= measured * 1.5, fields
    assert metric_row_bytes(12) - metric_row_bytes(11) >= 28  # a field's key and value, at least


def test_a_forked_child_logging_into_its_parents_run_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    """Row 23: a forked child's calls are a documented no-op that warns once, not at every call."""
    stream = _stream(1 << 40, lambda: 0)
    stream.forget()
    with caplog.at_level(logging.WARNING, logger="ml_dash.agent"):
        for n in range(3):
            row = {"n": n}
            stream.queue.append(row)
            stream.on_threshold(row)
    assert len(stream.queue) == 0
    assert [r.message.count("no-op in a forked child") for r in caplog.records] == [1]


def test_after_the_end_and_before_the_seal_a_row_waits_as_in_an_open_stream_and_drops_only_past_half() -> None:
    """A row logged between the run's end and the final drain is kept while the buffer has room (it is
    not dropped for being past half the budget, as a dropping stream's would be); once the bounded wait ran
    out, rows drop until the buffer is below half the budget again, then are kept again."""
    level = [60]
    stream = _stream(100, lambda: level[0])
    stream.close()  # ended; the final drain (the seal) is still to come

    def log(n: int) -> None:
        row = {"n": n}
        stream.queue.append(row)
        stream.on_threshold(row)

    log(0)  # 60 of 100: room
    level[0] = 101
    log(1)  # past the budget, no wait allowed: dropped, and from now on until below half
    level[0] = 70
    log(2)  # still above half: dropped without waiting
    level[0] = 40
    log(3)  # below half: kept again
    assert [row["n"] for row in stream.queue] == [0, 3]
    assert stream.counters.dropped == {"buffer_full": 2}


def test_a_drop_that_finds_the_queue_already_drained_counts_nothing_and_raises_nothing() -> None:
    """The agent may take every row between a caller's append and its drop (another thread's row, or its
    own, already written): the drop then finds nothing, counts nothing and the call goes on."""
    stream = _stream(1 << 40, lambda: 0)
    stream._drop_last()
    assert stream.counters.dropped == {} and len(stream.queue) == 0


def test_a_forked_child_takes_back_its_own_row_whatever_other_threads_rows_are_queued_before_it() -> None:
    """In a forked child each call takes its own row back out of the queue (a no-op: the queue does not
    grow however much it logs), found from the right: another thread's row, appended before it and not
    yet taken back by its own call, stays until that call takes it."""
    stream = _stream(1 << 40, lambda: 0)
    stream.forget()
    other = {"thread": "other"}
    stream.queue.append(other)  # another thread's call, between its append and its slow path
    for n in range(50):
        row = {"n": n}
        stream.queue.append(row)
        stream.on_threshold(row)
    assert list(stream.queue) == [other]
    stream.on_threshold(other)
    assert len(stream.queue) == 0


def test_a_call_whose_row_the_final_drain_took_stands_and_one_whose_row_is_still_queued_is_refused() -> None:
    """After the seal: the final drain took a row appended before it (written: the call stands, no error);
    a row still in the queue is taken back and its call refused (StreamClosedError)."""
    from ml_dash.agent.streams import StreamClosedError

    stream = _stream(1 << 40, lambda: 0)
    stream.close()
    stream.seal.sealed = True
    drained = {"n": 0}  # appended, then taken by the final drain before this call reached the slow path
    stream.on_threshold(drained)
    queued = {"n": 1}
    stream.queue.append(queued)
    with pytest.raises(StreamClosedError):
        stream.on_threshold(queued)
    assert len(stream.queue) == 0
