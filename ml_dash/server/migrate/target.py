"""What a migration asks of the store it copies into: the :class:`MigrationTarget` protocol.

A backend gives one from ``Storage.migration_target()``, over its own tables. Its obligations:

* :meth:`MigrationTarget.run_writer` is ONE transaction: a run is in the target whole, with every row
  of every table, or not at all (a ``kill -9`` at any moment leaves no part of a run; the next migration
  copies it again). Its rows are written as given (ids mapped, nothing recomputed), so every read of
  the run answers what the source answered.
* :meth:`MigrationTarget.run_mark` reads what identifies a run the target holds, so a rerun can tell a
  run it copied (skip) from another one under the same name (refuse).
* keys, grants, sessions and archive notes already there are left as they are (``INSERT ... DO NOTHING``):
  the caller compares them first.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .records import KeyRecord, ObjectRecord, Row, RunMark, RunRecord, RunTable, SessionRecord


class RunWriter(Protocol):
    """The writes of one run's transaction."""

    async def create_run(self, run: RunRecord, source_id: int) -> int:
        """Insert the run's row; the target's id of it: ``source_id`` when no run of the target holds it (the
        read API shows a run's id: a migration into an empty target keeps every one), else a new one. The
        caller checked that no run holds its name."""
        ...

    async def put_rows(self, exp_id: int, table: RunTable, rows: list[Row]) -> None:
        """Insert rows of ``table`` (tuples of ``table.columns``) under the run ``exp_id``."""
        ...

    async def put_objects(self, objects: list[ObjectRecord]) -> None:
        """Note archive objects (kept as they are when already noted: objects are shared by content)."""
        ...


class MigrationTarget(Protocol):
    async def run_mark(self, owner: str, project: str, name: str) -> RunMark | None:
        """What identifies the run the target holds under that name, or None."""
        ...

    def run_writer(self) -> AbstractAsyncContextManager[RunWriter]:
        """One transaction, committed when the block ends without an exception, else rolled back."""
        ...

    async def key(self, key_id: str) -> KeyRecord | None:
        """The key stored under ``key_id``, or None."""
        ...

    async def session_owner(self, token_sha256: str) -> str | None:
        """The owner of the session stored under ``token_sha256`` (expired or not), or None."""
        ...

    async def put_keys(self, keys: list[KeyRecord]) -> int:
        """Insert the keys not yet there; how many were new."""
        ...

    async def put_grants(self, grants: list[tuple[str, str]]) -> int:
        """Insert the (owner, member) grants not yet there; how many were new."""
        ...

    async def put_sessions(self, sessions: list[SessionRecord]) -> int:
        """Insert the sessions not yet there; how many were new."""
        ...
