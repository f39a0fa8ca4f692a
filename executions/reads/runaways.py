"""The runaway finder: running executions grouped by state machine and the state
they are in, and what stands out against each state machine's own past.

Three signals, each against a baseline of the same state machine:

- running longer than the p95 duration of its succeeded executions (the
  newest SAMPLE of them started in the last WINDOW);
- more events than the p95 of those executions' event counts (a loop, a retry
  storm, a Map that does not end);
- starts in the last hour far above its hourly average over the WINDOW before.

A fixed number of aggregate queries whatever the number of state machines and
executions: the running groups, the baselines (percentile_cont on PostgreSQL,
a bounded sample sorted in Python elsewhere), the start rates, the outliers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.db import connections
from django.db.models import (
    Count,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Window,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import RowNumber
from django.utils import timezone

from executions.models import OPEN_STATUSES, Execution, HistoryEvent, StateMachine

# The baselines look this far back ...
WINDOW = dt.timedelta(days=7)
# ... at the newest this many succeeded executions per state machine.
SAMPLE = 1000
# Fewer succeeded executions than this make no baseline.
MIN_SAMPLE = 5
PERCENTILE = 0.95
# Starts in the last hour are "far above" the hourly average when they are
# at least RATE_FACTOR times it, and at least RATE_MIN.
RATE_WINDOW = dt.timedelta(hours=1)
RATE_FACTOR = 3.0
RATE_MIN = 10
# A start rate needs this much history before the last hour to compare with.
RATE_MIN_BASELINE = dt.timedelta(hours=1)
# Outliers listed one by one (oldest first).
OUTLIERS_SHOWN = 100
# What a running execution with no state entered yet is grouped under.
NO_STATE = ""


# What a row of running executions shows (the runaway finder, the bulk-stop dry run).
ROW_FIELDS = (
    "arn",
    "name",
    "status",
    "start_date",
    "last_event_id",
    "state_machine__arn",
    "state_machine__name",
)


def current_state() -> Subquery:
    """The name of the state an execution entered last: where it is now, for a
    running one (inside a Map or Parallel, the state of its newest branch)."""
    return Subquery(
        HistoryEvent.objects.filter(execution=OuterRef("pk"), type__endswith="StateEntered")
        .order_by("-event_id")
        .annotate(state_name=KeyTextTransform("name", "details"))
        .values("state_name")[:1]
    )


def running() -> QuerySet[Execution]:
    return Execution.objects.filter(status__in=OPEN_STATUSES)


@dataclass(frozen=True)
class Baseline:
    """What the state machine's succeeded executions look like (p95)."""

    samples: int = 0
    seconds: float | None = None
    event_samples: int = 0
    events: float | None = None

    @property
    def has_duration(self) -> bool:
        return self.samples >= MIN_SAMPLE and self.seconds is not None

    @property
    def has_events(self) -> bool:
        return self.event_samples >= MIN_SAMPLE and self.events is not None


@dataclass(frozen=True)
class Rate:
    """Starts in the last hour against the hourly average before it."""

    last_hour: int = 0
    before: int = 0
    # Hours of history the average is taken over (WINDOW at most).
    baseline_hours: float = 0.0

    @property
    def per_hour(self) -> float | None:
        if self.baseline_hours * 3600 < RATE_MIN_BASELINE.total_seconds():
            return None
        return self.before / self.baseline_hours

    @property
    def factor(self) -> float | None:
        usual = self.per_hour
        if usual is None:
            return None
        return math.inf if usual == 0 else self.last_hour / usual

    @property
    def flagged(self) -> bool:
        factor = self.factor
        return factor is not None and self.last_hour >= RATE_MIN and factor >= RATE_FACTOR


@dataclass
class Group:
    state: str
    running: int
    oldest_start: dt.datetime
    max_events: int
    # How many of them run longer / have more events than the p95.
    long: int = 0
    eventful: int = 0
    # The bulk stop's dry run for this group (set by the view).
    stop_url: str = ""

    @property
    def flagged(self) -> bool:
        return bool(self.long or self.eventful)


@dataclass
class Machine:
    state_machine: StateMachine
    baseline: Baseline
    rate: Rate
    groups: list[Group] = field(default_factory=list)
    # now - p95 duration: executions started before it run longer than usual.
    long_before: dt.datetime | None = None
    # Links to the list and the bulk stop (set by the view).
    links: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return sum(g.running for g in self.groups)

    @property
    def long(self) -> int:
        return sum(g.long for g in self.groups)

    @property
    def eventful(self) -> int:
        return sum(g.eventful for g in self.groups)

    @property
    def flagged(self) -> bool:
        return self.rate.flagged or any(g.flagged for g in self.groups)


@dataclass
class Outlier:
    execution: Execution
    state: str
    long: bool
    eventful: bool


