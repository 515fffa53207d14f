"""The client's retry policy: one table of statuses, one Retry-After parser, one wait.

    2xx                            advance the acknowledged cursor (and reconcile with the server's counts)
    400, 413 (one row), 415, 422   naming a row: that row is set aside (voided on the server, kept on
                                   disk, counted); naming none: the upload of the run stops and says why
    401, 403                       stop uploading, keep writing locally, warn once, probe slowly
    409                            with "acked": rewind to the server's count; with "conflict": another
                                   run holds the prefix, stop and say how to send the rows instead
    413 (a batch)                  split the batch and resend
    408, 429, 503 + Retry-After    wait as told (clamped), then retry
    500, 502, 504, 507, refused,   exponential backoff with full jitter, capped
    reset, timeout

Every wait is bounded by the caller's :class:`~.deadline.Deadline`: a
``Retry-After`` longer than the time left ends the retries when the deadline
comes, not when the server said.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result
from tenacity.wait import wait_base, wait_random_exponential

from ..deadline import Deadline

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 507})
#: A Retry-After shorter than this is read as "no advice" (delta-seconds are whole seconds; 1e-9 from a
#: confused server would otherwise be a hot loop): the backoff schedule waits instead.
MIN_RETRY_AFTER_S = 1.0


class StopReason(str, Enum):
    """Why an upload stopped where no retry helps (``UploadReport.stopped``); a ``str``, so a report
    prints and compares as the word it always was."""

    AUTH = "auth"  # the server refused the credentials (401)
    FORBIDDEN = "forbidden"  # the key may not write there (403: another owner's runs)
    CONFLICT = "conflict"  # another run (or another copy of this one) holds the prefix or the indices
    REJECTED = "rejected"  # a 4xx naming no row the upload can set aside
    LOST = "lost"  # the server holds fewer rows than this directory continues after
    STUCK = "stuck"  # the same rows asked for again and again without progress
    INVALID = "invalid"  # the request cannot be made, or the answer is not an ml-dash server's

    def __str__(self) -> str:
        return self.value


#: What an upload says when the server refuses the credentials: 401 bad key, 403 not that owner's runs.
STOPS = {401: StopReason.AUTH, 403: StopReason.FORBIDDEN}
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request came back with (status 0: no HTTP answer at all; -1: the request could not even
    be made, e.g. a header value or a URL aiohttp refuses; ``error`` says why)."""

    status: int
    retry_after_s: float | None = None
    body: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRYABLE

    @property
    def reason(self) -> str:
        """What went wrong, for a message: the server's ``error``, or the network failure."""
        if self.status <= 0:
            return self.error or "no answer"
        error = (self.body or {}).get("error")
        return f"HTTP {self.status}" + (f": {error}" if isinstance(error, str) and error else "")


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
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class WaitRetryAfterOrJitter(wait_base):
    """tenacity wait: the server's Retry-After when the last outcome had a positive one, else full jitter.

    A Retry-After of zero, under a second, or a date already past means "now";
    answering it with no wait at all turns a server repeating it into a hot
    loop, so those fall back to the backoff schedule.
    """

    def __init__(self, base_s: float = 0.2, cap_s: float = 30.0) -> None:
        self._jitter = wait_random_exponential(multiplier=base_s, max=cap_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            result = outcome.result()
            if isinstance(result, Outcome) and result.retry_after_s and result.retry_after_s >= MIN_RETRY_AFTER_S:
                return result.retry_after_s
        return self._jitter(retry_state)


async def send_with_retries(attempt: Callable[[float | None], Awaitable[Outcome]], deadline: Deadline,
                            request_timeout_s: float, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                            single_attempt: bool = False, base_s: float = 0.2, cap_s: float = 30.0,
                            stop_on: tuple[int, ...] | None = None) -> Outcome:
    """Call ``attempt(timeout_s)`` until its Outcome is not retryable or ``deadline`` passes; the last
    Outcome is returned either way. ``timeout_s`` bounds each wait of the attempt (connecting, each part
    of its body, the answer): the request timeout, or the time left when that is less and the deadline
    cuts transfers; waits between attempts are cut to the time left too. ``single_attempt``: one try,
    no retries; ``stop_on``: statuses returned at once, retryable or not (the caller waits its own way)."""
    wait = WaitRetryAfterOrJitter(base_s, cap_s)
    last: list[Outcome] = []

    async def once() -> Outcome:
        left = deadline.remaining()
        if last and left == 0.0:
            return last[-1]  # the deadline came during the wait: nothing more is sent
        whole = deadline.transfer_s()
        timeout = request_timeout_s if whole is None else min(request_timeout_s, max(whole, 0.001))
        outcome = await attempt(timeout)
        last.append(outcome)
        del last[:-1]
        return outcome

    retrying = AsyncRetrying(
        retry=retry_if_result(lambda outcome: outcome.retryable and outcome.status not in (stop_on or ())),
        wait=lambda state: deadline.bound(wait(state)),
        stop=lambda state: single_attempt or deadline.expired,
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]  # set after an attempt
    )
    return await retrying(once)
