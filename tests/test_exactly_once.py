"""The exactly-once rule as a pure function (server/storage/exactly_once.py): a table of the cases, and
Hypothesis against a model that keeps the writer of every index. tests/test_models.py holds the real
app to the same rule; tests/test_storage_contract.py holds every backend to it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash.server.storage.errors import ConflictError, GapError
from ml_dash.server.storage.exactly_once import Decision, Outcome, Settled, settle

A, B = "writer-a", "writer-b"
HELD = [Settled(0, 10, A), Settled(10, 15, B, "set aside"), Settled(15, 20, B)]


@pytest.mark.parametrize("stored, ranges, start, end, writer, void, outcome, new, extends", [
    (0, [], 0, 5, A, None, Outcome.STORE, (0, 5), None),  # the first rows
    (0, [], 1, 5, A, None, Outcome.GAP, None, None),  # past the stored rows
    (20, HELD, 21, 30, B, None, Outcome.GAP, None, None),
    (20, HELD, 20, 30, B, None, Outcome.STORE, (20, 30), HELD[2]),  # the same writer goes on: its range grows
    (20, HELD, 20, 30, A, None, Outcome.STORE, (20, 30), None),  # another writer after the stored rows: a new range
    (10, HELD[:1], 10, 30, B, None, Outcome.STORE, (10, 30), None),  # whichever writer's name sorts first
    (20, HELD, 2, 8, A, None, Outcome.REACK, None, None),  # a resend of its own rows
    (20, HELD, 15, 25, B, None, Outcome.STORE, (20, 25), HELD[2]),  # a resend that goes on: only the rest is new
    (20, HELD, 5, 12, A, None, Outcome.CONFLICT, None, None),  # covers B's void
    (20, HELD, 9, 10, B, None, Outcome.CONFLICT, None, None),  # one index of A's
    (20, HELD, 10, 15, B, "set aside", Outcome.REACK, None, None),  # a void resent
    (20, HELD, 20, 22, B, "damaged", Outcome.VOID, (20, 22), None),  # a void never extends a range
    (22, [*HELD, Settled(20, 22, B, "damaged")], 22, 25, B, None, Outcome.STORE, (22, 25), None),  # nor is extended
    (20, [Settled(0, 20, None)], 0, 20, A, None, Outcome.REACK, None, None),  # no writer recorded: conflicts with nobody
    (5, [Settled(0, 5, A)], 0, 5, None, None, Outcome.CONFLICT, None, None),  # a batch without a writer vs A's rows
])
def test_each_case_of_the_rule(stored: int, ranges: list[Settled], start: int, end: int, writer: str | None,
                               void: str | None, outcome: Outcome, new: tuple[int, int] | None,
                               extends: Settled | None) -> None:
    decision = settle(stored, ranges, start, end, writer, void)
    assert decision.outcome is outcome
    if new is not None:
        assert (decision.new_first, decision.new_end, decision.extends) == (*new, extends)
        assert decision.new_stored == new[1]
    else:
        assert decision.new_stored == stored


def test_a_refusal_raises_what_the_client_is_told() -> None:
    with pytest.raises(GapError) as gap:
        settle(20, HELD, 25, 30, A).raise_refusal("metrics/loss", 25, 30)
    assert gap.value.acked == 20 and gap.value.reply.acked == {"metrics/loss": 20}
    with pytest.raises(ConflictError) as conflict:
        settle(20, HELD, 5, 12, A).raise_refusal("metrics/loss", 5, 12)
    assert conflict.value.details == {"kind": "writer", "stream": "metrics/loss", "first": 10, "end": 15}
    settle(20, HELD, 20, 30, A).raise_refusal("metrics/loss", 20, 30)  # nothing to refuse


def test_a_conflict_names_the_indices_of_the_other_writers_it_covers_first_and_last() -> None:
    # rows 5..11 of A over B's void 10..14: the message names the overlap, 10 to 11 inclusive
    with pytest.raises(ConflictError) as conflict:
        settle(20, HELD, 5, 12, A).raise_refusal("metrics/loss", 5, 12)
    assert str(conflict.value).startswith("rows 10..11 of metrics/loss were stored from another directory")
    # a batch past the other range's end: the overlap ends at that range's last index
    with pytest.raises(ConflictError) as conflict:
        settle(20, HELD, 12, 20, A).raise_refusal("metrics/loss", 12, 20)
    assert str(conflict.value).startswith("rows 12..14 of metrics/loss")


@pytest.mark.parametrize("start, end, writer", [(25, 30, A), (5, 12, A), (2, 8, A)])  # a gap, a conflict, a re-ack
def test_a_decision_that_stores_nothing_names_no_new_rows(start: int, end: int, writer: str) -> None:
    # a backend may sum new_end - new_first over every decision of a request (the stored-rows count)
    decision = settle(20, HELD, start, end, writer)
    assert decision.outcome not in (Outcome.STORE, Outcome.VOID)
    assert decision.new_end - decision.new_first == 0 and decision.new_stored == 20 and decision.extends is None


def test_a_range_read_back_from_the_database_is_extended_by_its_writer() -> None:
    # the stored range's writer and end and the batch's are equal values, never the same objects (a
    # str decoded, an int past CPython's cached small ones): the range grows, one range per writer's
    # run of rows, not one per batch
    def fresh(n: int) -> int:
        return int(str(n))

    read_back = [Settled(0, fresh(1000), A.encode().decode())]  # decode() makes a new str object
    decision = settle(fresh(1000), read_back, fresh(1000), fresh(1010), A.encode().decode())
    assert decision.outcome is Outcome.STORE and decision.extends == read_back[0]
    assert settle(fresh(1000), read_back, 500, 1010, A.encode().decode()).outcome is Outcome.STORE  # no conflict


def _apply(ranges: list[Settled], decision: Decision, writer: str | None, void: str | None) -> list[Settled]:
    if decision.outcome not in (Outcome.STORE, Outcome.VOID):
        return ranges
    if decision.extends is not None:
        return [Settled(r.first, decision.new_end, r.writer, r.void_reason) if r == decision.extends else r
                for r in ranges]
    return [*ranges, Settled(decision.new_first, decision.new_end, writer, void)]


# each batch starts ``back`` rows before the stored count (negative: past it, a gap), half of them right at
# it, so most batches meet the stored rows where the rule decides something (absolute starts are gaps
# nearly always: the model missed a writer's range extended by another writer's rows)
batches = st.lists(st.tuples(st.just(0) | st.integers(-2, 30), st.integers(1, 12), st.sampled_from([A, B]), st.booleans()),
                   min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(batches)
def test_the_rule_keeps_one_writer_per_index_and_stores_each_index_once(sequence) -> None:
    owners: list[tuple[str, bool]] = []  # the model: per stored index, its writer and whether it is a void
    ranges: list[Settled] = []
    for back, count, writer, is_void in sequence:
        start = max(0, len(owners) - back)
        end = start + count
        void = "set aside" if is_void else None
        decision = settle(len(owners), ranges, start, end, writer, void)
        # the same decision from only the ranges a backend needs to read
        needed = [r for r in ranges if r.end > start and r.first < min(end, len(owners))] + ranges[-1:]
        assert settle(len(owners), needed, start, end, writer, void) == decision
        if start > len(owners):
            assert decision.outcome is Outcome.GAP
        elif any(w != writer for w, _ in owners[start:end]):
            assert decision.outcome is Outcome.CONFLICT
        elif end <= len(owners):
            assert decision.outcome is Outcome.REACK
        else:
            assert decision.outcome is (Outcome.VOID if is_void else Outcome.STORE)
            assert (decision.new_first, decision.new_end) == (len(owners), end)
            owners += [(writer, is_void)] * (end - len(owners))
        ranges = _apply(ranges, decision, writer, void)
        # the ranges tile 0 .. stored-1 and say each index's writer and whether it is a void
        assert [i for r in ranges for i in range(r.first, r.end)] == list(range(len(owners)))
        assert [(r.writer, r.void_reason is not None) for r in ranges for _ in range(r.first, r.end)] == owners
