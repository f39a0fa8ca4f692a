"""AWS answers -> cache rows: the executions a listing shows, a
DescribeExecution, history events. Idempotent upserts: new rows are inserted
with ON CONFLICT DO NOTHING, changed rows updated by compare-and-set on what
was read before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.utils import timezone

from executions import aws, signals
from executions.history.progress import failure_point
from executions.models import OPEN_STATUSES, Execution, HistoryEvent, StateMachine
from executions.sync.runs import Stats

# SQLite's limit on bound parameters, with room to spare.
IN_CHUNK = 500
# With events on, a change a listing finds counts as missed by the events
# when it happened longer ago than this (EventBridge delivers within seconds).
EVENTS_GRACE = dt.timedelta(seconds=60)


def upsert_listed(sm: StateMachine, items: list[dict[str, Any]], stats: Stats) -> None:
    now = timezone.now()
    for chunk in in_chunks(items, IN_CHUNK):
        arns = [item["executionArn"] for item in chunk]
        known = {
            arn: (pk, status, redrive_count)
            for pk, arn, status, redrive_count in Execution.objects.filter(
                arn__in=arns
            ).values_list("pk", "arn", "status", "redrive_count")
        }
        new_rows = []
        for item in chunk:
            arn = item["executionArn"]
            if arn not in known:
                new_rows.append(
                    Execution(
                        arn=arn,
                        name=item["name"],
                        state_machine=sm,
                        status=item["status"],
                        start_date=aws.utc(item["startDate"]),
                        stop_date=aws.utc(item.get("stopDate")),
                        redrive_count=item.get("redriveCount", 0),
                        redrive_date=aws.utc(item.get("redriveDate")),
                        map_run_arn=item.get("mapRunArn", ""),
                        state_machine_version_arn=item.get("stateMachineVersionArn", ""),
                        state_machine_alias_arn=item.get("stateMachineAliasArn", ""),
                        needs_describe=True,
                        sync_due_at=now,
                    )
                )
                continue
            pk, status, redrive_count = known[arn]
            change = _listed_change(item, status, redrive_count)
            if change is None:
                continue
            # Compare-and-set: only if nobody changed the row since we read it.
            if Execution.objects.filter(pk=pk, status=status, redrive_count=redrive_count).update(
                **change, sync_due_at=now
            ):
                stats.executions_changed += 1
                if change.get("needs_describe"):
                    stats.flagged.append(arn)
                if stats.reconciling:
                    changed_at = change.get("redrive_date") or change.get("stop_date")
                    _missed(stats, arn, changed_at, now)
        if new_rows:
            Execution.objects.bulk_create(new_rows, ignore_conflicts=True)
            stats.executions_new += len(new_rows)
            stats.flagged.extend(row.arn for row in new_rows)
            if stats.reconciling:
                for row in new_rows:
                    _missed(stats, row.arn, row.start_date, now)


def _missed(stats: Stats, arn: str, changed_at: dt.datetime | None, now: dt.datetime) -> None:
    if changed_at is not None and now - changed_at > EVENTS_GRACE:
        stats.missed_events += 1
        stats.missed_example = stats.missed_example or arn


def _listed_change(item: dict[str, Any], status: str, redrive_count: int) -> dict[str, Any] | None:
    """What a listing tells us that the cache does not know yet, if anything.

    A listing can be older than what a concurrent DescribeExecution stored, so
    only moves AWS can make count: open -> closed, or a higher redrive count.
    """
    listed_status = item["status"]
    listed_redrives = item.get("redriveCount", 0)
    if listed_redrives > redrive_count:
        return {
            "status": listed_status,
            "redrive_count": listed_redrives,
            "redrive_date": aws.utc(item.get("redriveDate")),
            "stop_date": aws.utc(item.get("stopDate")),
            "needs_describe": True,
            "history_complete": False,
        }
    if listed_redrives < redrive_count or listed_status == status:
        return None
    if status in OPEN_STATUSES and listed_status not in OPEN_STATUSES:
        return {
            "status": listed_status,
            "stop_date": aws.utc(item.get("stopDate")),
            "needs_describe": True,
        }
    if status in OPEN_STATUSES and listed_status in OPEN_STATUSES:
        return {"status": listed_status}
    return None


def store_description(ex: Execution, d: dict[str, Any]) -> bool:
    fields = description_fields(ex, d)
    # Compare-and-set against what we read before asking AWS: if a listing
    # changed the row meanwhile, our answer may be older than its news.
    if not Execution.objects.filter(
        pk=ex.pk, status=ex.status, redrive_count=ex.redrive_count
    ).update(**fields):
        return False
    for name, value in fields.items():
        setattr(ex, name, value)
    if ex.status not in OPEN_STATUSES:
        # Whoever watches it hears of the end: a task once this commits, never a wait here.
        signals.execution_closed.send(sender=__name__, execution_pk=ex.pk)
    return True


def description_fields(ex: Execution, d: dict[str, Any]) -> dict[str, Any]:
    """The row's fields from a DescribeExecution of it (as it was when read: `ex`)."""
    redrives = d.get("redriveCount", 0)
    fields: dict[str, Any] = {
        "name": d.get("name", ex.name),
        "status": d["status"],
        "start_date": aws.utc(d["startDate"]),
        "stop_date": aws.utc(d.get("stopDate")),
        "input": without_nul(d.get("input")),
        "output": without_nul(d.get("output")),
        "error": without_nul(d.get("error")),
        "cause": without_nul(d.get("cause")),
        "redrive_count": redrives,
        "redrive_date": aws.utc(d.get("redriveDate")),
        "redrive_status": d.get("redriveStatus", ""),
        "redrive_status_reason": without_nul(d.get("redriveStatusReason", "")) or "",
        "map_run_arn": d.get("mapRunArn", ""),
        "state_machine_version_arn": d.get("stateMachineVersionArn", ""),
        "state_machine_alias_arn": d.get("stateMachineAliasArn", ""),
        "needs_describe": False,
        "described_at": timezone.now(),
    }
    if redrives > ex.redrive_count or d["status"] in OPEN_STATUSES:
        fields["history_complete"] = False
    return fields


def completion_fields(ex: Execution) -> dict[str, Any]:
    """The row's fields once a closed execution's final event is stored (the
    sync writes them in its one UPDATE: sync/execution_write.py)."""
    # Where a failed, timed-out or aborted one went wrong, for the failures
    # page; read once, now that its history is whole ("" once it succeeds).
    point = failure_point(ex)
    failed_state = point.state_name if point else ""
    return {"history_complete": True, "failed_state": failed_state}


def stored_event(execution_pk: int, event: dict[str, Any]) -> HistoryEvent:
    details_key, details = "", None
    for key, value in event.items():
        if key.endswith("EventDetails"):
            details_key, details = key, json_without_nul(value)
            break
    return HistoryEvent(
        execution_id=execution_pk,
        event_id=event["id"],
        previous_event_id=event.get("previousEventId", 0),
        timestamp=aws.utc(event["timestamp"]),
        type=event["type"],
        details_key=details_key,
        details=details,
    )


def in_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def without_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; AWS strings can.
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")


def json_without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(k): json_without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_without_nul(v) for v in value]
    if isinstance(value, dt.datetime):
        return aws.utc(value).isoformat()
    return value
