"""Failures, grouped: every failed, timed-out and aborted execution that ended
in a window, by state machine, the state it failed in and its error.

For each group: how many, the first and last seen, counts per time bucket
(the small chart), its share of the state machine's runs, and when it last
failed before the window (never: it is new). The newest incident first.

A fixed number of statements whatever the size of the cache: one aggregate
over exec_failure_stop_idx (the window's failures, per group and bucket; on
PostgreSQL from the index alone), one count of each state machine's runs
(exec_sm_start_idx), the state machines shown, and one statement for the
last failure of each group shown before the window (a seek of
exec_failure_group_idx per group).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from django.db.models import Count, Max, Min, Q, QuerySet, Subquery, TextField, Value
from django.db.models.functions import Coalesce, Trunc
from django.urls import reverse
from django.utils import timezone

from executions.links import keep_tz
from executions.models import FAILURE_STATUSES, Execution, StateMachine
from executions.times import iso_z

# The windows a person picks from, by their name in the URL.
WINDOWS: dict[str, dt.timedelta] = {
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
}
DEFAULT_WINDOW = "24h"
# A range (from, to) spans at most this much.
MAX_RANGE = dt.timedelta(days=31)
# Groups shown, newest incident first; the page says how many more there are.
MAX_GROUPS = 100
# The chart's drawing box; the SVG scales it.
CHART_WIDTH = 120.0
CHART_HEIGHT = 24.0


@dataclass(frozen=True)
class Buckets:
    """The chart's time buckets: `size` long, the first one starting at `start`."""

    start: dt.datetime
    size: dt.timedelta
    count: int
    # What the database truncates stop dates to ("minute", "hour", "day").
    unit: str

    def index(self, at: dt.datetime) -> int:
        return min(max(int((at - self.start) / self.size), 0), self.count - 1)


@dataclass
class Bar:
    start: dt.datetime
    count: int
    x: float
    y: float
    height: float


@dataclass
class Group:
    state_machine_id: int
    failed_state: str  # "" when the history did not tell
    error: str  # "" when AWS gave none
    count: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None
    # The earliest start among them: the list's link starts there.
    first_start: dt.datetime | None = None
    per_bucket: list[int] = field(default_factory=list)
    # Of the state machine's runs in the window (started in it, or failed in
    # it after an earlier start).
    runs: int = 0
    # Its last failure before the window; None: it is new in this window.
    seen_before: dt.datetime | None = None
    state_machine: StateMachine | None = None  # filled for the groups shown
    list_url: str = ""
    bars: list[Bar] = field(default_factory=list)

    @property
    def new(self) -> bool:
        return self.seen_before is None

    @property
    def share(self) -> float | None:
        return self.count / self.runs if self.runs else None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.state_machine_id, self.failed_state, self.error)


