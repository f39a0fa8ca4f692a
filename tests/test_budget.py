"""budget.py: token buckets shared by every process, in the database or in Redis."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection

from executions import budget

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"


def _bucket(capacity: float, rate: float) -> budget.Bucket:
    return budget.Bucket(key=f"test:{uuid.uuid4().hex}", capacity=capacity, rate=rate)


@pytest.fixture
def redis_store() -> Any:
    import redis

    store = budget._RedisStore(REDIS_URL)
    try:
        store.client.ping()
    except redis.ConnectionError:
        if os.environ.get("REDIS_URL") or os.environ.get("SFNUI_CI"):
            raise  # CI provides Redis: unreachable is a failure, not a skip
        pytest.skip(f"no Redis at {REDIS_URL}")
    return store


@pytest.fixture(params=["database", "redis"])
def store(request: pytest.FixtureRequest, db: None) -> Any:
    if request.param == "database":
        return budget._DatabaseStore()
    return request.getfixturevalue("redis_store")


def test_a_full_bucket_gives_its_burst_then_asks_to_wait(store: Any) -> None:
    # One token in 1,000 s: however slow the machine between the takes (a
    # second costs a thousandth of a token), the wait is for a whole token.
    b = _bucket(capacity=3, rate=0.001)
    assert [store.take(b) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = store.take(b)
    assert 990 < wait <= 1000


def test_tokens_come_back_at_the_rate(store: Any) -> None:
    b = _bucket(capacity=1, rate=10)
    assert store.take(b) == 0
    time.sleep(0.15)
    assert store.take(b) == 0


def test_a_drained_bucket_pauses_everyone(store: Any) -> None:
    # Slow refill (a token in 100 s), so that the machine's speed between
    # the calls cannot eat into the pause.
    b = _bucket(capacity=5, rate=0.01)
    store.take(b)
    store.drain(b, pause=100.0)
    assert store.level(b) < 0
    # The pause, and then the time for one token.
    assert store.take(b) > 100


def test_acquire_sleeps_for_a_token_and_reports_the_wait(
    settings: Any, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {"DescribeExecution": (1, 4)}
    op = "DescribeExecution"
    region = f"test-{uuid.uuid4().hex[:6]}"
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr("executions.budget.time.sleep", sleep)
    started = time.monotonic()
    assert budget.acquire(region, op) == 0
    waited = budget.acquire(region, op)
    # The second token comes 1/4 s after the first, whatever the machine's
    # speed; what acquire reports is what it slept for it (less than 1/4 s
    # when the machine was slow to make the second call).
    assert time.monotonic() - started >= 0.24
    assert waited == pytest.approx(sum(slept))
    assert waited < 0.5


def test_acquire_refuses_to_wait_longer_than_allowed(settings: Any, db: None) -> None:
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {"DescribeExecution": (1, 0.1)}
    region = f"test-{uuid.uuid4().hex[:6]}"
    budget.acquire(region, "DescribeExecution")
    with pytest.raises(budget.BudgetExhausted) as raised:
        budget.acquire(region, "DescribeExecution", max_wait=1.0)
    assert raised.value.wait > 1.0


def test_the_bucket_holds_the_configured_share_of_the_quota(settings: Any) -> None:
    settings.SFNUI_API_SHARE = 0.25
    settings.SFNUI_API_QUOTAS = {"GetExecutionHistory": (400, 20)}
    b = budget.bucket("us-east-1", "GetExecutionHistory")
    assert (b.capacity, b.rate) == (100, 5)


def test_concurrent_takers_never_spend_the_same_token_in_redis(redis_store: Any) -> None:
    _concurrent_takers_never_overspend(redis_store)


@pytest.mark.django_db(transaction=True)
def test_concurrent_takers_never_spend_the_same_token_in_the_database() -> None:
    _concurrent_takers_never_overspend(budget._DatabaseStore())


def _concurrent_takers_never_overspend(store: Any) -> None:
    b = _bucket(capacity=20, rate=0.001)
    store.take(b)  # create the bucket first: its creation is not what is tested here
    granted: list[int] = []
    lock = threading.Lock()

    def taker() -> None:
        mine = sum(1 for _ in range(15) if store.take(b) == 0)
        with lock:
            granted.append(mine)
        connection.close()

    threads = [threading.Thread(target=taker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 19


def test_a_store_that_is_down_lets_calls_through_unmetered(settings: Any, db: None) -> None:
    # Redis down must not stop people from stopping executions.
    settings.REDIS_URL = "redis://127.0.0.1:1/5"  # nothing listens
    assert budget.acquire("us-east-1", "StopExecution", max_wait=0) == 0
    budget.drain("us-east-1", "StopExecution")  # and no error either
