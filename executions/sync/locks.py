"""Locks in the shared cache (Redis, or the database cache without it).

A lock expires by itself, so a worker killed while holding one delays the
work by at most `timeout` seconds and never blocks it for good.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from django.core.cache import cache


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
