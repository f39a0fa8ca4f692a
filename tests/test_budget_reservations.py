"""budget.reserved(): a batch takes its tokens ahead in one script call, spends
them without asking Redis, gives back what it did not spend, and never lets
the calls exceed what the bucket allows one by one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from executions import budget
from tests.support.shared_redis import reachable_redis_url

OP = "DescribeExecution"


@pytest.fixture
def redis_budget(settings: Any) -> Callable[[float, float], budget.Bucket]:
    """The budget in a Redis (the test run's, else the machine's db 15), with
    a bucket of its own per test: returns a function that sets its size."""
    settings.REDIS_URL = reachable_redis_url()
    settings.SFNUI_API_SHARE = 1.0
    region = f"test-{uuid.uuid4().hex[:8]}"

    def sized(capacity: float, rate: float) -> budget.Bucket:
        settings.SFNUI_API_QUOTAS = {OP: (capacity, rate)}
        return budget.bucket(region, OP)

    return sized


def _region(b: budget.Bucket) -> str:
    return b.key.split(":")[2]


def _count_scripts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    modes: list[str] = []
    real = budget._RedisStore._run

    def run(self: Any, b: budget.Bucket, mode: str, *args: Any) -> str:
        modes.append(mode)
        return real(self, b, mode, *args)

    monkeypatch.setattr(budget._RedisStore, "_run", run)
    return modes


def test_a_batch_takes_its_tokens_in_one_call_and_gives_back_the_rest(
    redis_budget: Callable[[float, float], budget.Bucket], monkeypatch: pytest.MonkeyPatch
) -> None:
    b = redis_budget(10, 0.001)
    modes = _count_scripts(monkeypatch)
    with budget.reserved({OP: 5}, _region(b)):
        for _ in range(3):
            assert budget.acquire(_region(b), OP) == 0
    assert modes == ["reserve", "release"]
    # 3 spent, 2 given back: 7 left (less than a hundredth refilled meanwhile).
    assert budget.level(_region(b), OP)[0] == pytest.approx(7, abs=0.01)


def test_while_tokens_are_reserved_the_bucket_refills_only_to_the_rest(
    redis_budget: Callable[[float, float], budget.Bucket],
) -> None:
    # A fast refill: without the reservation counted, the bucket would be full again.
    b = redis_budget(10, 1_000_000)
    store = budget._store()
    assert isinstance(store, budget._RedisStore)
    held = budget._Held("other-worker", 0, 0.0)
    held.count, _ = store.reserve(b, 10, held.id)
    assert held.count == 10
    assert store.level(b) == 0
    assert store.take(b) > 0
    # Given back unspent: they are the bucket's again, and it refills to full.
    store.release(b, held)
    assert store.level(b) == 10


def test_a_reservation_its_worker_never_gave_back_lapses(
    redis_budget: Callable[[float, float], budget.Bucket], monkeypatch: pytest.MonkeyPatch
) -> None:
    b = redis_budget(4, 1_000_000)
    store = budget._store()
    assert isinstance(store, budget._RedisStore)
    monkeypatch.setattr(budget, "RESERVATION_TTL", 0.0)
    # A worker killed while it held these: nothing gives them back.
    granted, _ = store.reserve(b, 4, "killed-worker")
    assert granted == 4
    # Its reservation is forgotten (TTL 0), its tokens forfeited, the bucket refilled.
    assert store.level(b) == 4


def test_a_reservation_is_spent_only_while_fresh_then_taken_again(
    redis_budget: Callable[[float, float], budget.Bucket], monkeypatch: pytest.MonkeyPatch
) -> None:
    b = redis_budget(10, 0.001)
    modes = _count_scripts(monkeypatch)
    clock = [1000.0]
    monkeypatch.setattr("executions.budget.time.monotonic", lambda: clock[0])
    with budget.reserved({OP: 4}, _region(b)):
        budget.acquire(_region(b), OP)
        clock[0] += budget.RESERVATION_SECONDS
        budget.acquire(_region(b), OP)
    assert modes == ["reserve", "reserve", "release"]
    # Two spent; the stale reservation's three and the fresh one's two came back.
    assert budget.level(_region(b), OP)[0] == pytest.approx(8, abs=0.01)


def test_a_batch_gets_what_the_bucket_has_then_waits_or_gives_up(
    redis_budget: Callable[[float, float], budget.Bucket],
) -> None:
    b = redis_budget(3, 0.001)
    with budget.reserved({OP: 5}, _region(b)):
        for _ in range(3):
            assert budget.acquire(_region(b), OP, max_wait=0) == 0
        with pytest.raises(budget.BudgetExhausted) as raised:
            budget.acquire(_region(b), OP, max_wait=1.0)
    assert raised.value.operation == OP
    assert raised.value.region == _region(b)
    assert raised.value.wait > 900


def test_a_throttled_call_forfeits_what_the_batch_held(
    redis_budget: Callable[[float, float], budget.Bucket],
) -> None:
    b = redis_budget(10, 0.001)
    with budget.reserved({OP: 5}, _region(b)):
        budget.acquire(_region(b), OP)
        budget.drain(_region(b), OP, pause=1.0)
    # Nothing came back into the drained bucket.
    assert budget.level(_region(b), OP)[0] < 0


def test_without_redis_each_call_takes_its_own_token(settings: Any, db: None) -> None:
    settings.REDIS_URL = ""
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {OP: (3, 0.001)}
    region = f"test-{uuid.uuid4().hex[:8]}"
    with budget.reserved({OP: 3}, region) as reservation:
        assert reservation is None
        budget.acquire(region, OP)
    assert budget.level(region, OP)[0] == pytest.approx(2, abs=0.01)
