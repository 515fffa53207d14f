"""The client's retry policy: one table of statuses, one Retry-After parser, one wait.

    2xx                        advance the acknowledged cursor
    400, 413 (one event), 415, 422   permanent for that batch: set it aside on disk, count it, go on
    401, 403                   stop uploading, keep writing locally, warn once, probe slowly
    413 (batch)                split the batch and resend
    408, 429, 503 + Retry-After    wait as told (clamped), then retry
    500, 502, 504, refused, reset, timeout   exponential backoff with full jitter, capped
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_delay, stop_never
from tenacity.wait import wait_base, wait_random_exponential

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
AUTH_FAILURES = frozenset({401, 403})
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request came back with (status 0: no HTTP answer at all)."""

    status: int
    retry_after_s: float | None = None
    body: dict | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRYABLE


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), clamped; None if absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class WaitRetryAfterOrJitter(wait_base):
    """tenacity wait: the server's Retry-After when the last outcome had a positive one, else full jitter.

    A Retry-After of zero or a date already past means "now"; answering it
    with no wait at all turns a server repeating a stale date into a hot loop,
    so those fall back to the backoff schedule.
    """

    def __init__(self, base_s: float = 0.2, cap_s: float = 30.0) -> None:
        self._jitter = wait_random_exponential(multiplier=base_s, max=cap_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            result = outcome.result()
            if isinstance(result, Outcome) and result.retry_after_s:
                return result.retry_after_s
        return self._jitter(retry_state)


def retrying(deadline_s: float | None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
             base_s: float = 0.2, cap_s: float = 30.0) -> AsyncRetrying:
    """Retry an ``async () -> Outcome`` while it is retryable, until ``deadline_s`` (None: forever).

    The last :class:`Outcome` is returned when retries stop, retryable or not.
    """
    return AsyncRetrying(
        retry=retry_if_result(lambda outcome: outcome.retryable),
        wait=WaitRetryAfterOrJitter(base_s, cap_s),
        stop=stop_never if deadline_s is None else stop_after_delay(deadline_s),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result(),
    )
