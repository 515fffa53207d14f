"""The retry table, Retry-After parsing and the tenacity wait, with a fake clock and sleep."""

from __future__ import annotations

import asyncio
import random
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
        # bounded: a policy that retries without end must fail here, not hang the suite (the fake clock
        # makes every wait free)
        assert calls["n"] < 10_000, "retried 10,000 times"
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


# -- the policy at its literal edges (from the module's table and docs/remote.md, not its constants) --


def test_retry_after_is_clamped_to_five_minutes_and_nan_is_no_advice() -> None:
    clock = lambda: 1_800_000_000.0
    assert parse_retry_after("299", clock) == 299.0 and parse_retry_after("300", clock) == 300.0
    assert parse_retry_after("301", clock) == 300.0 and parse_retry_after("inf", clock) == 300.0
    assert parse_retry_after(" 7 ", clock) == 7.0  # header values arrive with their spaces
    assert parse_retry_after("nan", clock) is None  # not a wait of NaN seconds
    far = format_datetime(datetime.fromtimestamp(1_800_000_000.0 + 3600, tz=timezone.utc), usegmt=True)
    assert parse_retry_after(f"  {far}  ", clock) == 300.0


def test_a_retry_after_of_one_second_is_waited_as_told() -> None:
    # under a second reads as "no advice"; one second is advice
    outcome, waits, calls = _run([Outcome(503, retry_after_s=1.0), Outcome(200)])
    assert outcome.ok and calls == 2 and waits == [1.0]


def test_only_2xx_is_success() -> None:
    assert [Outcome(s).ok for s in (199, 200, 204, 299, 300, 304)] == [False, True, True, True, False, False]
    assert not Outcome(0).ok and not Outcome(-1).ok


def test_a_request_that_could_not_be_made_and_the_four_hundreds_around_408_are_not_retried() -> None:
    assert not Outcome(-1).retryable and not Outcome(407).retryable and not Outcome(409).retryable
    assert not Outcome(501).retryable and not Outcome(505).retryable and not Outcome(508).retryable


def test_the_reason_says_the_servers_error_or_the_network_failure() -> None:
    assert Outcome(0).reason == "no answer" and Outcome(-1, error="bad header value").reason == "bad header value"
    assert Outcome(0, error="connection reset").reason == "connection reset"
    assert Outcome(503, body={"error": "busy"}).reason == "HTTP 503: busy"
    assert Outcome(503, body={"error": ""}).reason == "HTTP 503"
    assert Outcome(503, body={"error": 7}).reason == "HTTP 503" and Outcome(503).reason == "HTTP 503"
    assert Outcome(1, error="x").reason == "HTTP 1"  # any HTTP answer is named by its status


def test_the_default_backoff_starts_at_a_fifth_of_a_second_doubles_and_is_capped_at_30_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # full jitter draws each wait from 0 .. the schedule's ceiling: drawn at the ceiling here, the schedule shows
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    clock = FakeClock()

    async def send(timeout_s: float | None) -> Outcome:
        return Outcome(0, error="refused") if len(clock.sleeps) < 10 else Outcome(200)

    outcome = asyncio.run(send_with_retries(send, Deadline(None, clock), 30.0, clock.sleep))
    assert outcome.ok
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])


def test_nothing_is_sent_once_the_deadline_has_come_during_a_wait() -> None:
    outcome, waits, calls = _run([Outcome(503, retry_after_s=MAX_RETRY_AFTER_S)] * 100, deadline_s=3.0)
    assert outcome.status == 503 and calls == 1 and waits == [3.0]


def test_each_attempt_may_take_the_request_timeout_or_the_time_left_whichever_is_less() -> None:
    clock = FakeClock()
    timeouts: list[float | None] = []

    async def send(timeout_s: float | None) -> Outcome:
        timeouts.append(timeout_s)
        clock.now += 8.0  # each attempt takes 8 s of the deadline's 20
        return Outcome(0, error="timed out")

    async def main(deadline: Deadline) -> Outcome:
        return await send_with_retries(send, deadline, 10.0, clock.sleep, base_s=0.0)

    assert asyncio.run(main(Deadline(20.0, clock))).status == 0
    assert timeouts[:3] == [10.0, 10.0, 4.0]
    # a deadline that does not cut transfers (a background pass) leaves each attempt its whole timeout
    timeouts.clear()
    asyncio.run(main(Deadline(20.0, clock, cuts_transfers=False)))
    assert timeouts[:3] == [10.0, 10.0, 10.0]
    # a deadline already past still gets its one attempt, with a timeout that is short but not 0
    # (which aiohttp reads as no timeout at all)
    timeouts.clear()
    asyncio.run(main(Deadline(0.0, clock)))
    assert len(timeouts) == 1 and 0.0 < timeouts[0] <= 0.001


def test_the_statuses_a_caller_waits_for_its_own_way_are_returned_at_once() -> None:
    clock = FakeClock()
    calls: list[int] = []

    async def send(timeout_s: float | None) -> Outcome:
        calls.append(1)
        return Outcome(503, retry_after_s=5.0) if len(calls) == 1 else Outcome(200)

    outcome = asyncio.run(send_with_retries(send, Deadline(60, clock), 30.0, clock.sleep, stop_on=(503, 507)))
    assert outcome.status == 503 and len(calls) == 1 and clock.sleeps == []
    calls.clear()
    outcome = asyncio.run(send_with_retries(send, Deadline(60, clock), 30.0, clock.sleep, stop_on=(507,)))
    assert outcome.ok and len(calls) == 2 and clock.sleeps == [5.0]
