"""Locks in the shared cache (Redis, or the database cache without it).

A lock expires by itself, so a worker killed while holding one delays the
work by at most `timeout` seconds and never blocks it for good.

`held` takes one lock; `held_many` a batch's at once (with Redis, one round
trip to take them all and one to release each), on the same keys. The
batch's token is an int, which Django's Redis serializer stores as plain
digits, so `held` reads it through the cache as it reads its own.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


@contextlib.contextmanager
def held(name: str, timeout: float) -> Iterator[bool]:
    """Try to take the lock `name`; yields whether we got it. Never blocks."""
    key = f"lock:{name}"
    token = uuid.uuid4().hex
    mine = bool(cache.add(key, token, timeout=timeout))
    try:
        yield mine
    finally:
        # Only release our own lock: if ours expired and someone else took
        # it, theirs stays.
        if mine and cache.get(key) == token:
            cache.delete(key)


class Locks:
    """Locks taken together (a batch's executions): `mine` names the ones we
    got; each is released on its own when its work is done, the rest at the end."""

    def __init__(self, names: list[str], timeout: float) -> None:
        self.token = secrets.randbits(62) + 1
        self.timeout = timeout
        self.mine: set[str] = set()
        self._redis = _redis_client()
        keys = [_key(name) for name in names]
        if self._redis is not None:
            # One round trip for the batch: SET NX PX of every key.
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, self.token, nx=True, px=max(1, int(timeout * 1000)))
            got = pipe.execute()
        else:
            got = [cache.add(f"lock:{name}", self.token, timeout=timeout) for name in names]
        self.mine = {name for name, ok in zip(names, got, strict=True) if ok}

    def release(self, *names: str) -> None:
        """Release our own locks among `names` (one round trip with Redis)."""
        ours = [name for name in names if name in self.mine]
        if not ours:
            return
        self.mine.difference_update(ours)
        if self._redis is not None:
            self._redis.register_script(_RELEASE)(
                keys=[_key(name) for name in ours], args=[self.token]
            )
            return
        for name in ours:
            if cache.get(f"lock:{name}") == self.token:
                cache.delete(f"lock:{name}")


# Delete each key that still holds our token (one that expired and was taken
# by someone else stays theirs).
_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


@contextlib.contextmanager
def held_many(names: list[str], timeout: float) -> Iterator[Locks]:
    """Try to take every lock of `names` at once; never blocks. Whatever is
    still held at the end is released."""
    locks = Locks(names, timeout)
    try:
        yield locks
    finally:
        locks.release(*locks.mine)


def _key(name: str) -> str:
    # The key Django's cache gives `lock:<name>` (held() and Locks share them).
    return caches["default"].make_and_validate_key(f"lock:{name}")


def _redis_client() -> Any:
    """The shared cache's Redis client, when the cache is Redis."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(write=True)  # type: ignore[attr-defined]
    return None