@dataclass
class Report:
    now: dt.datetime
    machines: list[Machine]
    outliers: list[Outlier]
    # More outliers than OUTLIERS_SHOWN exist.
    more_outliers: bool = False

    @property
    def running(self) -> int:
        return sum(m.running for m in self.machines)

    @property
    def flagged(self) -> list[Machine]:
        return [m for m in self.machines if m.flagged]


def report(now: dt.datetime | None = None) -> Report:
    """The runaway finder's page, in six queries whatever the numbers."""
    now = now or timezone.now()
    ids = sorted(set(running().values_list("state_machine_id", flat=True).distinct().order_by()))
    if not ids:
        return Report(now=now, machines=[], outliers=[])
    baselines = baselines_for(ids, now)
    rates = rates_for(ids, now)
    long_q, eventful_q = outlier_conditions(baselines, now)
    counts: dict[str, Any] = {
        "n": Count("id"),
        "oldest": Min("start_date"),
        "max_events": Max("last_event_id"),
    }
    if long_q is not None:
        counts["long"] = Count("id", filter=long_q)
    if eventful_q is not None:
        counts["eventful"] = Count("id", filter=eventful_q)
    rows = (
        running()
        .annotate(state=current_state())
        .values("state_machine_id", "state")
        .annotate(**counts)
        .order_by()
    )
    state_machines = StateMachine.objects.in_bulk(ids)
    machines: dict[int, Machine] = {}
    for sm_id in ids:
        baseline = baselines.get(sm_id, Baseline())
        machines[sm_id] = Machine(
            state_machine=state_machines[sm_id],
            baseline=baseline,
            rate=rates.get(sm_id, Rate()),
            long_before=now - dt.timedelta(seconds=baseline.seconds or 0)
            if baseline.has_duration
            else None,
        )
    for row in rows:
        machine = machines.get(row["state_machine_id"])
        if machine is None:  # started after the first query: next refresh
            continue
        machine.groups.append(
            Group(
                state=row["state"] or NO_STATE,
                running=row["n"],
                oldest_start=row["oldest"],
                max_events=row["max_events"] or 0,
                long=int(row.get("long") or 0),
                eventful=int(row.get("eventful") or 0),
            )
        )
    for machine in machines.values():
        machine.groups.sort(key=lambda g: (not g.flagged, -g.running, g.state))
    ordered = sorted(
        (m for m in machines.values() if m.groups),
        key=lambda m: (not m.flagged, -(m.long + m.eventful), -m.running, m.state_machine.name),
    )
    outliers, more = _outliers(long_q, eventful_q, baselines, now)
    return Report(now=now, machines=ordered, outliers=outliers, more_outliers=more)


def outlier_conditions(
    baselines: dict[int, Baseline], now: dt.datetime
) -> tuple[Q | None, Q | None]:
    """(running longer than usual, more events than usual) as conditions on
    executions, one term per state machine that has a baseline."""
    long_terms = [
        Q(state_machine_id=sm_id, start_date__lt=now - dt.timedelta(seconds=b.seconds or 0))
        for sm_id, b in baselines.items()
        if b.has_duration
    ]
    event_terms = [
        Q(state_machine_id=sm_id, last_event_id__gt=b.events)
        for sm_id, b in baselines.items()
        if b.has_events
    ]
    return (
        reduce(or_, long_terms) if long_terms else None,
        reduce(or_, event_terms) if event_terms else None,
    )


def _outliers(
    long_q: Q | None, eventful_q: Q | None, baselines: dict[int, Baseline], now: dt.datetime
) -> tuple[list[Outlier], bool]:
    terms = [q for q in (long_q, eventful_q) if q is not None]
    if not terms:
        return [], False
    rows = list(
        running()
        .filter(reduce(or_, terms))
        .select_related("state_machine")
        .only(*ROW_FIELDS)
        .annotate(state=current_state())
        .order_by("start_date", "id")[: OUTLIERS_SHOWN + 1]
    )
    out = []
    for ex in rows[:OUTLIERS_SHOWN]:
        b = baselines.get(ex.state_machine_id, Baseline())
        out.append(
            Outlier(
                execution=ex,
                state=getattr(ex, "state", None) or NO_STATE,
                long=b.has_duration and (now - ex.start_date).total_seconds() > (b.seconds or 0),
                eventful=b.has_events and ex.last_event_id > (b.events or 0),
            )
        )
    return out, len(rows) > OUTLIERS_SHOWN


# --- Baselines ------------------------------------------------------------------------


def baselines_for(state_machine_ids: Sequence[int], now: dt.datetime) -> dict[int, Baseline]:
    """p95 duration and event count of each state machine's newest SAMPLE
    succeeded executions started in the last WINDOW. One query."""
    if not state_machine_ids:
        return {}
    if connections[Execution.objects.db].vendor == "postgresql":
        return _baselines_postgresql(state_machine_ids, now - WINDOW)
    return _baselines_sampled(state_machine_ids, now - WINDOW)


