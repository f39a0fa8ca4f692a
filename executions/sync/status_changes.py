"""Step Functions' own status-change events (EventBridge, through SQS) applied to the cache.

AWS publishes "Step Functions Execution Status Change" on the default event
bus of the execution's account and region for every status change of a
Standard workflow execution. Delivery is at least once, in no particular
order, and best effort. So applying an event is an idempotent upsert that
never moves an execution backwards:

- an execution's changes are ordered by (redriveCount, stage): a redrive
  starts a new attempt, and within an attempt an execution is open, then
  closed, once; an event older than the cache (a RUNNING that arrives after
  the SUCCEEDED, an attempt before the last redrive) changes nothing;
- the row is changed by compare-and-set on what was read, like the sync's
  own writes, so events, listings and descriptions can race;
- the event carries what DescribeExecution would say (input, output, error,
  cause, redrive fields) unless a payload was too large for EventBridge: then
  the execution is flagged for DescribeExecution, as a listing flags it;
- the history is never fetched here: the execution is made due, and the
  scheduler fetches it at the budget's pace.

The consumer (consumer.py) reads the queue; this module knows nothing of SQS.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.utils import timezone

from executions import signals
from executions.arns import NotAnArn, parse_execution_arn, parse_state_machine_arn
from executions.models import OPEN_STATUSES, Execution, ExecutionStatus, StateMachine
from executions.sync import flows, plan

SOURCE = "aws.states"
DETAIL_TYPE = "Step Functions Execution Status Change"
STATUSES = frozenset(ExecutionStatus.values)


class Unreadable(ValueError):
    """The message is not a Step Functions status change this code can apply."""


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # the cache changed
    DUPLICATE = "duplicate"  # the cache knew it already
    STALE = "stale"  # older than what the cache holds
    IGNORED = "ignored"  # an account or region no configured identity reads


@dataclass(frozen=True)
class StatusChange:
    arn: str
    state_machine_arn: str
    name: str
    status: str
    start_date: dt.datetime
    stop_date: dt.datetime | None
    # None with `*_included` False: left out for size (DescribeExecution has it).
    input: str | None
    input_included: bool
    output: str | None
    output_included: bool
    error: str | None
    cause: str | None
    redrive_count: int
    redrive_date: dt.datetime | None
    redrive_status: str
    redrive_status_reason: str
    version_arn: str
    alias_arn: str
    # The envelope's id: EventBridge gives every event one.
    event_id: str

    @property
    def closed(self) -> bool:
        return self.status not in OPEN_STATUSES

    @property
    def complete(self) -> bool:
        """Whether it says all that DescribeExecution would."""
        return self.input_included and (not self.closed or self.output_included)


def parse(body: str | bytes) -> StatusChange:
    """A message body (the EventBridge event, as EventBridge gives it to SQS)."""
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise Unreadable(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise Unreadable("not a JSON object")
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        raise Unreadable(
            f"not a Step Functions status change (source {str(event.get('source'))[:80]!r}, "
            f"detail-type {str(event.get('detail-type'))[:80]!r}): is the rule's pattern right?"
        )
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise Unreadable("the event has no detail object")
    arn = _text(detail, "executionArn", required=True)
    try:
        parsed = parse_execution_arn(arn)
        state_machine_arn = _text(detail, "stateMachineArn") or parsed.state_machine_arn
        parse_state_machine_arn(state_machine_arn)
    except NotAnArn as exc:
        raise Unreadable(str(exc)) from None
    if parsed.express:
        raise Unreadable("an Express execution (it has no history to read)")
    status = _text(detail, "status", required=True)
    if status not in STATUSES:
        raise Unreadable(f"unknown status {status[:40]!r}")
    redrives = detail.get("redriveCount") or 0
    if not isinstance(redrives, int) or isinstance(redrives, bool) or redrives < 0:
        raise Unreadable(f"redriveCount {str(redrives)[:40]!r} is not a count")
    start = _millis(detail, "startDate", required=True)
    assert start is not None
    return StatusChange(
        arn=arn,
        state_machine_arn=state_machine_arn,
        name=_text(detail, "name") or parsed.name,
        status=status,
        start_date=start,
        stop_date=_millis(detail, "stopDate"),
        input=_payload(detail, "input"),
        input_included=_included(detail, "inputDetails"),
        output=_payload(detail, "output"),
        output_included=_included(detail, "outputDetails"),
        error=_payload(detail, "error"),
        cause=_payload(detail, "cause"),
        redrive_count=redrives,
        redrive_date=_millis(detail, "redriveDate"),
        redrive_status=_text(detail, "redriveStatus")[:32],
        redrive_status_reason=_payload(detail, "redriveStatusReason") or "",
        version_arn=_text(detail, "stateMachineVersionArn")[:2048],
        alias_arn=_text(detail, "stateMachineAliasArn")[:2048],
        event_id=str(event.get("id") or "")[:128],
    )


def _text(detail: dict[str, Any], key: str, required: bool = False) -> str:
    value = detail.get(key)
    if value is None or value == "":
        if required:
            raise Unreadable(f"the detail has no {key}")
        return ""
    if not isinstance(value, str):
        raise Unreadable(f"{key} is not a string")
    return value


def _payload(detail: dict[str, Any], key: str) -> str | None:
    value = detail.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Unreadable(f"{key} is not a string")
    # PostgreSQL text cannot hold NUL; AWS strings can (as sync does).
    return value.replace("\x00", "\ufffd")


def _included(detail: dict[str, Any], key: str) -> bool:
    details = detail.get(key)
    if details is None:
        # Absent for a payload that is absent (a running execution's output).
        return True
    return isinstance(details, dict) and details.get("included") is not False


def _millis(detail: dict[str, Any], key: str, required: bool = False) -> dt.datetime | None:
    value = detail.get(key)
    if value is None:
        if required:
            raise Unreadable(f"the detail has no {key}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unreadable(f"{key} is not a time in milliseconds")
    try:
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise Unreadable(f"{key} {value!r} is out of range") from None


# --- Applying ----------------------------------------------------------------------


def _stage(status: str) -> int:
    # Within one attempt (one redriveCount): waiting for a redrive, running, closed.
    if status == ExecutionStatus.PENDING_REDRIVE:
        return 0
    if status in OPEN_STATUSES:
        return 1
    return 2


def order(change: StatusChange, status: str, redrive_count: int) -> int:
    """-1, 0 or 1: the change is older than, the same as, or newer than the cache."""
    ours = (change.redrive_count, _stage(change.status))
    cached = (redrive_count, _stage(status))
    return (ours > cached) - (ours < cached)


def apply(change: StatusChange, now: dt.datetime | None = None) -> Outcome:
    """Apply one status change to the cache (idempotent; never backwards)."""
    parsed = parse_execution_arn(change.arn)
    if not flows.is_scheduled(parsed.account, parsed.region) and not _known(change.arn):
        # Nobody reads that account or region here: its history could not be
        # fetched, and its pages would be a dead end.
        return Outcome.IGNORED
    now = now or timezone.now()
    sm = flows.state_machine_for(change.state_machine_arn)
    _busy(sm, change, now)
    for _ in range(5):
        row = (
            Execution.objects.filter(arn=change.arn)
            .values("pk", "status", "redrive_count", "input", "output")
            .first()
        )
        if row is None:
            if _insert(sm, change, now):
                return Outcome.APPLIED
            continue  # someone inserted it meanwhile: compare with theirs
        newer = order(change, row["status"], row["redrive_count"])
        if newer < 0:
            return Outcome.STALE
        if newer == 0:
            return _fill(row, change)
        # Compare-and-set against what we read: a listing or a description may
        # have moved it meanwhile; then read again and decide again.
        updated = Execution.objects.filter(
            pk=row["pk"], status=row["status"], redrive_count=row["redrive_count"]
        ).update(**_fields(change, now, reopened=change.redrive_count > row["redrive_count"]))
        if updated:
            if change.closed:
                # Whoever watches it hears of the end (a task once this commits).
                signals.execution_closed.send(sender=__name__, execution_pk=row["pk"])
            return Outcome.APPLIED
    raise RuntimeError(f"{change.arn} kept changing while an event was applied")


def _known(arn: str) -> bool:
    return Execution.objects.filter(arn=arn).exists()


def _busy(sm: StateMachine, change: StatusChange, now: dt.datetime) -> None:
    """An event is activity: its state machine is listed as a busy one (when
    events stop flowing, polling picks up where the activity is)."""
    until = plan.busy_until(now)
    half = until - (until - now) / 2
    # One write per state machine every half window, not one per event.
    StateMachine.objects.filter(
        Q(busy_until__isnull=True) | Q(busy_until__lt=half), pk=sm.pk
    ).update(busy_until=until)


def _fields(change: StatusChange, now: dt.datetime, reopened: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": change.name[:256],
        "status": change.status,
        "start_date": change.start_date,
        "stop_date": change.stop_date,
        "redrive_count": change.redrive_count,
        "redrive_date": change.redrive_date,
        "redrive_status": change.redrive_status,
        "redrive_status_reason": change.redrive_status_reason,
        "state_machine_version_arn": change.version_arn,
        "state_machine_alias_arn": change.alias_arn,
        "error": change.error,
        "cause": change.cause,
        # The history's new events: fetched by the scheduler, at the budget's pace.
        "sync_due_at": now,
        "history_complete": False,
    }
    if change.input_included:
        fields["input"] = change.input
    if change.output_included:
        fields["output"] = change.output
    if change.complete:
        fields["needs_describe"] = False
        fields["described_at"] = now
    else:
        fields["needs_describe"] = True
    if reopened:
        # A new attempt: what the last one ended with no longer holds.
        fields.setdefault("output", None)
    return fields


def _insert(sm: StateMachine, change: StatusChange, now: dt.datetime) -> bool:
    """Insert the execution; False when someone else inserted it first."""
    fields = _fields(change, now, reopened=False)
    del fields["history_complete"]
    ex, created = Execution.objects.get_or_create(
        arn=change.arn, defaults={"state_machine": sm, **fields}
    )
    if created and change.closed:
        signals.execution_closed.send(sender=__name__, execution_pk=ex.pk)
    return created


def _fill(row: Mapping[str, Any], change: StatusChange) -> Outcome:
    """The cache knew this change; it may still lack a payload the event has
    (a listing tells status, not input)."""
    missing: dict[str, Any] = {}
    if row["input"] is None and change.input_included and change.input is not None:
        missing["input"] = change.input
    if row["output"] is None and change.closed and change.output_included and change.output:
        missing["output"] = change.output
    if missing:
        Execution.objects.filter(pk=row["pk"], status=change.status).update(**missing)
    return Outcome.DUPLICATE
