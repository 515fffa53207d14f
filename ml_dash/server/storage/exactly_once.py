"""The exactly-once rule of ingest, as a pure function every backend calls: what a batch of one stream
does, given what that stream holds.

Per (run, stream) a backend keeps ``stored`` (rows ``0 .. stored-1`` are settled) and the settled
*ranges*: which writer (a run directory's id) settled which indices, and whether a range is a *void*
(rows the client set aside, with its reason). A batch of rows ``start .. end-1`` from ``writer`` is:

* a **gap** when ``start > stored``: refused (:class:`~.errors.GapError`, 409 with the counts; the client
  rewinds to ``stored``);
* a **conflict** when an index below ``stored`` that it covers was settled by another writer (a range
  with no writer, from before writers were recorded, conflicts with nobody): refused
  (:class:`~.errors.ConflictError`, 409 ``conflict``); these are different rows under the same indices;
* a **re-ack** when all of it is below ``stored`` and settled by the same writer: a resend, nothing is
  stored again and the batch is acknowledged;
* else it **stores** (or, for a void, **voids**) ``stored .. end-1``: the part already settled by the
  same writer is a resend, the rest is new. The new range *extends* the stream's last range when that
  one ends at ``stored``, is the same writer's and neither is a void; else it is a new range.

Nothing here touches a database: a backend reads ``stored`` and the ranges inside the transaction
that holds the run's write lock, calls :func:`settle`, and writes what the decision says.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConflictError, GapError


class Outcome(enum.Enum):
    STORE = "store"  # new rows: store rows new_first .. new_end-1
    VOID = "void"  # a new void: record new_first .. new_end-1 as set aside
    REACK = "reack"  # all of it settled by this writer already: store nothing, acknowledge
    GAP = "gap"  # starts past the stored rows: refuse
    CONFLICT = "conflict"  # covers indices another writer settled: refuse


@dataclass(frozen=True, slots=True)
class Settled:
    """A settled range of one stream: indices ``first .. end-1`` by ``writer`` (None: unknown, from
    before writers were recorded), a void when ``void_reason`` is set."""

    first: int
    end: int
    writer: str | None
    void_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    stored: int  # the stream's stored count before the batch
    new_first: int = 0  # with STORE or VOID: the new indices (new_first is ``stored``)
    new_end: int = 0
    extends: Settled | None = None  # with STORE: the range to extend to new_end (else: a new range)
    other: Settled | None = None  # with CONFLICT: a range of another writer that the batch covers

    @property
    def new_stored(self) -> int:
        """The stream's stored count after the batch."""
        return self.new_end if self.outcome in (Outcome.STORE, Outcome.VOID) else self.stored

    def raise_refusal(self, stream: str, start: int, end: int) -> None:
        """GapError or ConflictError for a refused batch (rows ``start .. end-1`` of ``stream``)."""
        if self.outcome is Outcome.GAP:
            raise GapError(stream, self.stored)
        if self.outcome is Outcome.CONFLICT:
            assert self.other is not None
            other = self.other
            raise ConflictError(
                f"rows {max(start, other.first)}..{min(end, other.end) - 1} of {stream} were stored from another "
                "directory (another writer of the run); these are different rows under the same indices",
                {"kind": "writer", "stream": stream, "first": other.first, "end": other.end})


def settle(stored: int, ranges: Iterable[Settled], start: int, end: int, writer: str | None,
           void_reason: str | None = None) -> Decision:
    """What rows ``start .. end-1`` of ``writer`` (a void when ``void_reason`` is set) do to a stream of
    ``stored`` rows with the settled ``ranges``. ``ranges`` may be all of the stream's, or only those
    that overlap ``start .. min(end, stored)-1`` together with the last one (the one ending at
    ``stored``): the decision is the same."""
    if start > stored:
        return Decision(Outcome.GAP, stored)
    held = sorted(ranges, key=lambda r: r.first)
    if start < stored:
        covered_end = min(end, stored)
        for r in held:
            # another writer's range under the batch's indices (a range with no writer conflicts with nobody)
            if r.end > start and r.first < covered_end and r.writer is not None and r.writer != (writer or ""):
                return Decision(Outcome.CONFLICT, stored, other=r)
    if end <= stored:
        return Decision(Outcome.REACK, stored)
    last = held[-1] if held else None
    extends = None
    if (void_reason is None and last is not None and last.end == stored and last.writer == writer
            and last.void_reason is None):
        extends = last
    return Decision(Outcome.VOID if void_reason is not None else Outcome.STORE, stored, stored, end, extends)
