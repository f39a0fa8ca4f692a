"""/sync/: how healthy the cache is, for the person on call: per identity and
region the discovery, the listing plan and the freshness it gives, and the API
budget spent; the events consumer; the backlog and what fails."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Length, Substr
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from executions import aws, budget
from executions.redaction import safe_error
from executions.sync import consumer, freshness
from executions.sync import plan as plan_module
from executions.sync.plan import PlanSummary

from ..arns import NotAnArn, parse_execution_arn
from ..models import EventQueue, Execution, StateMachine, SyncRun, UnreadableEvent

WINDOWS = (("5 min", dt.timedelta(minutes=5)), ("1 h", dt.timedelta(hours=1)))
FAILING_RUNS = 50
SYNC_ERRORS = 20
MACHINES = 1000
# Unreadable messages shown (the newest), and how much of each body.
UNREADABLE_SHOWN = 20
UNREADABLE_EXCERPT = 300
# Counting them stops here ("10,000+").
UNREADABLE_CAP = 10_000
# Reconciliation: what the events missed over this window.
MISSED_WINDOW = dt.timedelta(hours=1)
EVENT_OUTCOMES = ("applied", "duplicate", "stale", "ignored", "unreadable")


@dataclass
class PlaceHealth:
    """One identity and region: its discovery and its listing plan."""

    key: str  # aws.Target.key; "" when no configured identity reads it
    region: str
    label: str
    # Read on the schedule (aws.scheduled()); else only executions looked up by ARN.
    scheduled: bool
    state_machines: int = 0
    last_run: SyncRun | None = None
    last_ok_at: dt.datetime | None = None
    listing: PlanSummary | None = None


@dataclass
class Usage:
    operation: str
    calls: list[int]  # per window in WINDOWS
    budgets: list[float]  # per window: our share of AWS's rate times the window
    level: float | None = None  # tokens in our bucket now; None when unknown
    capacity: float = 0.0

    @property
    def per_window(self) -> list[tuple[int, float, float | None]]:
        """(calls, budget, share of the budget spent) per window."""
        return [
            (calls, allowed, calls / allowed if allowed else None)
            for calls, allowed in zip(self.calls, self.budgets, strict=True)
        ]


@dataclass
class PlaceUsage:
    key: str
    region: str
    label: str
    operations: list[Usage] = field(default_factory=list)


@dataclass
class QueueHealth:
    url: str
    # None: configured, but no consumer has ever read it.
    row: EventQueue | None
    counts: dict[str, int]
    heartbeat_age: float | None
    # Not heard from within SFNUI_EVENTS_HEARTBEAT.
    silent: bool

    @property
    def outcomes(self) -> list[tuple[str, int]]:
        return [(name, self.counts.get(name, 0)) for name in EVENT_OUTCOMES]


@dataclass
class RecentRuns:
    """One pass over the last hour of sync runs."""

    # (identity key, region) -> per window: calls per operation
    spent: dict[tuple[str, str], list[Counter[str]]]
    outcomes: Counter[str]
    missed: int = 0
    missed_example: str = ""
    missed_at: dt.datetime | None = None


@require_GET
def sync_health(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    overall = freshness.current()
    events = _events(now)
    recent = _recent_runs(now)
    place_list = _places(now, flowing=events["flowing"])
    context: dict[str, Any] = {
        "overall": overall,
        # The bar at the top shows the same: read it once.
        "sync_status": overall,
        "places": place_list,
        "several_accounts": len({p.key for p in place_list}) > 1,
        "machines": _machines(),
        "failing_runs": list(
            SyncRun.objects.filter(ok=False)
            .select_related("state_machine")
            .order_by("-started_at")[:FAILING_RUNS]
        ),
        "backlog": Execution.objects.filter(sync_due_at__isnull=False).aggregate(
            due=Count("id", filter=Q(sync_due_at__lte=now)),
            scheduled=Count("id"),
            oldest_due=Min("sync_due_at", filter=Q(sync_due_at__lte=now)),
        ),
        "now": now,
        "stale_after": settings.SFNUI_STALE_AFTER,
        "api_share": settings.SFNUI_API_SHARE,
        "tick": settings.SFNUI_SYNC_TICK,
        "listing_share": plan_module.LISTING_SHARE,
        "windows": [label for label, _ in WINDOWS],
        "events": events,
        "missed": {
            "count": recent.missed,
            "example": recent.missed_example,
            "at": recent.missed_at,
            "linkable": _is_execution_arn(recent.missed_example),
        },
    }
    context.update(_sync_errors())
    usage, level_error = _usage(place_list, recent)
    context.update(usage=usage, runs_last_hour=recent.outcomes, level_error=level_error)
    return render(request, "executions/sync.html", context)


def _run_key(account: str) -> str:
    # Runs from before identities were recorded were all the default
    # identity's; so are, as a rule, batches of executions outside every
    # scheduled region (recorded without one).
    return account or aws.DEFAULT


def _label(key: str) -> str:
    if not key:
        return "no configured identity"
    try:
        return aws.target(key).label
    except aws.NotConfigured:
        return f"account {key} (no longer configured)" if key != aws.DEFAULT else key


def _places(now: dt.datetime, *, flowing: bool) -> list[PlaceHealth]:
    """Every identity and region the sync reads, then any other the cache holds
    state machines of (executions looked up by ARN elsewhere): the last
    discovery of each, and the listing plan of the scheduled ones."""
    sizes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    # One query for every place: the state machines per account and region,
    # each mapped to the identity that reads it (as plan.machines() does).
    for row in (
        StateMachine.objects.order_by()
        .values("account", "region")
        .annotate(
            live=Count("pk", filter=~Q(status="DELETED")),
            busy=Count("pk", filter=~Q(status="DELETED") & Q(busy_until__gt=now)),
        )
    ):
        place = (aws.key_for(row["account"], row["region"]), row["region"])
        sizes[place].update(live=row["live"], busy=row["busy"])
    discoveries: dict[tuple[str, str], dict[str, Any]] = {}
    for row in (
        SyncRun.objects.filter(kind=SyncRun.Kind.DISCOVER)
        .order_by()
        .values("account", "region")
        .annotate(last_id=Max("id"), last_ok=Max("finished_at", filter=Q(ok=True)))
    ):
        # Runs recorded without an identity count as the default one's (_run_key).
        place = (_run_key(row["account"]), row["region"])
        seen = discoveries.setdefault(place, {"last_id": 0, "last_ok": None})
        seen["last_id"] = max(seen["last_id"], row["last_id"])
        if row["last_ok"] and (seen["last_ok"] is None or row["last_ok"] > seen["last_ok"]):
            seen["last_ok"] = row["last_ok"]
    last_runs = SyncRun.objects.in_bulk([row["last_id"] for row in discoveries.values()])
    scheduled = [(t.key, region) for t, region in aws.scheduled()]
    others = sorted(set(sizes) - set(scheduled))
    out = []
    for key, region in scheduled + others:
        size = sizes.get((key, region), Counter())
        found = discoveries.get((key, region))
        health = PlaceHealth(
            key=key,
            region=region,
            label=_label(key),
            scheduled=(key, region) in scheduled,
            state_machines=size["live"],
            last_run=last_runs.get(found["last_id"]) if found else None,
            last_ok_at=found["last_ok"] if found else None,
        )
        if health.scheduled:
            health.listing = PlanSummary(
                plan_module.compute(
                    key,
                    region,
                    busy=size["busy"],
                    idle=size["live"] - size["busy"],
                    rate=budget.bucket(region, "ListExecutions", key).rate,
                    events=flowing,
                )
            )
        out.append(health)
    return out


def _machines() -> list[StateMachine]:
    machines = list(
        StateMachine.objects.only(
            "arn",
            "name",
            "account",
            "region",
            "status",
            "listed_at",
            "list_due_at",
            "list_interval",
            "list_error",
            "busy_until",
        ).order_by("name")[:MACHINES]
    )
    # Failing first, then the ones listed longest ago: what needs a look.
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    now = timezone.now()
    for sm in machines:
        sm.busy = sm.busy_until is not None and sm.busy_until > now  # type: ignore[attr-defined]
    machines.sort(
        key=lambda sm: (
            not sm.list_error,
            sm.status == "DELETED",
            sm.listed_at or epoch,
        )
    )
    return machines


def _sync_errors() -> dict[str, Any]:
    # An execution with a sync error is always due again (sync._failed and
    # _reschedule set both), so the partial index on sync_due_at serves this.
    failing = Execution.objects.filter(sync_due_at__isnull=False).exclude(sync_error="")
    return {
        "sync_error_count": failing.count(),
        "sync_errors": list(
            failing.select_related("state_machine")
            .only(
                "arn",
                "name",
                "status",
                "sync_error",
                "sync_failures",
                "sync_due_at",
                "synced_at",
                "state_machine__name",
                "state_machine__arn",
            )
            .order_by("-sync_failures", "sync_due_at")[:SYNC_ERRORS]
        ),
    }


def _events(now: dt.datetime) -> dict[str, Any]:
    """The events consumer, per queue; nothing (and no query) when events are off."""
    urls: list[str] = list(settings.SFNUI_EVENTS_QUEUE_URL)
    if not urls:
        return {"configured": False, "flowing": False, "queues": []}
    heartbeat = settings.SFNUI_EVENTS_HEARTBEAT
    rows = {q.url: q for q in EventQueue.objects.filter(url__in=urls)}
    counts = consumer.applied_recently(5)
    queues = []
    for url in urls:
        row = rows.get(url)
        age = (
            (now - row.heartbeat_at).total_seconds()
            if row is not None and row.heartbeat_at is not None
            else None
        )
        queues.append(
            QueueHealth(
                url=url,
                row=row,
                counts=counts.get(row.pk, {}) if row is not None else {},
                heartbeat_age=age,
                silent=age is None or age > heartbeat,
            )
        )
    kept = UnreadableEvent.objects.all()
    unreadable = list(
        kept.select_related("queue")
        .defer("body")
        .annotate(excerpt=Substr("body", 1, UNREADABLE_EXCERPT), body_length=Length("body"))
        .order_by("-received_at")[:UNREADABLE_SHOWN]
    )
    total = (
        kept.values("pk")[: UNREADABLE_CAP + 1].count()
        if len(unreadable) == UNREADABLE_SHOWN
        else len(unreadable)
    )
    return {
        "configured": True,
        # As plan.events_flowing(): one consumer heard from recently is enough
        # for the sync to treat listings as reconciliation.
        "flowing": any(not q.silent for q in queues),
        "all_silent": all(q.silent for q in queues),
        "heartbeat": heartbeat,
        "reconcile_interval": settings.SFNUI_RECONCILE_INTERVAL,
        "queues": queues,
        "unreadable": unreadable,
        "excerpt_limit": UNREADABLE_EXCERPT,
        "unreadable_total": min(total, UNREADABLE_CAP),
        "unreadable_exact": total <= UNREADABLE_CAP,
    }


def _is_execution_arn(arn: str) -> bool:
    try:
        parse_execution_arn(arn)
    except NotAnArn:
        return False
    return True


def _recent_runs(now: dt.datetime) -> RecentRuns:
    """The sync runs of the last hour, in one pass: API calls per identity,
    region and window, outcomes, and what reconciliation found the events missed."""
    longest = max(max(window for _, window in WINDOWS), MISSED_WINDOW)
    found = RecentRuns(spent=defaultdict(lambda: [Counter() for _ in WINDOWS]), outcomes=Counter())
    recent = (
        SyncRun.objects.filter(started_at__gte=now - longest)
        .order_by()
        .values_list(
            "kind",
            "account",
            "region",
            "started_at",
            "api_calls",
            "ok",
            "throttled",
            "missed_events",
            "missed_example",
        )
    )
    for kind, account, region, started_at, calls, ok, throttled, missed, example in recent.iterator(
        chunk_size=2000
    ):
        if started_at >= now - dt.timedelta(hours=1):
            found.outcomes["throttled" if throttled else "ok" if ok else "failed"] += 1
        if kind == SyncRun.Kind.LIST and missed and started_at >= now - MISSED_WINDOW:
            found.missed += missed
            if example and (found.missed_at is None or started_at > found.missed_at):
                found.missed_example, found.missed_at = example, started_at
        if not isinstance(calls, dict):
            continue
        place = (_run_key(account), region)
        for i, (_, window) in enumerate(WINDOWS):
            if started_at >= now - window:
                found.spent[place][i].update(
                    {str(op): int(n) for op, n in calls.items() if isinstance(n, int)}
                )
    return found


def _usage(place_list: list[PlaceHealth], recent: RecentRuns) -> tuple[list[PlaceUsage], str]:
    """API calls the sync spent per identity, region and operation in each
    window, against that identity's budget there, and what is left in the
    bucket now."""
    spent = recent.spent
    wanted = [(p.key, p.region) for p in place_list if p.scheduled]
    wanted += sorted(set(spent) - set(wanted))
    configured = {t.key for t in aws.targets()}
    level_error = ""
    out = []
    for key, region in wanted:
        windows = spent.get((key, region)) or [Counter() for _ in WINDOWS]
        operations = sorted(set(settings.SFNUI_API_QUOTAS) | {op for c in windows for op in c})
        usage = PlaceUsage(key, region, _label(key))
        for op in operations:
            b = budget.bucket(region, op, key)
            row = Usage(
                operation=op,
                calls=[windows[i][op] for i in range(len(WINDOWS))],
                budgets=[b.rate * window.total_seconds() for _, window in WINDOWS],
                capacity=b.capacity,
            )
            # Only the buckets of configured identities: the others (an
            # identity since removed) are spent by nobody now, and reading
            # them would cost a query per historical identity.
            if not level_error and key in configured:
                try:
                    row.level, row.capacity = budget.level(region, op, key)
                except Exception as exc:
                    # Redis (or the database) is down: one failure is enough,
                    # do not wait on each bucket.
                    level_error = safe_error(exc)
            usage.operations.append(row)
        out.append(usage)
    return out, level_error
