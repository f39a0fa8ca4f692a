"""The share of AWS's API quotas the sync may spend.

AWS meters Step Functions calls with a token bucket per account, region and
operation. We keep our own buckets, each holding `SFNUI_API_SHARE` of AWS's
burst and refilled at that share of AWS's rate, shared by every process:
in Redis when `REDIS_URL` is set (one Lua script, atomic), otherwise in the
database (one conditional UPDATE, atomic). A bucket is named by the
identity that spends it (an account's role, or the default identity: see
aws.Target), the region and the operation, as AWS's quotas are.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError
from django.db.models import F, Value
from django.db.models.functions import Greatest, Least

from executions.models import ApiBucket

log = logging.getLogger(__name__)


class BudgetExhausted(Exception):
    """Waiting for a token would take longer than the caller may wait."""

    def __init__(self, operation: str, region: str, wait: float) -> None:
        super().__init__(
            f"API budget for {operation} in {region} is spent; next call possible in {wait:.1f} s"
        )
        self.operation = operation
        self.region = region
        self.wait = wait


@dataclass(frozen=True)
class Bucket:
    key: str
    capacity: float
    rate: float


def bucket(region: str, operation: str, account: str = "default") -> Bucket:
    burst, rate = settings.SFNUI_API_QUOTAS.get(operation, (50.0, 2.0))
    share = settings.SFNUI_API_SHARE
    # Never less than one token, or nothing could ever be sent.
    return Bucket(
        key=f"budget:{account}:{region}:{operation}",
        capacity=max(1.0, burst * share),
        rate=rate * share,
    )


def acquire(
    region: str, operation: str, max_wait: float | None = None, account: str = "default"
) -> float:
    """Take one token, sleeping until there is one. Returns the time waited.

    Raises BudgetExhausted instead of sleeping past `max_wait` seconds.
    """
    b = bucket(region, operation, account)
    limit = settings.SFNUI_API_MAX_WAIT if max_wait is None else max_wait
    waited = 0.0
    while True:
        try:
            wait = _store().take(b)
        except Exception:
            # The store (Redis, or the database) is down. Stopping an
            # execution or looking one up must still work: the call goes out
            # unmetered, and AWS's own throttling remains the backstop.
            _store_down()
            return waited
        if wait <= 0:
            return waited
        if waited + wait > limit:
            raise BudgetExhausted(operation, region, wait)
        time.sleep(wait)
        waited += wait


def drain(region: str, operation: str, pause: float = 1.0, account: str = "default") -> None:
    """AWS throttled us: its bucket is empty (others spend it too), so empty ours
    and pause every process for `pause` seconds before the next call."""
    try:
        _store().drain(bucket(region, operation, account), pause)
    except Exception:
        _store_down()


_last_warning = 0.0


def _store_down() -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > 60:  # once a minute, not once per call
        _last_warning = now
        log.warning("API budget store unavailable; calling AWS unmetered", exc_info=True)


def level(region: str, operation: str, account: str = "default") -> tuple[float, float]:
    """(tokens now, capacity): how much of the budget is left."""
    b = bucket(region, operation, account)
    return _store().level(b), b.capacity


class _RedisStore:
    # KEYS[1]: bucket; ARGV: capacity, rate, mode ("take" | "drain" | "level"), pause.
    # Uses the server's clock so that every process agrees on "now".
    SCRIPT = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local mode = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(v[1])
local stamp = tonumber(v[2])
if tokens == nil then tokens = cap; stamp = now end
tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if mode == 'take' then
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
elseif mode == 'drain' then
  tokens = math.min(tokens, 0) - tonumber(ARGV[4]) * rate
elseif mode == 'level' then
  return tostring(tokens)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
return tostring(wait)
"""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self.script = self.client.register_script(self.SCRIPT)

    def _run(self, b: Bucket, mode: str, pause: float = 0.0) -> float:
        result = self.script(keys=[f"sfnui:{b.key}"], args=[b.capacity, b.rate, mode, pause])
        return float(result)

    def take(self, b: Bucket) -> float:
        return self._run(b, "take")

    def drain(self, b: Bucket, pause: float) -> None:
        self._run(b, "drain", pause)

    def level(self, b: Bucket) -> float:
        return self._run(b, "level")


class _DatabaseStore:
    def take(self, b: Bucket) -> float:
        now = time.time()
        elapsed = Greatest(Value(0.0), Value(now) - F("stamp"))
        refilled = Least(Value(b.capacity), F("tokens") + elapsed * Value(b.rate))
        # Refill and spend in one statement, so two processes never spend the
        # same token.
        taken = ApiBucket.objects.filter(
            key=b.key, tokens__gte=Value(1.0) - elapsed * Value(b.rate)
        ).update(tokens=refilled - Value(1.0), stamp=Greatest(F("stamp"), Value(now)))
        if taken:
            return 0.0
        row = ApiBucket.objects.filter(key=b.key).values_list("tokens", "stamp").first()
        if row is None:
            try:
                ApiBucket.objects.create(key=b.key, tokens=b.capacity - 1, stamp=now)
                return 0.0
            except IntegrityError:
                return self.take(b)
        tokens, stamp = row
        available = min(b.capacity, tokens + max(0.0, now - stamp) * b.rate)
        return max((1.0 - available) / b.rate, 0.001)

    def drain(self, b: Bucket, pause: float) -> None:
        now = time.time()
        updated = ApiBucket.objects.filter(key=b.key).update(
            tokens=Least(F("tokens"), Value(0.0)) - Value(pause * b.rate), stamp=Value(now)
        )
        if not updated:
            ApiBucket.objects.get_or_create(
                key=b.key, defaults={"tokens": -pause * b.rate, "stamp": now}
            )

    def level(self, b: Bucket) -> float:
        row = ApiBucket.objects.filter(key=b.key).values_list("tokens", "stamp").first()
        if row is None:
            return b.capacity
        tokens, stamp = row
        return min(b.capacity, tokens + max(0.0, time.time() - stamp) * b.rate)


@functools.cache
def _store_for(redis_url: str) -> _RedisStore | _DatabaseStore:
    return _RedisStore(redis_url) if redis_url else _DatabaseStore()


def _store() -> _RedisStore | _DatabaseStore:
    return _store_for(settings.REDIS_URL)
