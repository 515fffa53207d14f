"""The agent's environment variables, read and checked once, with a clear error for a bad value.

====================================  =========  ===============================================
variable                              default    meaning
====================================  =========  ===============================================
``ML_DASH_FLUSH_INTERVAL_S``          0.2        buffered events are written at least this often
``ML_DASH_FSYNC_INTERVAL_S``          1.0        written data is fsynced at least this often
``ML_DASH_MAX_BUFFER_MB``             64         memory the buffer may hold (MiB)
``ML_DASH_MAX_BLOCK_S``               0.5        the longest a log call waits on a full buffer
``ML_DASH_EXIT_TIMEOUT_S``            10         the flush deadline at interpreter exit or SIGTERM
``ML_DASH_MAX_OPEN_FILES``            64         stream files the process's runs keep open at
                                                 most, shared among them (each the least recently
                                                 written closed first)
``ML_DASH_REQUEST_TIMEOUT_S``         30         remote mode: the longest one request may take
``ML_DASH_UPLOAD_BATCH_ROWS``         16384      remote mode and sync: rows per request at most
``ML_DASH_START_TIMEOUT_S``           2          remote mode: the longest the start-up lookup of
                                                 the run on the server waits (0: no lookup)
====================================  =========  ===============================================

A value that is not a number, or outside its range, raises
:class:`~ml_dash.errors.ConfigurationError` naming the variable, when the
agent starts (the first ``run.start()``) or when ``ml-dash sync`` starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ml_dash.errors import ConfigurationError

from .handles import DEFAULT_MAX_OPEN_FILES

#: Rows per upload request at most. Small enough that a busy server answers a request in tens of
#: milliseconds, so twenty runs catching up at once take turns in small steps (131,072 rows a request
#: made some wait 0.4 s behind the others' bodies: benchmarks/storage.py); the rows of a larger write
#: are taken from memory chunk by chunk, so smaller requests cost the client no reading back.
UPLOAD_BATCH_ROWS = 16_384


def env_number(name: str, default: float, low: float, high: float, integer: bool = False) -> float:
    """The value of ``name`` (``default`` when unset or empty), checked to lie in ``[low, high]``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigurationError(f"environment variable {name}={raw!r} is not {kind}") from None
    if math.isnan(value) or not low <= value <= high:
        raise ConfigurationError(f"environment variable {name}={raw!r} must be between {low:g} and {high:g}")
    return value


@dataclass(frozen=True, slots=True)
class AgentSettings:
    flush_interval_s: float
    fsync_interval_s: float
    max_buffer_bytes: int
    max_block_s: float
    exit_timeout_s: float
    max_open_files: int

    @classmethod
    def from_env(cls) -> AgentSettings:
        return cls(
            flush_interval_s=env_number("ML_DASH_FLUSH_INTERVAL_S", 0.2, 0.001, 60),
            fsync_interval_s=env_number("ML_DASH_FSYNC_INTERVAL_S", 1.0, 0.001, 3600),
            max_buffer_bytes=int(env_number("ML_DASH_MAX_BUFFER_MB", 64, 1, 1 << 20) * 1024 * 1024),
            max_block_s=env_number("ML_DASH_MAX_BLOCK_S", 0.5, 0, 60),
            exit_timeout_s=env_number("ML_DASH_EXIT_TIMEOUT_S", 10, 0, 3600),
            # descriptors are the user's: a few suffice (agent/handles.py)
            max_open_files=int(env_number("ML_DASH_MAX_OPEN_FILES", DEFAULT_MAX_OPEN_FILES, 1, 1 << 20,
                                          integer=True)),
        )


@dataclass(frozen=True, slots=True)
class UploadSettings:
    request_timeout_s: float
    batch_rows: int
    start_timeout_s: float

    @classmethod
    def from_env(cls) -> UploadSettings:
        return cls(
            request_timeout_s=env_number("ML_DASH_REQUEST_TIMEOUT_S", 30, 0.05, 3600),
            # the server takes at most 1,000,000 events per request
            batch_rows=int(env_number("ML_DASH_UPLOAD_BATCH_ROWS", UPLOAD_BATCH_ROWS, 1, 1_000_000, integer=True)),
            start_timeout_s=env_number("ML_DASH_START_TIMEOUT_S", 2.0, 0, 60),
        )
