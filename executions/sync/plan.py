"""How often each state machine is listed: where the activity is, within the budget.

ListExecutions is the one call that finds new executions and ends, and AWS's
quota for it is per account and region, shared by every state machine there
(us-east-1: 200 burst, 5 a second; the sync spends SFNUI_API_SHARE of it).
So the interval of a listing is not a constant but a share of that budget:

- a *busy* state machine (a running execution, or a start within
  SFNUI_LIST_BUSY_WINDOW) is listed every SFNUI_LIST_INTERVAL seconds, an
  *idle* one every SFNUI_LIST_IDLE_INTERVAL;
- when the account and region have more state machines than the budget can
  list that often, idle ones are stretched first, then busy ones, so that
  the listings stay within LISTING_SHARE of the budget (the rest pays for
  the extra pages: the running set, the closed statuses, lookups);
- with events flowing (an SQS consumer heard from within
  SFNUI_EVENTS_HEARTBEAT), every listing is reconciliation, at most every
  SFNUI_RECONCILE_INTERVAL: events bring the news, listings catch what
  EventBridge dropped, and the budget goes to histories.

/sync/ shows each plan: the intervals, and the freshness they give.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from executions import aws, budget
from executions.models import EventQueue, StateMachine

# Share of the ListExecutions budget that the planned listings may spend.
LISTING_SHARE = 0.8
# Calls a listing costs on average: a busy state machine's listing also reads
# the running set or the closed statuses now and then; an idle one is one call.
BUSY_COST = 1.5
IDLE_COST = 1.0
# When busy state machines alone would spend the budget, idle ones keep this
# share of it, so that a new execution of an idle one is still found.
IDLE_FLOOR = 0.2
# A plan is recomputed at most this often per process (one query each).
PLAN_TTL = 5.0


@dataclass(frozen=True)
class ListingPlan:
    account: str  # aws.Target.key
    region: str
    busy: int
    idle: int
    # ListExecutions calls a second that our share of the quota allows.
    rate: float
    busy_interval: float
    idle_interval: float
    events: bool

    @property
    def calls_per_second(self) -> float:
        """What the plan spends, on average."""
        busy = self.busy * BUSY_COST / self.busy_interval if self.busy else 0.0
        idle = self.idle * IDLE_COST / self.idle_interval if self.idle else 0.0
        return busy + idle

    @property
    def stretched(self) -> bool:
        """The budget cannot pay for the configured intervals at this size."""
        base_busy, base_idle = base_intervals(self.events)
        return self.busy_interval > base_busy + 1e-6 or self.idle_interval > base_idle + 1e-6

    def interval(self, busy: bool) -> float:
        return self.busy_interval if busy else self.idle_interval

    def freshness(self, busy: bool) -> float:
        """Seconds within which a change shows, by polling alone: a whole interval
        in the worst case, plus the tick that hands the listing out."""
        return self.interval(busy) + settings.SFNUI_SYNC_TICK


def base_intervals(events: bool) -> tuple[float, float]:
    if events:
        reconcile = settings.SFNUI_RECONCILE_INTERVAL
        return reconcile, reconcile
    return settings.SFNUI_LIST_INTERVAL, max(
        settings.SFNUI_LIST_INTERVAL, settings.SFNUI_LIST_IDLE_INTERVAL
    )


def compute(
    account: str, region: str, busy: int, idle: int, rate: float, events: bool
) -> ListingPlan:
    """The intervals that fit `busy` and `idle` state machines into `rate` calls a second."""
    base_busy, base_idle = base_intervals(events)
    available = max(rate * LISTING_SHARE, 1e-6)
    busy_interval, idle_interval = base_busy, base_idle
    busy_demand = busy * BUSY_COST / base_busy
    idle_demand = idle * IDLE_COST / base_idle
    if busy_demand + idle_demand > available:
        left_for_idle = available - busy_demand
        if idle and left_for_idle >= available * IDLE_FLOOR:
            # Idle ones first: they wait longer, busy ones keep their interval.
            idle_interval = idle * IDLE_COST / left_for_idle
        else:
            # Busy ones alone are more than the budget: both stretch.
            if idle:
                idle_interval = max(base_idle, idle * IDLE_COST / (available * IDLE_FLOOR))
                available *= 1 - IDLE_FLOOR
            busy_interval = max(base_busy, busy * BUSY_COST / available)
    return ListingPlan(
        account=account,
        region=region,
        busy=busy,
        idle=idle,
        rate=rate,
        busy_interval=busy_interval,
        idle_interval=idle_interval,
        events=events,
    )


_cache: dict[tuple[str, str], tuple[float, ListingPlan]] = {}
_cache_lock = threading.Lock()


def plan(account: str, region: str) -> ListingPlan:
    """The current plan of one identity and region (recomputed every PLAN_TTL s)."""
    key = (account, region)
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < PLAN_TTL:
        return cached[1]
    counts = machines(account, region).aggregate(
        busy=Count("pk", filter=Q(busy_until__gt=timezone.now())), total=Count("pk")
    )
    b = budget.bucket(region, "ListExecutions", account)
    result = compute(
        account,
        region,
        busy=counts["busy"],
        idle=counts["total"] - counts["busy"],
        rate=b.rate,
        events=events_flowing(),
    )
    with _cache_lock:
        _cache[key] = (time.monotonic(), result)
    return result


def forget() -> None:
    """Compute every plan afresh (tests, and after a change of settings)."""
    with _cache_lock:
        _cache.clear()


def machines(account: str, region: str, deleted: bool = False) -> QuerySet[StateMachine]:
    """The state machines that `account` (an aws.Target.key) reads in `region`
    (the deleted ones too if asked: their executions stay in the cache)."""
    listed = StateMachine.objects.filter(region=region)
    if not deleted:
        listed = listed.exclude(status="DELETED")
    if account != aws.DEFAULT:
        return listed.filter(account=account)
    others = [t.key for t in aws.targets() if t.role_arn]
    return listed.exclude(account__in=others) if others else listed


def events_flowing(now: dt.datetime | None = None) -> bool:
    """Events are configured and a consumer was heard from recently."""
    if not settings.SFNUI_EVENTS_QUEUE_URL:
        return False
    now = now or timezone.now()
    since = now - dt.timedelta(seconds=settings.SFNUI_EVENTS_HEARTBEAT)
    return EventQueue.objects.filter(
        url__in=settings.SFNUI_EVENTS_QUEUE_URL, heartbeat_at__gte=since
    ).exists()


def busy_until(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) + dt.timedelta(seconds=settings.SFNUI_LIST_BUSY_WINDOW)


@dataclass(frozen=True)
class PlanSummary:
    """A listing plan (above) with what /sync/ and the state machine page say
    about it: how often, at what cost, and the freshness that follows."""

    plan: ListingPlan

    @property
    def fresh_busy(self) -> float:
        return self.plan.freshness(True)

    @property
    def fresh_idle(self) -> float:
        return self.plan.freshness(False)

    @property
    def base_busy(self) -> float:
        """The configured interval of a busy one (before the budget stretched it)."""
        return base_intervals(self.plan.events)[0]

    @property
    def base_idle(self) -> float:
        return base_intervals(self.plan.events)[1]

    @property
    def busy_stretched(self) -> bool:
        return self.plan.busy_interval > self.base_busy + 1e-6

    @property
    def idle_stretched(self) -> bool:
        return self.plan.idle_interval > self.base_idle + 1e-6

    @property
    def listing_share(self) -> float:
        return LISTING_SHARE

    @property
    def listing_budget(self) -> float:
        """ListExecutions calls a second the planned listings may spend."""
        return self.plan.rate * LISTING_SHARE

    @property
    def share(self) -> float | None:
        """Share of our ListExecutions budget the plan spends."""
        return self.plan.calls_per_second / self.plan.rate if self.plan.rate else None
