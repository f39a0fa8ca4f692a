"""A Redis for tests of what only Redis does (scripts, pipelines): the run's
own (REDIS_URL), else the machine's database 15, else the test is skipped
(never in CI, which provides one)."""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"


def reachable_redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        if os.environ.get("REDIS_URL") or os.environ.get("SFNUI_CI"):
            raise  # CI provides Redis: unreachable is a failure, not a skip
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL
