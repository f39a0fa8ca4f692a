"""What state machines have been doing: counts per status, the failure rate
over the last day, and executions started per hour, drawn as a stacked bar chart.

They come from the counts that the database keeps per state machine, status
and hour (executions/database/counts.py), not from the executions table: the
pages cost the same with 10,000 cached executions or 10,000,000, and with 3
state machines or 3,000 (one query for the counts, one for the last starts).
The failure rate and the chart share a window of whole hours: the current
hour and the 23 before it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from executions.links import keep_tz
from executions.models import (
    Execution,
    ExecutionCount,
    ExecutionCountDelta,
    ExecutionStatus,
    StateMachine,
)
from executions.times import iso_z

WINDOW = dt.timedelta(hours=24)
# Closed this way, an execution counts against the failure rate.
FAILURE_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
# Stacking order of the chart, bottom up: failures sit on the baseline,
# where they are easy to compare from hour to hour.
STACK_ORDER = ("FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE", "RUNNING", "SUCCEEDED")
STATUSES = tuple(ExecutionStatus.values)


@dataclass
class MachineStats:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    last_start: dt.datetime | None = None
    # Closed in the last 24 h, and of those, failed, timed out or aborted.
    closed_24h: int = 0
    failed_24h: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def running(self) -> int:
        return self.counts["RUNNING"]

    @property
    def failure_rate(self) -> float | None:
        return self.failed_24h / self.closed_24h if self.closed_24h else None


def machine_stats(
    state_machine_ids: Iterable[int] | None = None, now: dt.datetime | None = None
) -> dict[int, MachineStats]:
    """Per state machine id (all of them when `state_machine_ids` is None)."""
    since = window_start(now)
    stats: dict[int, MachineStats] = defaultdict(MachineStats)
    wanted = Q(kind="total") | Q(kind="closed", hour__gte=since)
    for sm_id, kind, status, _, n in _counts(wanted, state_machine_ids):
        s = stats[sm_id]
        if kind == "total":
            s.counts[status] = s.counts.get(status, 0) + n
        else:
            s.closed_24h += n
            if status in FAILURE_STATUSES:
                s.failed_24h += n
    # The newest start of each: one step down exec_sm_start_idx per state machine.
    machines = StateMachine.objects.all()
    if state_machine_ids is not None:
        machines = machines.filter(pk__in=list(state_machine_ids))
    newest = Execution.objects.filter(state_machine=OuterRef("pk")).order_by("-start_date", "-id")
    last_starts = machines.annotate(last=Subquery(newest.values("start_date")[:1])).values_list(
        "pk", "last"
    )
    for sm_id, last in last_starts:
        if last is not None:
            stats[sm_id].last_start = last
    return stats


def _counts(
    wanted: Q, state_machine_ids: Iterable[int] | None
) -> Iterator[tuple[int, str, str, dt.datetime, int]]:
    """(state machine id, kind, status, hour, n): the counts plus the changes
    not yet folded into them, added up."""
    if state_machine_ids is not None:
        wanted &= Q(state_machine_id__in=list(state_machine_ids))
    columns = ("state_machine_id", "kind", "status", "hour", "n")
    folded = ExecutionCount.objects.filter(wanted).values_list(*columns)
    pending = ExecutionCountDelta.objects.filter(wanted).values_list(*columns)
    summed: dict[tuple[int, str, str, dt.datetime], int] = defaultdict(int)
    for sm_id, kind, status, hour, n in folded.union(pending, all=True):
        summed[sm_id, kind, status, hour] += n
    for (sm_id, kind, status, hour), n in summed.items():
        if n:
            yield sm_id, kind, status, hour, n


# --- Executions started per hour ------------------------------------------------------


@dataclass
class Segment:
    status: str
    count: int
    y: float
    height: float
    url: str


@dataclass
class Bar:
    start: dt.datetime
    end: dt.datetime
    slot_x: float  # left edge of the bar's hour slot (the clickable area)
    x: float  # left edge of the bar itself
    center: float
    total: int
    url: str
    segments: list[Segment]
    label: str  # the hour on the axis, in the page's zone; "" for unlabelled bars


@dataclass
class LegendItem:
    status: str
    count: int
    url: str


@dataclass
class Chart:
    bars: list[Bar]
    top: int  # the value at the top of the scale
    total: int
    legend: list[LegendItem]  # statuses seen in the window, with counts and links
    width: float
    step: float
    height: float
    bar_width: float
    plot_height: float


# Geometry of the chart (SVG user units).
_STEP = 24.0
_BAR = 18.0
_PLOT = 110.0
_AXIS = 18.0


def hourly(
    state_machine_ids: Iterable[int] | None = None,
    now: dt.datetime | None = None,
    hours: int = 24,
) -> dict[int, list[tuple[dt.datetime, str, int]]]:
    """(hour start, status, count) per state machine id, for the last `hours` hours."""
    first = window_start(now, hours)
    out: dict[int, list[tuple[dt.datetime, str, int]]] = defaultdict(list)
    for sm_id, _, status, hour, n in _counts(Q(kind="started", hour__gte=first), state_machine_ids):
        out[sm_id].append((hour, status, n))
    return out


def window_start(now: dt.datetime | None = None, hours: int = 24) -> dt.datetime:
    """The first hour shown: the current hour is the last of `hours` bars."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    return now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=hours - 1)


