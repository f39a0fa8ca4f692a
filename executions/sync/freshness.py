"""How fresh the cache is, for the bar on every page: "synced 12 s ago", or a
warning when the sync is failing, throttled, behind or stale, when the events
consumer stopped, or when this process cannot reach the broker and shared
cache (Redis)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from executions import probes
from executions.models import EventQueue, Execution, SyncRun

log = logging.getLogger(__name__)

# Look this far back for runs that failed since the last good one.
_WINDOW = dt.timedelta(hours=6)
# A run throttled this recently means AWS is throttling now, even if other
# runs went through since.
THROTTLED_RECENTLY = dt.timedelta(seconds=60)
# Counting the executions waiting for a sync stops here ("10000+").
BACKLOG_CAP = 10_000


@dataclass(frozen=True)
class Services:
    """Whether this process reaches the broker and the shared cache."""

    down: tuple[str, ...] = ()
    # When this process first found them down (this outage).
    since: dt.datetime | None = None
    error: str = ""

    @property
    def names(self) -> str:
        return " and ".join(self.down)


@dataclass(frozen=True)
class SyncStatus:
    last_ok_at: dt.datetime | None
    stale: bool
    failing: bool
    throttled: bool
    unreachable_since: dt.datetime | None
    last_error: str
    # Executions whose news (new, ended, redriven) is not read from AWS yet.
    backlog: int = 0
    services: Services = field(default_factory=Services)
    # With events configured (SFNUI_EVENTS_QUEUE_URL): when the consumer of
    # each queue was last heard from (None: never). Empty when events are off.
    events_heard: tuple[dt.datetime | None, ...] = ()

    @property
    def events_silent(self) -> int:
        """Queues whose consumer was not heard from within SFNUI_EVENTS_HEARTBEAT."""
        since = timezone.now() - dt.timedelta(seconds=settings.SFNUI_EVENTS_HEARTBEAT)
        return sum(1 for heard in self.events_heard if heard is None or heard < since)

    @property
    def events_stopped(self) -> bool:
        """Events are configured and no consumer is heard from: the sync polls as
        if they were off (plan.events_flowing)."""
        return bool(self.events_heard) and self.events_silent == len(self.events_heard)

    @property
    def events_partly_stopped(self) -> bool:
        """Some queues are read, some not: the sync counts on events everywhere,
        so changes that only the silent ones carry wait for reconciliation."""
        return 0 < self.events_silent < len(self.events_heard)

    @property
    def events_last_heard(self) -> dt.datetime | None:
        return max((heard for heard in self.events_heard if heard is not None), default=None)

    @property
    def reconcile_seconds(self) -> float:
        return float(settings.SFNUI_RECONCILE_INTERVAL)

    @property
    def age_seconds(self) -> float | None:
        if self.last_ok_at is None:
            return None
        return (timezone.now() - self.last_ok_at).total_seconds()

    @property
    def behind(self) -> bool:
        """Throttled with news waiting: what the pages show may be out of date."""
        return self.throttled and self.backlog > 0

    @property
    def backlog_text(self) -> str:
        return f"{BACKLOG_CAP}+" if self.backlog > BACKLOG_CAP else str(self.backlog)

    @property
    def warning(self) -> bool:
        return (
            self.stale
            or self.failing
            or self.behind
            or self.unreachable_since is not None
            or bool(self.services.down)
            or self.events_silent > 0
        )


def current() -> SyncStatus:
    now = timezone.now()
    last_ok = (
        # A run that made no call (its executions were all being synced by
        # another worker) says nothing about AWS.
        SyncRun.objects.filter(ok=True, finished_at__isnull=False)
        .exclude(api_calls={})
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    since = max(last_ok, now - _WINDOW) if last_ok else now - _WINDOW
    events_heard = _events_heard() if settings.SFNUI_EVENTS_QUEUE_URL else ()
    # With events flowing, a queue read is a sync: an idle account's listings
    # are rare (reconciliation), and its data is as fresh as the last receive.
    # (Failing runs still count from the last good run: see `since`.)
    last_ok = max((t for t in (last_ok, *events_heard) if t is not None), default=None)
    # The runs that failed since the last good one, and any throttled (a
    # throttled run is a failed one) in the last minute, in one query.
    recent = list(
        SyncRun.objects.filter(ok=False, started_at__gte=min(since, now - THROTTLED_RECENTLY))
        .order_by("started_at")
        .values_list("started_at", "error", "throttled")[:500]
    )
    failed = [run for run in recent if run[0] >= since]
    unreachable = [started for started, error, _ in failed if "AWS unreachable" in error]
    stale = last_ok is None or (now - last_ok).total_seconds() > settings.SFNUI_STALE_AFTER
    throttled = any(throttled for _, _, throttled in recent)
    return SyncStatus(
        last_ok_at=last_ok,
        stale=stale,
        failing=any(not throttled for _, _, throttled in failed),
        throttled=throttled,
        unreachable_since=unreachable[0] if unreachable else None,
        last_error=failed[-1][1][:500] if failed else "",
        # One more query, only while AWS throttles: how much is waiting.
        backlog=_backlog() if throttled else 0,
        services=services(),
        # One more query, only with events configured.
        events_heard=events_heard,
    )


def _events_heard() -> tuple[dt.datetime | None, ...]:
    urls = list(settings.SFNUI_EVENTS_QUEUE_URL)
    heard = dict(EventQueue.objects.filter(url__in=urls).values_list("url", "heartbeat_at"))
    return tuple(heard.get(url) for url in urls)


# Every page shows the bar: its answer is shared by all processes for this
# long (the age it shows is still computed at each render).
SHARED_TTL = 2.0
_SHARED_KEY = "sync-status"


def shared() -> SyncStatus:
    """current(), reused across requests and processes for SHARED_TTL seconds
    through Redis (no query at all). Without Redis the cache is a database
    table, which would cost as much as the two queries it saves. The broker
    check stays this process's own."""
    if not settings.REDIS_URL:
        return current()
    try:
        hit = cache.get(_SHARED_KEY)
    except Exception:  # the shared cache is down: the bar says so (services)
        hit = None
    if isinstance(hit, SyncStatus):
        return replace(hit, services=services())
    value = current()
    try:
        cache.set(_SHARED_KEY, replace(value, services=Services()), timeout=SHARED_TTL)
    except Exception:
        log.debug("shared cache unavailable", exc_info=True)
    return value


