"""Why a running execution is stuck: read from its history and its state
machine definition.

For every open state (progress.open_states): how long it has been there
against its TimeoutSeconds / HeartbeatSeconds, for a retrying task which
attempt it is on and when the next one comes, for a callback
(.waitForTaskToken) or activity task its last sign of life, for a Wait state
when it resumes, for a Map state its iterations. For the execution: the share
of the 25,000-event history limit it has used, and its own time limit.

Of a state with several visits open (Map iterations, Parallel branches), the
report is about the oldest one: the visit that holds the others up. Open
visits are found by where they stand (an event nothing follows yet) and read
back along previousEventId, so that interleaved iterations are never mixed.

It refreshes every few seconds with the live part of the detail page, so it
never reads the whole history: two queries for the open Task / Wait visits,
three per open Map state, one for the input of a Wait state that takes its
time from a path. The Amazon States Language itself (retry rules, paths) is
in asl.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    TASK_SUCCEEDED_TYPES,
)
from executions.history.progress import OpenState
from executions.models import Execution, HistoryEvent

# AWS fails an execution whose history reaches this many events.
EVENT_LIMIT = 25_000
EVENT_WARN_SHARE = 0.8
# A clock at this share of its limit is flagged.
LIMIT_WARN_SHARE = 0.8
# At most this many open states are analysed (a wide Parallel or nested Map
# can have many; the first ones, outermost first, are what matters).
MAX_STATES = 12
# Open visits read (a Map runs at most 40 inline iterations at once; many
# more open visits than that are not worth reading one by one).
MAX_TIPS = 500
# Events followed back from where a visit stands to where it began (a task
# retried many times has 3 or 4 events per attempt).
MAX_CHAIN = 400
# The input of a state that was not read (or is not JSON).
_UNREAD = object()
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


# --- What the panel shows ------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """Time spent against a limit: a state's TimeoutSeconds or HeartbeatSeconds."""

    since: dt.datetime
    limit_seconds: float
    now: dt.datetime
    event_id: int  # the event the clock starts at

    @property
    def seconds(self) -> float:
        return max(0.0, (self.now - self.since).total_seconds())

    @property
    def share(self) -> float:
        return self.seconds / self.limit_seconds if self.limit_seconds > 0 else 1.0

    @property
    def deadline(self) -> dt.datetime:
        return self.since + dt.timedelta(seconds=self.limit_seconds)

    @property
    def percent(self) -> int:
        return int(self.share * 100)

    @property
    def level(self) -> str:
        if self.share >= 1:
            return "bad"
        return "warn" if self.share >= LIMIT_WARN_SHARE else ""


@dataclass(frozen=True)
class Retry:
    """A task that failed in this visit of its state, and what its Retry does next."""

    failures: int
    last_error: str
    last_failed_at: dt.datetime
    last_failed_event_id: int
    # The attempt under way, or the next one while it waits between attempts (1-based).
    attempt: int
    # The most attempts the matching Retry rule allows (MaxAttempts + 1, plus
    # the failures other rules retried); None: no rule matches that error.
    max_attempts: int | None
    # Waiting between attempts: the next one starts at `next_at` (with
    # JitterStrategy FULL, at some time between the failure and `next_at`).
    waiting: bool
    next_at: dt.datetime | None
    delay_seconds: float | None
    jitter: bool
    # No retry left for that error: a Catch (or the failure of the execution) comes next.
    exhausted: bool
    rule: int | None  # index of the matching Retry rule in the definition


@dataclass(frozen=True)
class Callback:
    """A task that waits for someone else: a task token (.waitForTaskToken) or an
    activity worker. Heartbeats (SendTaskHeartbeat) are not in the history:
    the last sign of life it holds is the task's start or submission."""

    kind: str  # "token" | "activity"
    last_sign_type: str
    last_sign_at: dt.datetime
    last_sign_event_id: int
    worker: str = ""


@dataclass(frozen=True)
class Resume:
    """When a Wait state ends."""

    at: dt.datetime | None
    how: str  # "Seconds 600", "TimestampPath $.when = 2026-…"
    problem: str = ""  # why `at` is unknown


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


