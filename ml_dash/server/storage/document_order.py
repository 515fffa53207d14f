"""Which run fields and params a backend keeps when bodies arrive out of order: a pure rule every backend calls.

A body's documents (its ``run`` fields and ``params``) are a snapshot of the run directory's
experiment.json and parameters.json when the client read them, stamped with ``docs_rev``: a number
that grows with every read by one uploading process (ml_dash/format/wire.py). Bodies of one run may
reach the store out of order: a request the client abandoned (its first one was still unanswered when
the run ended, or it timed out) can still be stored after the one that replaced it. Applied as they
come, the older snapshot would undo the newer one: a run that ended COMPLETED would read RUNNING for
good, and params set at the end would go back to earlier values.

So a backend keeps, per run, the writer and the ``docs_rev`` of the documents it applied last, and
applies a body's documents only when :func:`newer` says so. The rule orders snapshots of one writer (one
start of one run directory): those of one process by its clock, and those of a later ``ml-dash sync`` of
the same directory after them, since the sync stamps above the highest stamp the server acknowledged
from that directory (its upload cursor), whatever its own clock says. A body of another writer is
applied: a resumed directory, a copy of it or another directory continuing the run writes after the
last one. (Not covered: a request of an earlier writer given up on and stored after a later writer's
documents, which needs a request delayed across the run's restart.) A body without ``docs_rev`` (an SDK
before this rule, the server's own indexer of local runs) is applied, as before.
"""

from __future__ import annotations


def newer(stored_writer: str | None, stored_rev: int | None, writer: str | None, rev: int | None) -> bool:
    """Whether a body of ``writer`` with documents stamped ``rev`` replaces those the run holds (applied
    last from ``stored_writer`` at ``stored_rev``). Equal stamps apply: a resend carries the same snapshot."""
    if rev is None or stored_rev is None or writer != stored_writer:
        return True
    return rev >= stored_rev
