"""The retry table, Retry-After parsing and the tenacity wait, with a fake clock and sleep."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from ml_dash.agent.deadline import Deadline
from ml_dash.agent.upload.retry import MAX_RETRY_AFTER_S, Outcome, parse_retry_after, send_with_retries

from .fake_server import FakeClock


def test_retry_after_seconds_date_past_malformed_and_huge() -> None:
    now = 1_800_000_000.0
    clock = lambda: now
    in_ten = format_datetime(datetime.fromtimestamp(now + 10, tz=timezone.utc), usegmt=True)
    long_ago = format_datetime(datetime.fromtimestamp(now - 100, tz=timezone.utc), usegmt=True)
    assert parse_retry_after("2", clock) == 2.0
    assert abs(parse_retry_after(in_ten, clock) - 10.0) < 1.0
    assert parse_retry_after(long_ago, clock) == 0.0
    assert parse_retry_after("soon", clock) is None
    assert parse_retry_after("99999999", clock) == MAX_RETRY_AFTER_S
    assert parse_retry_after("-5", clock) == 0.0
    assert parse_retry_after(None, clock) is None


def _run(script: list[Outcome], deadline_s: float | None = None) -> tuple[Outcome, list[float], int]:
    clock = FakeClock()
    calls = {"n": 0}
    timeouts: list[float] = []

    async def send(timeout_s: float | None) -> Outcome:
        timeouts.append(timeout_s)
        outcome = script[min(calls["n"], len(script) - 1)]
        calls["n"] += 1
        return outcome

    async def main() -> Outcome:
        return await send_with_retries(send, Deadline(deadline_s, clock), 30.0, clock.sleep, base_s=1.0, cap_s=8.0)

    outcome = asyncio.run(main())
    assert all(t is not None and t <= 30.0 for t in timeouts)
    return outcome, clock.sleeps, calls["n"]


def test_retry_waits_for_retry_after_seconds_then_succeeds() -> None:
    outcome, waits, calls = _run([Outcome(503, retry_after_s=2.0), Outcome(429, retry_after_s=7.5), Outcome(200)])
    assert outcome.ok and calls == 3 and waits == [2.0, 7.5]


def test_a_zero_or_past_retry_after_falls_back_to_backoff_instead_of_spinning() -> None:
    outcome, waits, calls = _run([Outcome(503, retry_after_s=0.0)] * 4 + [Outcome(200)])
    assert outcome.ok and calls == 5
    assert len(waits) == 4 and all(0.0 <= w <= 8.0 for w in waits)  # the jittered schedule, capped


def test_retry_without_retry_after_uses_capped_full_jitter() -> None:
    outcome, waits, calls = _run([Outcome(0)] * 6 + [Outcome(200)])
    assert outcome.ok and calls == 7
    assert all(0.0 <= w <= 8.0 for w in waits) and len(waits) == 6


def test_permanent_and_auth_failures_are_not_retried() -> None:
    for status in (400, 401, 403, 413, 415):
        outcome, waits, calls = _run([Outcome(status), Outcome(200)])
        assert outcome.status == status and calls == 1 and waits == []


def test_outcome_classification() -> None:
    assert Outcome(200).ok and not Outcome(200).retryable
    assert Outcome(0).retryable and Outcome(503).retryable and Outcome(429).retryable and Outcome(408).retryable
    assert not Outcome(400).retryable and not Outcome(401).retryable


def test_a_retry_after_longer_than_the_deadline_ends_the_retries_at_the_deadline() -> None:
    outcome, waits, calls = _run([Outcome(503, retry_after_s=MAX_RETRY_AFTER_S)] * 100, deadline_s=3.0)
    assert outcome.status == 503 and sum(waits) <= 3.0 + 1e-6 and calls <= 2  # not five minutes, not a hot loop


@pytest.mark.parametrize("status", [500, 502, 503, 504, 507, 408, 429, 0])
def test_transient_statuses_are_retried_until_they_succeed(status: int) -> None:
    outcome, waits, calls = _run([Outcome(status)] * 3 + [Outcome(200)], deadline_s=600)
    assert outcome.ok and calls == 4 and len(waits) == 3


def test_a_single_attempt_does_not_retry() -> None:
    clock = FakeClock()

    async def main() -> Outcome:
        async def send(timeout_s: float | None) -> Outcome:
            return Outcome(0, error="refused")

        return await send_with_retries(send, Deadline(60, clock), 30.0, clock.sleep, single_attempt=True)

    assert asyncio.run(main()).reason == "refused" and clock.sleeps == []


def test_a_retry_after_under_a_second_falls_back_to_backoff_instead_of_a_hot_loop() -> None:
    outcome, waits, calls = _run([Outcome(503, retry_after_s=1e-9)] * 1000, deadline_s=3.0)
    assert outcome.status == 503 and calls <= 30 and sum(waits) <= 3.0 + 1e-6
