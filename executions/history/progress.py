"""Where an execution is: the states it is in now, and where it failed.

Read from the cached history with a few aggregate queries, so that it stays
cheap on a 25,000-event execution.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Max

from executions.event_types import FAILURE_TYPES
from executions.models import OPEN_STATUSES, Execution, HistoryEvent

# How far back from the end to look for the failure.
_TAIL = 60


@dataclass(frozen=True)
class OpenState:
    name: str
    type: str  # the *StateEntered event type, e.g. "TaskStateEntered"
    entered_at: dt.datetime
    event_id: int
    visits_open: int  # > 1 for a state inside several running Map iterations or branches


@dataclass(frozen=True)
class CaughtFailure:
    """The error a Catch handled on the way to the state that failed."""

    state_name: str
    event_id: int
    event_type: str
    error: str
    cause: str


@dataclass(frozen=True)
class FailurePoint:
    state_name: str
    event_id: int  # the event to link to: where it went wrong
    event_type: str
    error: str
    cause: str
    # When a Catch led to a Fail state: the failure it caught, which is
    # usually what the person on call is after.
    caught: CaughtFailure | None = None


def open_states(execution: Execution) -> list[OpenState]:
    """States entered and not yet exited, outermost first. Empty once it has ended."""
    if execution.status not in OPEN_STATUSES:
        return []
    events = HistoryEvent.objects.filter(execution=execution)
    entered = {
        row["details__name"]: row
        for row in events.filter(type__endswith="StateEntered")
        .values("details__name")
        .annotate(n=Count("id"), last=Max("event_id"))
    }
    exited = dict(
        events.filter(type__endswith="StateExited")
        .values("details__name")
        .annotate(n=Count("id"))
        .values_list("details__name", "n")
    )
    still_in = {name: row for name, row in entered.items() if row["n"] > exited.get(name, 0)}
    if not still_in:
        return []
    latest = events.filter(event_id__in=[row["last"] for row in still_in.values()]).order_by(
        "event_id"
    )
    out = []
    for e in latest:
        name = e.details.get("name") if isinstance(e.details, dict) else None
        row = still_in.get(name)
        if row is None:
            continue
        out.append(
            OpenState(
                name=str(name),
                type=e.type,
                entered_at=e.timestamp,
                event_id=e.event_id,
                visits_open=row["n"] - exited.get(name, 0),
            )
        )
    return out


def failure_point(execution: Execution) -> FailurePoint | None:
    """For a failed, timed-out or aborted execution: the state where it went
    wrong and the event that says so."""
    if execution.status not in ("FAILED", "TIMED_OUT", "ABORTED"):
        return None
    tail = list(HistoryEvent.objects.filter(execution=execution).order_by("-event_id")[:_TAIL])
    if not tail:
        return None
    terminal = tail[0]
    cause_event = next(
        (e for e in tail[1:] if e.type in FAILURE_TYPES and e.type != "ExecutionAborted"),
        None,
    )
    anchor = cause_event or terminal
    state = next(
        (e for e in tail if e.event_id <= anchor.event_id and e.type.endswith("StateEntered")),
        None,
    )
    details = anchor.details if isinstance(anchor.details, dict) else {}
    terminal_details = terminal.details if isinstance(terminal.details, dict) else {}
    return FailurePoint(
        state_name=_name(state),
        event_id=anchor.event_id,
        event_type=anchor.type,
        error=str(details.get("error") or terminal_details.get("error") or execution.error or ""),
        cause=str(details.get("cause") or terminal_details.get("cause") or execution.cause or ""),
        caught=_caught_before(tail, anchor) if anchor.type == "FailStateEntered" else None,
    )


def _caught_before(tail: list[HistoryEvent], fail_state: HistoryEvent) -> CaughtFailure | None:
    earlier = [e for e in tail if e.event_id < fail_state.event_id]
    failed = next((e for e in earlier if e.type in FAILURE_TYPES), None)
    if failed is None:
        return None
    state = next(
        (e for e in earlier if e.event_id <= failed.event_id and e.type.endswith("StateEntered")),
        None,
    )
    details = failed.details if isinstance(failed.details, dict) else {}
    return CaughtFailure(
        state_name=_name(state),
        event_id=failed.event_id,
        event_type=failed.type,
        error=str(details.get("error", "")),
        cause=str(details.get("cause", "")),
    )


def _name(event: HistoryEvent | None) -> str:
    if event is None or not isinstance(event.details, dict):
        return ""
    return str(event.details.get("name", ""))