def _baselines_postgresql(
    state_machine_ids: Sequence[int], since: dt.datetime
) -> dict[int, Baseline]:
    # For each state machine, its newest SAMPLE succeeded executions through
    # exec_sm_status_start_idx (LATERAL ... LIMIT), then percentile_cont over
    # them: bounded work however busy the state machine is.
    table = connections[Execution.objects.db].ops.quote_name(Execution._meta.db_table)
    sql = f"""
        SELECT sm.id,
               COUNT(r.seconds),
               percentile_cont(%s) WITHIN GROUP (ORDER BY r.seconds),
               COUNT(r.events),
               percentile_cont(%s) WITHIN GROUP (ORDER BY r.events)
        FROM unnest(%s::bigint[]) AS sm(id)
        CROSS JOIN LATERAL (
            SELECT EXTRACT(EPOCH FROM e.stop_date - e.start_date) AS seconds,
                   CASE WHEN e.history_complete THEN e.last_event_id END AS events
            FROM {table} e
            WHERE e.state_machine_id = sm.id
              AND e.status = 'SUCCEEDED'
              AND e.start_date >= %s
              AND e.stop_date IS NOT NULL
            ORDER BY e.start_date DESC
            LIMIT %s
        ) AS r
        GROUP BY sm.id
    """  # noqa: S608 (the table name is ours, the values are parameters)
    with connections[Execution.objects.db].cursor() as cursor:
        cursor.execute(sql, [PERCENTILE, PERCENTILE, list(state_machine_ids), since, SAMPLE])
        rows = cursor.fetchall()
    return {
        int(sm_id): Baseline(
            samples=int(n),
            seconds=float(seconds) if seconds is not None else None,
            event_samples=int(n_events),
            events=float(events) if events is not None else None,
        )
        for sm_id, n, seconds, n_events, events in rows
    }


def _baselines_sampled(state_machine_ids: Sequence[int], since: dt.datetime) -> dict[int, Baseline]:
    """The same numbers without percentile_cont (SQLite): the sample itself,
    numbered per state machine by a window function, sorted here."""
    rows = (
        Execution.objects.filter(
            state_machine_id__in=list(state_machine_ids),
            status="SUCCEEDED",
            start_date__gte=since,
            stop_date__isnull=False,
        )
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("state_machine_id")],
                order_by=[F("start_date").desc(), F("id").desc()],
            )
        )
        .filter(rank__lte=SAMPLE)
        .values_list(
            "state_machine_id", "start_date", "stop_date", "last_event_id", "history_complete"
        )
    )
    seconds: dict[int, list[float]] = defaultdict(list)
    events: dict[int, list[float]] = defaultdict(list)
    for sm_id, start, stop, last_event_id, complete in rows:
        if stop is None:  # excluded by the query; for the type checker
            continue
        seconds[sm_id].append((stop - start).total_seconds())
        if complete:
            events[sm_id].append(float(last_event_id))
    return {
        sm_id: Baseline(
            samples=len(seconds[sm_id]),
            seconds=percentile(seconds[sm_id], PERCENTILE),
            event_samples=len(events[sm_id]),
            events=percentile(events[sm_id], PERCENTILE),
        )
        for sm_id in seconds
    }


def percentile(values: Iterable[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the two
    nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- Start rates --------------------------------------------------------------------


def rates_for(state_machine_ids: Sequence[int], now: dt.datetime) -> dict[int, Rate]:
    """Starts in the last hour, and in the WINDOW before it, per state machine.
    One aggregate over exec_sm_start_idx.

    The average is taken over the part of the WINDOW the cache covers (from
    the first start it knows), so a dashboard that has synced for a day does
    not see every state machine as a runaway."""
    recent = now - RATE_WINDOW
    since = recent - WINDOW
    rows = (
        Execution.objects.filter(
            state_machine_id__in=list(state_machine_ids), start_date__gte=since
        )
        .values("state_machine_id")
        .annotate(
            last_hour=Count("id", filter=Q(start_date__gte=recent)),
            before=Count("id", filter=Q(start_date__lt=recent)),
            first=Min("start_date"),
        )
        .order_by()
    )
    out: dict[int, Rate] = {}
    for row in rows:
        first: dt.datetime = row["first"]
        covered = (recent - max(first, since)).total_seconds() / 3600
        out[row["state_machine_id"]] = Rate(
            last_hour=row["last_hour"], before=row["before"], baseline_hours=max(covered, 0.0)
        )
    return out


def in_state(queryset: QuerySet[Execution], state: str) -> QuerySet[Execution]:
    """The executions of `queryset` whose current state is `state` (the
    runaway finder's groups, for a bulk stop of one)."""
    annotated = queryset.annotate(current_state=current_state())
    if state == NO_STATE:
        return annotated.filter(current_state__isnull=True)
    return annotated.filter(current_state=state)
