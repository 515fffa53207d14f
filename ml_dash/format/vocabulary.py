"""The words of the format that every side checks the same way: run statuses, log levels, tags, times.

The SDK writes them, the agent stamps times, the server validates what it is sent, and readers
show them; they live here, beside the other contracts, so that the server needs none of the SDK.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from .values import MAX_NAME_CHARS, check_text


class RunStatus(str, Enum):
    """Recorded as ``status`` in ``experiment.json``."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"  # shown for a RUNNING run whose process is gone (never set by a running SDK)

    def __str__(self) -> str:
        return self.value


#: Every status a run may show, in the order of a run's life.
STATUSES = tuple(status.value for status in RunStatus)

#: Log levels, least severe first; ``warning`` and ``critical`` are accepted as their aliases.
LEVELS = ("debug", "info", "warn", "error", "fatal")
_LEVEL_ALIASES = {"warning": "warn", "critical": "fatal"}


def normalise_level(level: object) -> str:
    """The level's canonical name; TypeError or ValueError naming the problem otherwise."""
    if not isinstance(level, str):
        raise TypeError(f"log level must be a str, not {type(level).__name__}")
    name = _LEVEL_ALIASES.get(level.lower(), level.lower())
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return name


def check_tags(tags: Any) -> list[str]:
    """A list of at most 256 tags of 1 to 256 characters."""
    if not isinstance(tags, (list, tuple)):
        raise TypeError(f"tags must be a list of str, not {type(tags).__name__}")
    if len(tags) > 256:
        raise ValueError(f"{len(tags)} tags; at most 256")
    checked = [check_text("a tag", tag, MAX_NAME_CHARS * 4) for tag in tags]
    for tag in checked:
        if not tag or len(tag) > MAX_NAME_CHARS:
            raise ValueError(f"tag {tag[:40]!r} must be 1 to {MAX_NAME_CHARS} characters long")
    return checked


def utc_iso(ts: float | None = None) -> str:
    """ISO-8601 UTC with microseconds and a trailing Z, the shape upstream writes."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
