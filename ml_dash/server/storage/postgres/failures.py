"""asyncpg's failures as the storage's errors (``..errors``), by SQLSTATE and exception class, never by
message: nothing above this package reads a driver's exceptions.

=====================================  ===================================================
what happened                          raised as
=====================================  ===================================================
deadlock (40P01), serialisation        retried by the caller (:data:`RETRIED`), then
failure (40001)                        :class:`StorageBusy`
disk full (53100)                      :class:`StorageFull`
too many connections, out of memory    :class:`StorageBusy`
(53xxx), lock_timeout (55P03),
statement cancelled (57014), no
pooled connection free in time
connection lost or refused (08xxx,     :class:`StorageUnavailable` (503 with Retry-After)
57P01-57P03, OSError, a closed
connection), a read-only standby
(25006)
=====================================  ===================================================
"""

from __future__ import annotations

import asyncio

import asyncpg

from ..errors import StorageBusy, StorageError, StorageFull, StorageUnavailable

#: SQLSTATEs after which the whole transaction is run again (it was rolled back, nothing of it stored).
RETRIED = frozenset({"40P01", "40001"})
_BUSY = frozenset({"55P03", "57014", "53300", "53200", "53000", "40P01", "40001"})
_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "25006"})


def mapped(exc: BaseException) -> StorageError | None:
    """The storage error ``exc`` means, or None when it is none of the known failures (a bug)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        if state == "53100":
            return StorageFull(f"the database's disk is full ({state})")
        if state in _BUSY:
            return StorageBusy(f"the database was too busy to finish this in time ({state}: {type(exc).__name__})")
        if state in _UNAVAILABLE or state.startswith("08"):
            return StorageUnavailable(f"the database is not reachable just now ({state}: {type(exc).__name__})")
        return None
    if isinstance(exc, asyncio.TimeoutError):  # before OSError: TimeoutError is one
        return StorageBusy("no database connection within the wait (every pooled one in use, or the database "
                           "slow to accept a new one)")
    if isinstance(exc, (asyncpg.InterfaceError, OSError, ConnectionError)):
        # a closed or broken connection, a refused or reset TCP connection
        return StorageUnavailable(f"the database is not reachable just now ({type(exc).__name__})")
    return None
