"""The open visits of an execution's Task and Wait states and the
iterations of its open Map states, read from the cached history for the
"why is it still running" panel (stuck.py): what stands open now, found by
where it stands (an event nothing follows yet) and read back along
previousEventId, so that interleaved iterations are never mixed. A few
queries, whatever the length of the history.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from typing import Any

from django.db import connections
from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform

from executions import asl
from executions.event_types import (
    ITERATION_TYPES,
    TASK_ALIVE_TYPES,
    TASK_FAILURE_TYPES,
    TASK_SCHEDULED_TYPES,
)
from executions.models import Execution, HistoryEvent

# Open visits read (a Map runs at most 40 inline iterations at once; many
# more open visits than that are not worth reading one by one).
MAX_TIPS = 500
# Events followed back from where a visit stands to where it began (a task
# retried many times has 3 or 4 events per attempt).
MAX_CHAIN = 400
# The input of a state that was not read (or is not JSON).
UNREAD = object()
# MapStateStarted / MapRunStarted events read to find the ones of an open Map state.
_HEADS = 20

# Where an open Task or Wait visit can stand: nothing has followed it yet.
TIP_TYPES = tuple(
    sorted(
        (TASK_SCHEDULED_TYPES | TASK_ALIVE_TYPES | TASK_FAILURE_TYPES)
        | {"TaskStateEntered", "WaitStateEntered"}
    )
)
ITERATION_EVENTS = sorted(ITERATION_TYPES)


@dataclass(frozen=True)
class TaskEvent:
    """The few facts of a task event the panel reads (no payloads)."""

    event_id: int
    previous_event_id: int
    timestamp: dt.datetime
    type: str
    error: str = ""
    timeout: float | None = None  # timeoutInSeconds of a *Scheduled event
    heartbeat: float | None = None  # heartbeatInSeconds
    resource: str = ""
    worker: str = ""


@dataclass(frozen=True)
class MapProgress:
    total: int | None  # items (MapStateStarted length); None for a distributed Map
    started: int
    succeeded: int
    failed: int
    aborted: int
    started_event_id: int | None
    oldest_running_index: int | None = None
    oldest_running_since: dt.datetime | None = None
    oldest_running_event_id: int | None = None
    map_run_arn: str = ""
    map_run_event_id: int | None = None

    @property
    def running(self) -> int:
        return max(0, self.started - self.succeeded - self.failed - self.aborted)

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.aborted

    @property
    def not_started(self) -> int | None:
        return None if self.total is None else max(0, self.total - self.started)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Visit:
    """One open visit of a Task or Wait state: its StateEntered event and the
    task events after it, in order."""

    name: str
    entered_id: int
    entered_at: dt.datetime
    events: list[TaskEvent]


def _chains(execution: Execution) -> dict[int, int]:
    """{event id: tip} for the open visits of Task and Wait states.

    A tip is an event that nothing follows yet (no event names it as its
    previous one) among those that leave a Task or Wait state waiting: it is
    where an open visit stands now. From each tip (the oldest MAX_TIPS),
    previousEventId leads back to the StateEntered event the visit began
    with. One recursive query: an anti-join for the tips, then an index
    lookup per step back."""
    table = HistoryEvent._meta.db_table
    types = ", ".join(["%s"] * len(TIP_TYPES))
    # Only the table's name and placeholders go into the text; values are parameters.
    sql = (
        "WITH RECURSIVE chain(event_id, previous_event_id, type, tip, depth) AS ("  # noqa: S608
        " SELECT event_id, previous_event_id, type, event_id, 0 FROM ("
        f"  SELECT event_id, previous_event_id, type FROM {table}"
        f"  WHERE execution_id = %s AND type IN ({types})"
        f"  AND event_id NOT IN (SELECT previous_event_id FROM {table} WHERE execution_id = %s)"
        "  ORDER BY event_id LIMIT %s) tips"
        " UNION ALL"
        " SELECT e.event_id, e.previous_event_id, e.type, chain.tip, chain.depth + 1"
        f" FROM {table} e JOIN chain ON e.event_id = chain.previous_event_id"
        " WHERE e.execution_id = %s AND chain.type NOT LIKE %s"
        " AND e.event_id < chain.event_id AND chain.depth < %s"
        ") SELECT event_id, tip FROM chain"
    )
    params: list[Any] = [
        execution.pk,
        *TIP_TYPES,
        execution.pk,
        MAX_TIPS,
        execution.pk,
        "%StateEntered",
        MAX_CHAIN,
    ]
    with connections[HistoryEvent.objects.db].cursor() as cursor:
        cursor.execute(sql, params)
        return {int(event_id): int(tip) for event_id, tip in cursor.fetchall()}


def open_visits(execution: Execution) -> dict[str, list[Visit]]:
    """The open visits of Task and Wait states by state name, oldest first.
    Concurrent visits (Map iterations, Parallel branches) each have their own
    chain of events, so a task stuck in one iteration is told apart from the
    ones that move. Two queries, whatever the length of the history."""
    chain_of = _chains(execution)
    if not chain_of:
        return {}
    rows = (
        HistoryEvent.objects.filter(execution=execution, event_id__in=list(chain_of))
        .order_by("event_id")
        .annotate(
            name=KeyTextTransform("name", "details"),
            error=KeyTextTransform("error", "details"),
            timeout=KeyTextTransform("timeoutInSeconds", "details"),
            heartbeat=KeyTextTransform("heartbeatInSeconds", "details"),
            resource=KeyTextTransform("resource", "details"),
            worker=KeyTextTransform("workerName", "details"),
        )
        .values_list(
            "event_id",
            "previous_event_id",
            "timestamp",
            "type",
            "name",
            "error",
            "timeout",
            "heartbeat",
            "resource",
            "worker",
        )
    )
    entered: dict[int, tuple[str, int, dt.datetime]] = {}
    events: dict[int, list[TaskEvent]] = {}
    for event_id, prev, ts, type_, name, error, timeout, heartbeat, resource, worker in rows:
        tip = chain_of[event_id]
        if type_.endswith("StateEntered"):
            entered[tip] = (_text(name), event_id, ts)
            continue
        events.setdefault(tip, []).append(
            TaskEvent(
                event_id=event_id,
                previous_event_id=prev or 0,
                timestamp=ts,
                type=type_,
                error=_text(error),
                timeout=asl.number(timeout),
                heartbeat=asl.number(heartbeat),
                resource=_text(resource),
                worker=_text(worker),
            )
        )
    out: dict[str, list[Visit]] = {}
    for tip, (name, entered_id, entered_at) in sorted(entered.items(), key=lambda i: i[1][1]):
        out.setdefault(name, []).append(Visit(name, entered_id, entered_at, events.get(tip, [])))
    return out


def inputs(execution: Execution, event_ids: list[int]) -> dict[int, Any]:
    """The decoded input of some StateEntered events (only Wait states that
    take their time from a path need it)."""
    out: dict[int, Any] = {}
    if not event_ids:
        return out
    rows = HistoryEvent.objects.filter(execution=execution, event_id__in=event_ids).values_list(
        "event_id", "details"
    )
    for event_id, details in rows:
        raw = details.get("input") if isinstance(details, dict) else None
        try:
            out[event_id] = json.loads(raw) if isinstance(raw, str) else raw
        except (ValueError, RecursionError):
            out[event_id] = UNREAD
    return out


def map_progress(execution: Execution, name: str, entered_id: int) -> MapProgress:
    """Iterations of the Map state `name` entered at `entered_id`: counted by
    the database (a Map of thousands of iterations is read as four numbers),
    and the oldest iteration still running. Three queries."""
    heads = (
        HistoryEvent.objects.filter(
            execution=execution,
            event_id__gt=entered_id,
            type__in=("MapStateStarted", "MapRunStarted"),
        )
        .order_by("event_id")
        .annotate(
            length=KeyTextTransform("length", "details"),
            run_arn=KeyTextTransform("mapRunArn", "details"),
        )
        .values_list("type", "event_id", "previous_event_id", "length", "run_arn")[:_HEADS]
    )
    total: int | None = None
    started_event: int | None = None
    run_arn = ""
    run_event: int | None = None
    for type_, event_id, prev, length, arn in heads:
        if type_ == "MapStateStarted" and prev == entered_id and started_event is None:
            started_event = event_id
            total = int(asl.number(length) or 0)
        elif type_ == "MapRunStarted" and run_event is None and prev in (entered_id, started_event):
            run_event, run_arn = event_id, _text(arn)
    iterations = (
        HistoryEvent.objects.filter(
            execution=execution, event_id__gt=entered_id, type__in=ITERATION_EVENTS
        )
        .filter(details__name=name)
        .annotate(index=KeyTextTransform("index", "details"))
    )
    counts = {t: 0 for t in ITERATION_EVENTS}
    for type_, n in iterations.values_list("type").annotate(n=Count("pk")):
        counts[type_] = n
    progress = MapProgress(
        # A distributed Map's items are counted by its Map Run, not here.
        total=None if run_event is not None else total,
        started=counts["MapIterationStarted"],
        succeeded=counts["MapIterationSucceeded"],
        failed=counts["MapIterationFailed"],
        aborted=counts["MapIterationAborted"],
        started_event_id=started_event,
        map_run_arn=run_arn,
        map_run_event_id=run_event,
    )
    if progress.running:
        ended = iterations.exclude(type="MapIterationStarted").values("index")
        oldest = (
            iterations.filter(type="MapIterationStarted")
            .exclude(index__in=ended)
            .order_by("event_id")
            .values_list("event_id", "timestamp", "index")
            .first()
        )
        if oldest is not None:
            index = asl.number(oldest[2])
            progress = replace(
                progress,
                oldest_running_event_id=oldest[0],
                oldest_running_since=oldest[1],
                oldest_running_index=None if index is None else int(index),
            )
    return progress
