"""The retry table, Retry-After parsing and the tenacity wait, with a fake clock and sleep."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from email.utils import format_datetime

from ml_dash.agent.retry import MAX_RETRY_AFTER_S, Outcome, parse_retry_after, retrying


def test_retry_after_seconds_date_past_malformed_and_huge() -> None:
    now = 1_800_000_000.0
    clock = lambda: now  # noqa: E731
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
    waits: list[float] = []
    calls = {"n": 0}

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    async def send() -> Outcome:
        outcome = script[min(calls["n"], len(script) - 1)]
        calls["n"] += 1
        return outcome

    async def main() -> Outcome:
        return await retrying(deadline_s, sleep=fake_sleep, base_s=1.0, cap_s=8.0)(send)

    return asyncio.run(main()), waits, calls["n"]


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