@dataclass(frozen=True)
class OpenStateReport:
    name: str
    type: str  # "Task", "Wait", "Map" ...
    entered_at: dt.datetime
    event_id: int
    visits_open: int
    now: dt.datetime
    in_definition: bool
    resource: str = ""
    timeout: Clock | None = None
    heartbeat: Clock | None = None
    retry: Retry | None = None
    callback: Callback | None = None
    resume: Resume | None = None
    map: MapProgress | None = None
    # The latest event of this visit (what it last did), when read.
    last_event_type: str = ""
    last_event_id: int | None = None
    # A task attempt is running with no TimeoutSeconds: nothing but the
    # execution's own limit ends it.
    unbounded: bool = False

    @property
    def worth_showing(self) -> bool:
        """Whether the panel has anything to say about it beyond the table of
        open states (a Pass, Choice or Parallel state has not)."""
        return bool(
            self.retry
            or self.timeout
            or self.heartbeat
            or self.callback
            or self.resume
            or self.map
            or self.unbounded
            or not self.in_definition
        )

    @property
    def seconds(self) -> float:
        return max(0.0, (self.now - self.entered_at).total_seconds())

    @property
    def level(self) -> str:
        levels = [c.level for c in (self.timeout, self.heartbeat) if c is not None]
        if self.retry is not None and self.retry.failures:
            levels.append("warn")
        if "bad" in levels:
            return "bad"
        return "warn" if "warn" in levels else ""


@dataclass(frozen=True)
class EventBudget:
    used: int
    limit: int
    started_at: dt.datetime
    now: dt.datetime

    @property
    def share(self) -> float:
        return self.used / self.limit

    @property
    def used_label(self) -> str:
        return f"{self.used:,}"

    @property
    def limit_label(self) -> str:
        return f"{self.limit:,}"

    @property
    def percent(self) -> float:
        return round(self.share * 100, 1)

    @property
    def percent_label(self) -> str:
        percent = self.share * 100
        if 0 < percent < 0.1:
            return "under 0.1 %"
        return f"{percent:.0f} %" if percent >= 10 else f"{percent:.1f} %"

    @property
    def warn(self) -> bool:
        return self.share >= EVENT_WARN_SHARE

    @property
    def reaches_limit_at(self) -> dt.datetime | None:
        """At the average rate so far, when the history would reach the limit."""
        elapsed = (self.now - self.started_at).total_seconds()
        if self.used <= 0 or elapsed <= 0 or self.used >= self.limit:
            return None
        rate = self.used / elapsed
        return self.now + dt.timedelta(seconds=(self.limit - self.used) / rate)


@dataclass(frozen=True)
class Stuck:
    states: list[OpenStateReport]
    events: EventBudget
    execution_timeout: Clock | None
    more_states: int = 0  # open states not analysed (beyond MAX_STATES)
    definition_problem: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def shown(self) -> list[OpenStateReport]:
        return [r for r in self.states if r.worth_showing]


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


def retry_state(state: dict[str, Any], visit: Sequence[TaskEvent]) -> Retry | None:
    """Where a task is in its Retry rules, from the events of one visit of its
    state (in order). None when nothing failed in this visit."""
    failures = [e for e in visit if e.type in TASK_FAILURE_TYPES]
    if not failures:
        return None
    declared = state.get("Retry")
    retriers: list[Any] = declared if isinstance(declared, list) else []
    counts: dict[int, int] = {}
    rule: int | None = None
    for failure in failures:
        rule = asl.matching_rule(retriers, _error_of(failure))
        if rule is not None:
            counts[rule] = counts.get(rule, 0) + 1
    last = failures[-1]
    waiting = visit[-1].type in TASK_FAILURE_TYPES
    # Every attempt so far ended in one of the failures: this is the next one.
    attempt = len(failures) + 1
    if rule is None:
        return Retry(
            failures=len(failures),
            last_error=_error_of(last),
            last_failed_at=last.timestamp,
            last_failed_event_id=last.event_id,
            attempt=attempt,
            max_attempts=None,
            waiting=waiting,
            next_at=None,
            delay_seconds=None,
            jitter=False,
            exhausted=waiting,
            rule=None,
        )
    chosen: dict[str, Any] = retriers[rule]
    allowed = asl.max_attempts(chosen)
    used = counts[rule]
    exhausted = used > allowed
    delay = None if exhausted else asl.retry_delay(chosen, used)
    jitter = str(chosen.get("JitterStrategy", "NONE")).upper() == "FULL"
    return Retry(
        failures=len(failures),
        last_error=_error_of(last),
        last_failed_at=last.timestamp,
        last_failed_event_id=last.event_id,
        attempt=attempt,
        max_attempts=allowed + 1 + (len(failures) - used),
        waiting=waiting and not exhausted,
        next_at=last.timestamp + dt.timedelta(seconds=delay)
        if waiting and delay is not None
        else None,
        delay_seconds=delay,
        jitter=jitter,
        exhausted=exhausted and waiting,
        rule=rule,
    )


