"""The body budget of server/http/admission.py: what waits, what is refused with 503, what is given back."""

from __future__ import annotations

import asyncio

import pytest

from ml_dash.server.errors import Unavailable
from ml_dash.server.http.admission import BODY_STEP_BYTES, RETRY_AFTER_S, BodyBudget
from ml_dash.server.http.bodies import Pace

MiB = 1 << 20


async def _hold(budget: BodyBudget, size: int, holder: str, release: asyncio.Event, entered: list[str]) -> None:
    async with budget.reserve(size, holder):
        entered.append(holder)
        await release.wait()


def test_a_body_that_fits_is_admitted_at_once_and_gives_its_bytes_back() -> None:
    async def main() -> None:
        budget = BodyBudget(64 * MiB, queue=4, wait_s=5.0)
        async with budget.reserve(10 * MiB, "alice"):
            assert budget.used == 10 * MiB
        assert budget.used == 0

    asyncio.run(main())


def test_a_body_without_room_waits_and_is_admitted_when_room_appears() -> None:
    async def main() -> None:
        budget = BodyBudget(32 * MiB, queue=4, wait_s=5.0)
        release, entered = asyncio.Event(), []
        first = asyncio.create_task(_hold(budget, 16 * MiB, "alice", release, entered))
        second = asyncio.create_task(_hold(budget, 16 * MiB, "bob", asyncio.Event(), entered))
        third = asyncio.create_task(_hold(budget, 16 * MiB, "carol", asyncio.Event(), entered))
        await asyncio.sleep(0.05)
        assert entered == ["alice", "bob"] and budget.waiting == 1  # carol waits: 48 MiB > 32
        release.set()
        await first
        await asyncio.sleep(0.05)
        assert entered == ["alice", "bob", "carol"] and budget.used == 32 * MiB
        second.cancel()
        third.cancel()
        await asyncio.gather(second, third, return_exceptions=True)
        assert budget.used == 0 and budget.waiting == 0

    asyncio.run(main())


def test_one_holder_takes_at_most_half_of_the_budget_and_others_still_get_in() -> None:
    async def main() -> None:
        budget = BodyBudget(64 * MiB, queue=4, wait_s=0.2)
        entered: list[str] = []
        hold = asyncio.Event()
        mallory = [asyncio.create_task(_hold(budget, 16 * MiB, "mallory", hold, entered)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert entered == ["mallory", "mallory"]  # the third waits: her half is taken
        async with budget.reserve(16 * MiB, "alice"):  # there is room for someone else
            assert budget.used == 48 * MiB
        with pytest.raises(Unavailable):
            await mallory[2]
        hold.set()
        await asyncio.gather(*mallory[:2])
        assert budget.used == 0

    asyncio.run(main())


def test_a_full_queue_and_a_wait_past_its_bound_are_503_with_retry_after() -> None:
    async def main() -> None:
        budget = BodyBudget(16 * MiB, queue=1, wait_s=0.2)
        hold = asyncio.Event()
        holders = [asyncio.create_task(_hold(budget, 8 * MiB, name, hold, [])) for name in "ab"]  # full
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_hold(budget, 8 * MiB, "c", asyncio.Event(), []))
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable) as full:  # the queue holds one already
            async with budget.reserve(8 * MiB, "d"):
                pass
        assert full.value.retry_after_s == RETRY_AFTER_S and "wait for room" in str(full.value)
        with pytest.raises(Unavailable) as late:
            await waiter
        assert late.value.retry_after_s == RETRY_AFTER_S and "within 0.2 s" in str(late.value)
        assert budget.waiting == 0 and budget.used == 16 * MiB  # the waiter left nothing behind
        hold.set()
        await asyncio.gather(*holders)
        assert budget.used == 0

    asyncio.run(main())


def test_a_client_gone_while_waiting_leaves_nothing_reserved() -> None:
    async def main() -> None:
        budget = BodyBudget(16 * MiB, queue=4, wait_s=5.0)
        hold = asyncio.Event()
        holder = asyncio.create_task(_hold(budget, 16 * MiB, "a", hold, []))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_hold(budget, 8 * MiB, "a", asyncio.Event(), []))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        hold.set()
        await holder
        assert budget.used == 0 and budget.waiting == 0

    asyncio.run(main())


def test_a_hold_grows_as_its_body_arrives_and_is_refused_without_waiting_when_there_is_no_room() -> None:
    async def main() -> None:
        budget = BodyBudget(32 * MiB, queue=4, wait_s=5.0)
        async with budget.reserve(16 * MiB, "bob"), budget.reserve(12 * MiB, "carol"):
            with pytest.raises(Unavailable) as refused:
                async with budget.hold(BODY_STEP_BYTES, "alice") as hold:
                    assert budget.used == 28 * MiB + BODY_STEP_BYTES  # a step, not the body's 16 MiB
                    hold.cover(4 * MiB)
                    hold.cover(2 * MiB)  # never shrinks while the body is read
                    assert hold.held == 4 * MiB and budget.used == 32 * MiB
                    hold.cover(4 * MiB + BODY_STEP_BYTES)  # no room: 503 at once, not a wait
            assert refused.value.retry_after_s == RETRY_AFTER_S and budget.waiting == 0
            assert budget.used == 28 * MiB  # what the refused body held is given back
        assert budget.used == 0

    asyncio.run(main())


def test_a_piece_at_a_time_holds_nothing_between_pieces() -> None:
    async def main() -> None:
        budget = BodyBudget(16 * MiB, queue=4, wait_s=5.0)
        async with budget.hold(0, "alice") as hold:
            assert budget.used == 0
            await hold.take(MiB)
            assert budget.used == MiB
            hold.drop()
            assert budget.used == 0 and hold.held == 0
            await hold.take(MiB)  # still held at the block's end: given back there
        assert budget.used == 0

    asyncio.run(main())


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_body_keeps_its_pace_from_its_first_byte_and_banks_at_most_the_slack() -> None:
    clock = _Clock()
    steady = Pace(64 * 1024, bank_s=30.0, clock=clock)
    burst = Pace(64 * 1024, bank_s=30.0, clock=clock)
    small = Pace(64 * 1024, bank_s=30.0, clock=clock)
    burst.arrived(16 * MiB)  # at once: worth 256 s at the pace, but only 30 s are banked
    small.arrived(1000)
    for _ in range(1000):  # 1,000 s at exactly the pace
        clock.now += 1.0
        steady.arrived(64 * 1024)
        small.arrived(1)
    left = steady.seconds_left()
    assert left is not None and left > 0  # never behind, however long
    burst_left = burst.seconds_left()
    assert burst_left is not None and burst_left <= 0  # behind since 30 s after its burst
    small_left = small.seconds_left()
    assert small_left is not None and small_left <= 0  # under a step too: a byte a second is behind
    assert Pace(0, bank_s=30.0, clock=clock).seconds_left() is None  # 0: no pace kept
