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
time from a path (those reads are in visits.py). The Amazon States Language
itself (retry rules, paths) is in asl.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from executions import asl
from executions.event_types import (
    TASK_ALIVE_TYPES,
    TASK_FAILURE_TYPES,
    TASK_SCHEDULED_TYPES,
    TASK_SUCCEEDED_TYPES,
)
from executions.history import visits
from executions.history.progress import OpenState
from executions.history.visits import MapProgress, TaskEvent
from executions.models import Execution

# AWS fails an execution whose history reaches this many events.
EVENT_LIMIT = 25_000
EVENT_WARN_SHARE = 0.8
# A clock at this share of its limit is flagged.
LIMIT_WARN_SHARE = 0.8
# At most this many open states are analysed (a wide Parallel or nested Map
# can have many; the first ones, outermost first, are what matters).
MAX_STATES = 12


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
        if state_input is visits.UNREAD:
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


# --- The panel -------------------------------------------------------------------------------


def analyse(
    execution: Execution, open_states: Sequence[OpenState], now: dt.datetime
) -> Stuck | None:
    """The panel of a running execution; None once it has ended. `open_states`
    is what progress.open_states said (the live part has it already)."""
    if not execution.is_open:
        return None
    # The definition it ran, when the sync has read it; else today's (said below).
    ran = execution.definition if execution.definition_id is not None else None
    definition = ran.text if ran is not None else (execution.state_machine.definition or "")
    index = asl.state_index(definition)
    parsed = asl.parsed(definition)
    problem = ""
    if not definition:
        problem = "The state machine's definition has not been synced yet."
    elif parsed is None:
        problem = "The state machine's definition could not be read (not JSON)."
    notes = []
    if ran is None and execution.state_machine_version_arn:
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

    found_visits = visits.open_visits(execution) if any(needs_visit(s) for s in shown) else {}
    # The visit each report is about: the oldest open one, which is what
    # holds things up (in a Map, the others may be moving).
    chosen = {name: found[0] for name, found in found_visits.items() if found}

    wait_paths = [
        chosen[s.name].entered_id if s.name in chosen else s.event_id
        for s in shown
        if kinds[s.name] == "Wait"
        and s.name in index
        and index[s.name].get("Seconds") is None
        and index[s.name].get("Timestamp") is None
    ]
    inputs = visits.inputs(execution, wait_paths)

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
            extra["resume"] = wait_resume(state, entered_at, inputs.get(entered_id, visits.UNREAD))
        elif kind == "Map":
            extra["map"] = visits.map_progress(execution, s.name, s.event_id)
        reports.append(
            OpenStateReport(
                name=s.name,
                type=kind,
                entered_at=entered_at,
                event_id=entered_id,
                visits_open=len(found_visits[s.name])
                if found_visits.get(s.name)
                else s.visits_open,
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