def _error_of(event: TaskEvent) -> str:
    if event.error:
        return event.error
    return "States.Timeout" if event.type.endswith("TimedOut") else "States.TaskFailed"


def task_report(
    state: dict[str, Any], visit: Sequence[TaskEvent], now: dt.datetime
) -> dict[str, Any]:
    """The task-specific parts of an open state's report (timeout, heartbeat,
    retry, callback), from its definition and the events of its visit."""
    resource = str(state.get("Resource", ""))
    out: dict[str, Any] = {"resource": resource}
    if visit:
        out["last_event_type"] = visit[-1].type
        out["last_event_id"] = visit[-1].event_id
    out["retry"] = retry_state(state, visit)
    scheduled = next((e for e in reversed(visit) if e.type in TASK_SCHEDULED_TYPES), None)
    attempt_events = visit[visit.index(scheduled) :] if scheduled is not None else []
    between_attempts = bool(visit) and visit[-1].type in TASK_FAILURE_TYPES
    if scheduled is None or between_attempts or visit[-1].type in TASK_SUCCEEDED_TYPES:
        return out
    timeout = scheduled.timeout
    if timeout is None:
        timeout = asl.number(state.get("TimeoutSeconds"))
    if timeout is not None and timeout > 0:
        out["timeout"] = Clock(scheduled.timestamp, timeout, now, scheduled.event_id)
    else:
        out["unbounded"] = True
    alive = next((e for e in reversed(attempt_events) if e.type in TASK_ALIVE_TYPES), scheduled)
    heartbeat = scheduled.heartbeat
    if heartbeat is None:
        heartbeat = asl.number(state.get("HeartbeatSeconds"))
    if heartbeat is not None and heartbeat > 0:
        out["heartbeat"] = Clock(alive.timestamp, heartbeat, now, alive.event_id)
    is_token = resource.endswith(".waitForTaskToken") or scheduled.resource.endswith(
        ".waitForTaskToken"
    )
    is_activity = scheduled.type == "ActivityScheduled" or ":activity:" in resource
    if is_token or is_activity:
        worker = next((e.worker for e in attempt_events if e.worker), "")
        out["callback"] = Callback(
            kind="token" if is_token else "activity",
            last_sign_type=alive.type,
            last_sign_at=alive.timestamp,
            last_sign_event_id=alive.event_id,
            worker=worker,
        )
    return out


def wait_resume(state: dict[str, Any], entered_at: dt.datetime, state_input: Any) -> Resume:
    """When a Wait state entered at `entered_at` with this input resumes."""
    seconds = state.get("Seconds")
    if seconds is not None:
        value = asl.number(seconds)
        if value is None:
            return Resume(None, f"Seconds {str(seconds)[:80]}", "not a number of seconds")
        return Resume(entered_at + dt.timedelta(seconds=value), f"Seconds {value:g}")
    stamp = state.get("Timestamp")
    if stamp is not None:
        at = asl.parse_timestamp(stamp)
        if at is None:
            return Resume(None, f"Timestamp {str(stamp)[:80]}", "not an ISO 8601 timestamp")
        return Resume(at, f"Timestamp {stamp}")
    for key in ("SecondsPath", "TimestampPath"):
        path = state.get(key)
        if path is None:
            continue
        how = f"{key} {str(path)[:80]}"
        if state_input is _UNREAD:
            return Resume(None, how, "its input was not read")
        effective = state_input
        input_path = state.get("InputPath")
        if isinstance(input_path, str) and input_path != "$":
            found, effective = asl.resolve_path(input_path, state_input)
            if not found:
                return Resume(None, how, f"InputPath {input_path[:80]} is not in its input")
        found, value = asl.resolve_path(str(path), effective)
        if not found:
            return Resume(None, how, "the path is not in the state's input")
        if key == "SecondsPath":
            number = asl.number(value) if not isinstance(value, str) else None
            if number is None:
                return Resume(None, how, f"the input holds {json.dumps(value)[:60]}, not seconds")
            return Resume(entered_at + dt.timedelta(seconds=number), f"{how} = {number:g}")
        at = asl.parse_timestamp(value)
        if at is None:
            return Resume(None, how, f"the input holds {json.dumps(value)[:60]}, not a timestamp")
        return Resume(at, f"{how} = {value}")
    return Resume(None, "", "the definition gives no Seconds or Timestamp")


