"""locks.held_many: a batch's locks taken at once (one round trip with Redis),
exclusive with `held`, each released on its own, never someone else's."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import cache

from executions.sync.locks import held, held_many
from tests.support.shared_redis import reachable_redis_url

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["configured", "redis"])
def shared_cache(request: pytest.FixtureRequest, settings: Any) -> str:
    """The run's own shared cache (the database's without REDIS_URL), and Redis."""
    if request.param == "redis" and not settings.REDIS_URL:
        url = reachable_redis_url()
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                # Its own keys: never clear a Redis others may use.
                "KEY_PREFIX": f"sfnui-test-{uuid.uuid4().hex}",
            }
        }
    return str(request.param)


def test_a_batch_gets_every_lock_nobody_holds_and_skips_the_held_one(shared_cache: str) -> None:
    with held("execution:2", timeout=30) as other:
        assert other
        with held_many(["execution:1", "execution:2", "execution:3"], timeout=30) as locks:
            assert locks.mine == {"execution:1", "execution:3"}
            with held("execution:1", timeout=30) as again:
                assert not again
    # Everything was released at the end.
    with held_many(["execution:1", "execution:2", "execution:3"], timeout=30) as locks:
        assert len(locks.mine) == 3


def test_a_lock_released_when_its_work_is_done_is_free_at_once(shared_cache: str) -> None:
    with held_many(["execution:1", "execution:2"], timeout=30) as locks:
        locks.release("execution:1")
        assert locks.mine == {"execution:2"}
        with held("execution:1", timeout=30) as mine:
            assert mine
        with held("execution:2", timeout=30) as mine:
            assert not mine


def test_a_batch_never_releases_a_lock_someone_took_after_ours_expired(shared_cache: str) -> None:
    with held_many(["execution:1"], timeout=30) as locks:
        # Ours expired; another worker took it (what expiry and add do).
        cache.delete("lock:execution:1")
        assert cache.add("lock:execution:1", "another-worker", timeout=30)
    assert cache.get("lock:execution:1") == "another-worker"
    assert locks.mine == set()