def chart(
    counts: list[tuple[dt.datetime, str, int]],
    state_machine_arn: str,
    tz_name: str = "UTC",
    now: dt.datetime | None = None,
    hours: int = 24,
    label_every: int = 3,
) -> Chart:
    first = window_start(now, hours)
    by_hour: dict[dt.datetime, dict[str, int]] = defaultdict(dict)
    per_status: dict[str, int] = dict.fromkeys(STACK_ORDER, 0)
    for hour, status, n in counts:
        hour = hour.astimezone(dt.UTC)
        by_hour[hour][status] = by_hour[hour].get(status, 0) + n
        per_status[status] = per_status.get(status, 0) + n
    biggest = max((sum(v.values()) for v in by_hour.values()), default=0)
    top = nice_ceiling(biggest)
    scale = _PLOT / top if top else 0.0
    bars = []
    for i in range(hours):
        start = first + dt.timedelta(hours=i)
        end = start + dt.timedelta(hours=1)
        hour_counts = by_hour.get(start, {})
        y = _PLOT
        segments = []
        for status in STACK_ORDER:
            n = hour_counts.get(status, 0)
            if not n:
                continue
            height = max(n * scale, 1.0)
            y -= height
            segments.append(
                Segment(
                    status=status,
                    count=n,
                    y=round(y, 2),
                    height=round(height, 2),
                    url=execution_list_url(
                        tz_name,
                        state_machine=state_machine_arn,
                        status=[status],
                        started_after=start,
                        started_before=end,
                    ),
                )
            )
        local = timezone.localtime(start)
        bars.append(
            Bar(
                start=start,
                end=end,
                slot_x=i * _STEP,
                x=i * _STEP + (_STEP - _BAR) / 2,
                center=i * _STEP + _STEP / 2,
                total=sum(hour_counts.values()),
                url=execution_list_url(
                    tz_name,
                    state_machine=state_machine_arn,
                    started_after=start,
                    started_before=end,
                ),
                segments=segments,
                label=f"{local:%H:%M}" if i % label_every == 0 else "",
            )
        )
    return Chart(
        bars=bars,
        top=top,
        total=sum(per_status.values()),
        legend=[
            LegendItem(
                status=status,
                count=n,
                url=execution_list_url(
                    tz_name, state_machine=state_machine_arn, status=[status], started_after=first
                ),
            )
            for status, n in per_status.items()
            if n
        ],
        width=hours * _STEP,
        step=_STEP,
        height=_PLOT + _AXIS,
        bar_width=_BAR,
        plot_height=_PLOT,
    )


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 ... at or above `value` (0 stays 0)."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def execution_list_url(
    tz_name: str = "UTC",
    *,
    state_machine: str = "",
    status: Iterable[str] = (),
    started_after: dt.datetime | None = None,
    started_before: dt.datetime | None = None,
) -> str:
    """A link to the executions list with these filters (the list reads
    `state_machine`, repeatable `status`, `started_after`, `started_before`)."""
    params: list[tuple[str, str]] = []
    if state_machine:
        params.append(("state_machine", state_machine))
    params.extend(("status", s) for s in status)
    if started_after is not None:
        params.append(("started_after", iso_z(started_after, seconds=True)))
    if started_before is not None:
        params.append(("started_before", iso_z(started_before, seconds=True)))
    return keep_tz(reverse("execution_list"), tz_name, params)