def _backlog() -> int:
    # Served by the partial index on news waiting to be read (exec_describe_due_idx).
    waiting = Execution.objects.filter(sync_due_at__isnull=False, needs_describe=True)
    return waiting.values("pk")[: BACKLOG_CAP + 1].count()


# --- The broker and the shared cache ------------------------------------------------

# A check is reused by this process for this long: pages do not pay for it
# each time, and a warning appears within seconds of an outage.
SERVICES_TTL = 5.0

_services_lock = threading.Lock()
_services_cache: tuple[float, Services] | None = None


def services() -> Services:
    """Whether the broker and the shared cache answer, checked at most every
    SERVICES_TTL seconds per process, each check time-bounded (probes.py)."""
    global _services_cache
    cached = _services_cache
    if cached is not None and time.monotonic() - cached[0] < SERVICES_TTL:
        return cached[1]
    down, error = probes.services_down()
    with _services_lock:
        previous = _services_cache[1] if _services_cache else Services()
        if down:
            since = previous.since if previous.down else timezone.now()
            result = Services(down=tuple(down), since=since, error=error)
            if not previous.down:
                log.warning("%s unreachable: %s", " and ".join(down), error)
        else:
            result = Services()
        _services_cache = (time.monotonic(), result)
    return result


def service_warnings() -> list[str]:
    """What a script reading the JSON API should know about this server (the
    pages show the same in their bar)."""
    down = services()
    if not down.down:
        return []
    since = down.since.isoformat() if down.since else "now"
    return [
        f"The {down.names} cannot be reached (since {since}): the data is what the "
        "database holds, and the sync waits until it is back."
    ]


def forget_services() -> None:
    """Check again at the next page (tests, and after a configuration change)."""
    global _services_cache
    _services_cache = None