@dataclass
class Report:
    start: dt.datetime
    end: dt.datetime
    buckets: Buckets
    groups: list[Group]
    # Every group in the window, and every failure, shown or not.
    group_count: int
    total: int

    @property
    def hidden_groups(self) -> int:
        return self.group_count - len(self.groups)

    @property
    def bucket_label(self) -> str:
        minutes = int(self.buckets.size.total_seconds() // 60)
        return {1: "minute", 5: "5 minutes", 60: "hour", 1440: "day"}[minutes]

    chart_width: ClassVar[float] = CHART_WIDTH
    chart_height: ClassVar[float] = CHART_HEIGHT

    @property
    def bar_width(self) -> float:
        return round(CHART_WIDTH / self.buckets.count * 0.8, 3)


def buckets_for(start: dt.datetime, end: dt.datetime) -> Buckets:
    """Per minute up to an hour, per 5 minutes up to 3 hours, per hour up to
    8 days, per day beyond; aligned on the page's clock."""
    span = end - start
    if span <= dt.timedelta(hours=1):
        size, unit = dt.timedelta(minutes=1), "minute"
    elif span <= dt.timedelta(hours=3):
        size, unit = dt.timedelta(minutes=5), "minute"
    elif span <= dt.timedelta(days=8):
        size, unit = dt.timedelta(hours=1), "hour"
    else:
        size, unit = dt.timedelta(days=1), "day"
    local = timezone.localtime(start)
    if unit == "day":
        first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "hour":
        first = local.replace(minute=0, second=0, microsecond=0)
    else:
        minutes = int(size.total_seconds() // 60)
        first = local.replace(minute=local.minute - local.minute % minutes, second=0, microsecond=0)
    first = first.astimezone(dt.UTC)
    count = max(1, -(-(end - first) // size))
    return Buckets(start=first, size=size, count=count, unit=unit)


def failing(start: dt.datetime, end: dt.datetime) -> QuerySet[Execution]:
    """Failed, timed-out and aborted executions that ended in [start, end)."""
    return Execution.objects.filter(
        status__in=FAILURE_STATUSES, stop_date__gte=start, stop_date__lt=end
    )


def report(start: dt.datetime, end: dt.datetime, tz_name: str = "UTC") -> Report:
    buckets = buckets_for(start, end)
    rows = (
        failing(start, end)
        .annotate(
            err=Coalesce("error", Value(""), output_field=TextField()),
            at=Trunc("stop_date", buckets.unit, tzinfo=timezone.get_current_timezone()),
        )
        .order_by()
        .values("state_machine_id", "failed_state", "err", "status", "at")
        .annotate(
            n=Count("*"),
            first=Min("stop_date"),
            last=Max("stop_date"),
            first_start=Min("start_date"),
            before=Count("start_date", filter=Q(start_date__lt=start)),
        )
    )
    groups: dict[tuple[int, str, str], Group] = {}
    started_before: dict[int, int] = defaultdict(int)
    for row in rows:
        sm_id = row["state_machine_id"]
        key = (sm_id, row["failed_state"], row["err"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(
                state_machine_id=sm_id,
                failed_state=row["failed_state"],
                error=row["err"],
                per_bucket=[0] * buckets.count,
            )
        group.count += row["n"]
        group.statuses[row["status"]] = group.statuses.get(row["status"], 0) + row["n"]
        group.first_seen = _earliest(group.first_seen, row["first"])
        group.last_seen = max(filter(None, (group.last_seen, row["last"])))
        group.first_start = _earliest(group.first_start, row["first_start"])
        group.per_bucket[buckets.index(row["first"])] += row["n"]
        started_before[sm_id] += row["before"]
    ordered = sorted(groups.values(), key=lambda g: (g.last_seen, g.count), reverse=True)
    shown = ordered[:MAX_GROUPS]
    sm_ids = {g.state_machine_id for g in shown}
    machines = StateMachine.objects.in_bulk(sm_ids)
    runs = _runs(sm_ids, start, end)
    seen_before = _last_before(shown, start)
    for group, before in zip(shown, seen_before, strict=True):
        sm_id = group.state_machine_id
        group.state_machine = machines[sm_id]
        group.runs = runs.get(sm_id, 0) + started_before[sm_id]
        group.seen_before = before
        group.list_url = list_url(group, machines[sm_id].arn, start, end, tz_name)
        group.bars = _bars(group.per_bucket, buckets)
    return Report(
        start=start,
        end=end,
        buckets=buckets,
        groups=shown,
        group_count=len(groups),
        total=sum(g.count for g in groups.values()),
    )


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return min(filter(None, (a, b)), default=None)


def _runs(sm_ids: Iterable[int], start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Executions of each state machine started in the window."""
    return dict(
        Execution.objects.filter(
            state_machine_id__in=list(sm_ids), start_date__gte=start, start_date__lt=end
        )
        .order_by()
        .values("state_machine_id")
        .annotate(n=Count("*"))
        .values_list("state_machine_id", "n")
    )


def in_group(
    qs: QuerySet[Execution], state_machine_id: int, failed_state: str, error: str
) -> QuerySet[Execution]:
    qs = qs.filter(
        status__in=FAILURE_STATUSES, state_machine_id=state_machine_id, failed_state=failed_state
    )
    if error:
        return qs.filter(error=error)
    return qs.filter(Q(error="") | Q(error__isnull=True))


def _last_before(groups: list[Group], start: dt.datetime) -> list[dt.datetime | None]:
    """Each group's last failure before `start`, in one statement: a scalar
    subquery per group, each one seek of exec_failure_group_idx."""
    if not groups:
        return []
    last = {
        f"g{i}": Subquery(
            in_group(Execution.objects.all(), *group.key)
            .filter(stop_date__lt=start)
            .order_by("-stop_date")
            .values("stop_date")[:1]
        )
        for i, group in enumerate(groups)
    }
    # Any one row to hang them on: a state machine of the groups.
    row = (
        StateMachine.objects.filter(pk=groups[0].state_machine_id)
        .annotate(**last)
        .values(*last)
        .get()
    )
    return [row[f"g{i}"] for i in range(len(groups))]


def list_url(
    group: Group, state_machine_arn: str, start: dt.datetime, end: dt.datetime, tz_name: str
) -> str:
    """The executions list filtered to exactly this group's executions."""
    params: list[tuple[str, str]] = [("status", s) for s in FAILURE_STATUSES if s in group.statuses]
    params += [
        ("state_machine", state_machine_arn),
        ("failed_error", group.error),
        ("failed_state", group.failed_state),
        ("stopped_after", iso_z(start)),
        ("stopped_before", iso_z(end)),
    ]
    if group.first_start is not None:
        # Not needed for the match; it bounds the list's walk by start date
        # (floored to the second, which keeps every one and reads better).
        params.append(("started_after", iso_z(group.first_start, seconds=True)))
    return keep_tz(reverse("execution_list"), tz_name, params)


def _bars(counts: list[int], buckets: Buckets) -> list[Bar]:
    top = max(counts, default=0) or 1
    width = CHART_WIDTH / len(counts)
    out = []
    for i, n in enumerate(counts):
        if not n:
            continue
        height = max(CHART_HEIGHT * n / top, 1.0)
        out.append(
            Bar(
                start=buckets.start + i * buckets.size,
                count=n,
                x=round(i * width, 2),
                y=round(CHART_HEIGHT - height, 2),
                height=round(height, 2),
            )
        )
    return out