# --- Reading the cache -----------------------------------------------------------------------


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


def _inputs(execution: Execution, event_ids: list[int]) -> dict[int, Any]:
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
            out[event_id] = _UNREAD
    return out


def _map_progress(execution: Execution, name: str, entered_id: int) -> MapProgress:
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


# --- The panel -------------------------------------------------------------------------------


def analyse(
    execution: Execution, open_states: Sequence[OpenState], now: dt.datetime
) -> Stuck | None:
    """The panel of a running execution; None once it has ended. `open_states`
    is what progress.open_states said (the live part has it already)."""
    if not execution.is_open:
        return None
    definition = execution.state_machine.definition or ""
    index = asl.state_index(definition)
    parsed = asl.parsed(definition)
    problem = ""
    if not definition:
        problem = "The state machine's definition has not been synced yet."
    elif parsed is None:
        problem = "The state machine's definition could not be read (not JSON)."
    notes = []
    if execution.state_machine_version_arn:
        notes.append(
            "This execution runs a published version; limits are read from the state "
            "machine's current definition, which may differ."
        )
    shown = list(open_states[:MAX_STATES])
    kinds = {s.name: _state_type(s, index) for s in shown}

    nested = asl.nested_states(definition)

    def needs_visit(s: OpenState) -> bool:
        # A task's attempts are read from its visit; a Wait state's only when
        # it may have several visits open (in a Map or a branch): at the top
        # level the latest one entered is the open one.
        if kinds[s.name] == "Task":
            return True
        return kinds[s.name] == "Wait" and (s.visits_open > 1 or s.name in nested)

    visits = open_visits(execution) if any(needs_visit(s) for s in shown) else {}
    # The visit each report is about: the oldest open one, which is what
    # holds things up (in a Map, the others may be moving).
    chosen = {name: found[0] for name, found in visits.items() if found}

    wait_paths = [
        chosen[s.name].entered_id if s.name in chosen else s.event_id
        for s in shown
        if kinds[s.name] == "Wait"
        and s.name in index
        and index[s.name].get("Seconds") is None
        and index[s.name].get("Timestamp") is None
    ]
    inputs = _inputs(execution, wait_paths)

    reports = []
    for s in shown:
        state = index.get(s.name, {})
        kind = kinds[s.name]
        visit = chosen.get(s.name)
        entered_id, entered_at = (
            (visit.entered_id, visit.entered_at) if visit else (s.event_id, s.entered_at)
        )
        extra: dict[str, Any] = {}
        if kind == "Task":
            extra = task_report(state, visit.events if visit else [], now)
        elif kind == "Wait" and state:
            extra["resume"] = wait_resume(state, entered_at, inputs.get(entered_id, _UNREAD))
        elif kind == "Map":
            extra["map"] = _map_progress(execution, s.name, s.event_id)
        reports.append(
            OpenStateReport(
                name=s.name,
                type=kind,
                entered_at=entered_at,
                event_id=entered_id,
                visits_open=len(visits[s.name]) if visits.get(s.name) else s.visits_open,
                now=now,
                in_definition=s.name in index,
                **extra,
            )
        )

    execution_timeout = None
    limit = asl.number(parsed.get("TimeoutSeconds")) if parsed else None
    if limit is not None and limit > 0:
        execution_timeout = Clock(execution.start_date, limit, now, 1)
    return Stuck(
        states=reports,
        events=EventBudget(execution.last_event_id, EVENT_LIMIT, execution.start_date, now),
        execution_timeout=execution_timeout,
        more_states=max(0, len(open_states) - len(shown)),
        definition_problem=problem,
        notes=notes,
    )


def _state_type(state: OpenState, index: dict[str, dict[str, Any]]) -> str:
    declared = index.get(state.name, {}).get("Type")
    if isinstance(declared, str) and declared:
        return declared
    return state.type.removesuffix("StateEntered") or "State"
