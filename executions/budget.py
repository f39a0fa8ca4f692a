"""The share of AWS's API quotas the sync may spend.

AWS meters Step Functions calls with a token bucket per account, region and
operation. We keep our own buckets, each holding `SFNUI_API_SHARE` of AWS's
burst and refilled at that share of AWS's rate, shared by every process:
in Redis when `REDIS_URL` is set (one Lua script, atomic), otherwise in the
database (one conditional UPDATE, atomic). A bucket is named by the
identity that spends it (an account's role, or the default identity: see
aws.Target), the region and the operation, as AWS's quotas are.

A batch of the sync takes its tokens ahead (`reserved()`): one script call
takes up to as many as the batch expects to spend, and its calls then spend
them without asking the store. Reserved tokens stay counted against the
bucket until they are spent or given back: while they are out, the bucket
refills only up to its capacity minus them, so the calls never exceed what
the bucket would have allowed one by one. A reservation the worker never
gives back (killed) lapses after RESERVATION_TTL seconds, unspent tokens
forfeited; the worker itself spends a reservation only within
RESERVATION_SECONDS of taking it, then takes afresh. Without Redis (the
database store) each call takes its own token, as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
    reservation = _reservation.get()
    if reservation is not None and b.key in reservation.wants:
        return reservation.acquire(b, limit)
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
    b = bucket(region, operation, account)
    reservation = _reservation.get()
    if reservation is not None:
        # What it holds would be spent into AWS's empty bucket: forfeited.
        reservation.forfeit(b)
    try:
        _store().drain(b, pause)
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
    reservation = _reservation.get()
    if reservation is not None and b.key in reservation.wants:
        return reservation.level(b), b.capacity
    return _store().level(b), b.capacity


# --- Reservations: a batch's tokens taken at once -------------------------------

# A reserved token is spent within this long of its taking, or given back and
# taken afresh: the bucket never holds back more than this much of its refill.
RESERVATION_SECONDS = 1.0
# The store forgets (forfeits) a reservation this long after its taking: a
# worker killed while it held one returns nothing, and loses nothing for long.
RESERVATION_TTL = RESERVATION_SECONDS + 5.0


@dataclass
class _Held:
    id: str
    count: int
    until: float  # time.monotonic() after which it is not spent any more


@dataclass
class Reservation:
    """The tokens a batch holds, per bucket, and how many more calls it expects."""

    store: _RedisStore
    region: str
    wants: dict[str, int]
    buckets: dict[str, Bucket]
    held: dict[str, _Held] = field(default_factory=dict)
    # Buckets found empty (no token), and until when to believe it.
    empty_until: dict[str, float] = field(default_factory=dict)

    def _spend(self, b: Bucket) -> bool:
        h = self.held.get(b.key)
        if h is None or h.count < 1 or time.monotonic() >= h.until:
            return False
        h.count -= 1
        self.wants[b.key] = max(0, self.wants[b.key] - 1)
        return True

    def _refill(self, b: Bucket) -> float:
        """Give back what is held, take up to what is still wanted; returns the
        wait for a token when none was granted."""
        old = self.held.pop(b.key, None)
        started = time.monotonic()
        new_id = uuid.uuid4().hex
        granted, wait = self.store.reserve(b, max(1, self.wants[b.key]), new_id, old)
        if granted:
            self.held[b.key] = _Held(new_id, granted, started + RESERVATION_SECONDS)
            self.empty_until.pop(b.key, None)
        else:
            self.empty_until[b.key] = started + min(wait, RESERVATION_SECONDS)
        return wait

    def acquire(self, b: Bucket, limit: float) -> float:
        waited = 0.0
        while not self._spend(b):
            try:
                wait = self._refill(b)
            except Exception:
                _store_down()  # as acquire(): the call goes out unmetered
                return waited
            if b.key in self.held:
                continue
            if waited + wait > limit:
                raise BudgetExhausted(b.key.rsplit(":", 1)[-1], self.region, wait)
            time.sleep(wait)
            waited += wait
        return waited

    def level(self, b: Bucket) -> float:
        h = self.held.get(b.key)
        if h is not None and h.count >= 1 and time.monotonic() < h.until:
            return float(h.count)
        if time.monotonic() < self.empty_until.get(b.key, 0.0):
            return 0.0
        self._refill(b)
        h = self.held.get(b.key)
        return float(h.count) if h is not None else 0.0

    def forfeit(self, b: Bucket) -> None:
        h = self.held.get(b.key)
        if h is not None:
            h.count = 0

    def release(self) -> None:
        for key, h in list(self.held.items()):
            self.store.release(self.buckets[key], h)
        self.held.clear()


_reservation: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "sfnui_budget_reservation", default=None
)


@contextlib.contextmanager
def reserved(
    wants: dict[str, int], region: str, account: str = "default"
) -> Iterator[Reservation | None]:
    """Calls inside the block spend tokens taken ahead, up to `wants`
    (operation -> calls expected) at a time; what is left is given back at the
    end. Only with Redis (atomic scripts); else each call takes its own."""
    store = _store()
    if not isinstance(store, _RedisStore) or _reservation.get() is not None:
        yield None
        return
    buckets = {b.key: b for b in (bucket(region, op, account) for op in wants)}
    reservation = Reservation(
        store=store,
        region=region,
        wants={bucket(region, op, account).key: n for op, n in wants.items()},
        buckets=buckets,
    )
    token = _reservation.set(reservation)
    try:
        yield reservation
    finally:
        _reservation.reset(token)
        try:
            reservation.release()
        except Exception:
            _store_down()  # what it held lapses with RESERVATION_TTL


class _RedisStore:
    # KEYS[1]: bucket; ARGV: capacity, rate, mode ("take" | "drain" | "level" |
    # "reserve" | "release"), then pause (drain) or count (reserve: wanted;
    # release: unspent), reservation id, its TTL, the id given back with it
    # and its unspent count (reserve).
    # Uses the server's clock so that every process agrees on "now".
    # Reservations are fields "r:<id>" = "<count> <expiry>"; while they last,
    # the bucket refills only to its capacity less what they hold.
    SCRIPT = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local mode = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HGETALL', KEYS[1])
local tokens, stamp, held, found = nil, nil, 0, {}
for i = 1, #v, 2 do
  local f, x = v[i], v[i + 1]
  if f == 'tokens' then tokens = tonumber(x)
  elseif f == 'stamp' then stamp = tonumber(x)
  else
    local n, expiry = string.match(x, '(%S+) (%S+)')
    if tonumber(expiry) <= now then
      redis.call('HDEL', KEYS[1], f)
    else
      held = held + tonumber(n)
      found[f] = tonumber(n)
    end
  end
end
if tokens == nil then tokens = cap; stamp = now end
local function give_back(id, unspent)
  local n = found['r:' .. id]
  if n == nil then return end
  redis.call('HDEL', KEYS[1], 'r:' .. id)
  held = held - n
  tokens = tokens + math.max(0, math.min(n, unspent))
end
if mode == 'release' then give_back(ARGV[5], tonumber(ARGV[4])) end
if mode == 'reserve' and ARGV[7] ~= '' then give_back(ARGV[7], tonumber(ARGV[8])) end
tokens = math.min(cap - held, tokens + math.max(0, now - (stamp or now)) * rate)
local wait = 0
local granted = 0
if mode == 'take' then
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
elseif mode == 'reserve' then
  if tokens >= 1 then
    granted = math.min(tonumber(ARGV[4]), math.floor(tokens))
    tokens = tokens - granted
    redis.call('HSET', KEYS[1], 'r:' .. ARGV[5],
      tostring(granted) .. ' ' .. tostring(now + tonumber(ARGV[6])))
  else
    wait = (1 - tokens) / rate
  end
elseif mode == 'drain' then
  tokens = math.min(tokens, 0) - tonumber(ARGV[4]) * rate
elseif mode == 'level' then
  return tostring(tokens)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
if mode == 'reserve' then return tostring(granted) .. ' ' .. tostring(wait) end
return tostring(wait)
"""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self.script = self.client.register_script(self.SCRIPT)

    def _run(self, b: Bucket, mode: str, *args: Any) -> str:
        result = self.script(keys=[f"sfnui:{b.key}"], args=[b.capacity, b.rate, mode, *args])
        return result.decode() if isinstance(result, bytes) else str(result)

    def take(self, b: Bucket) -> float:
        return float(self._run(b, "take"))

    def drain(self, b: Bucket, pause: float) -> None:
        self._run(b, "drain", pause)

    def level(self, b: Bucket) -> float:
        return float(self._run(b, "level"))

    def reserve(
        self, b: Bucket, count: int, reservation_id: str, old: _Held | None = None
    ) -> tuple[int, float]:
        """Up to `count` tokens held as `reservation_id` (giving back `old`'s
        unspent ones first); (tokens granted, wait for one when none was)."""
        granted, wait = self._run(
            b,
            "reserve",
            count,
            reservation_id,
            RESERVATION_TTL,
            old.id if old else "",
            old.count if old else 0,
        ).split()
        return int(float(granted)), float(wait)

    def release(self, b: Bucket, held: _Held) -> None:
        self._run(b, "release", held.count, held.id)


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
