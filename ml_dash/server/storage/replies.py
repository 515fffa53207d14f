"""What an ingest reply says (ml_dash/format/wire.py, "Replies"), as every backend returns it. Imports nothing:
ingest workers and the storage errors load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """The stored count of each stream a reply names (those of the request; every stream of a small run for
    a client that did not ask for named counts), and the run's totals, which let a client see that the
    server holds less than it acknowledged."""

    acked: dict[str, int]
    run_streams: int
    run_rows: int

    def fields(self) -> dict[str, Any]:
        """The reply's JSON fields."""
        return {"acked": self.acked, "run_streams": self.run_streams, "run_rows": self.run_rows}
