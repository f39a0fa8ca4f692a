"""Cached rows made directly, for view tests that need no AWS round trip.

Tests of behaviour against AWS use the `fake_aws` fixture and the sync
instead (see test_sync.py); these factories are for pages and edge cases
(hostile content, huge payloads, every event type, many rows).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from django.utils import timezone

from executions.models import Execution, HistoryEvent, StateMachine

ACCOUNT = "123456789012"
REGION = "us-east-1"
_counter = itertools.count(1)


def state_machine_row(name: str = "order-pipeline", **fields: Any) -> StateMachine:
    """`account` and `region` (default ACCOUNT, REGION) go into its ARN too, and
    into the ARNs of its executions."""
    account = fields.setdefault("account", ACCOUNT)
    region = fields.setdefault("region", REGION)
    arn = f"arn:aws:states:{region}:{account}:stateMachine:{name}"
    defaults: dict[str, Any] = {
        "name": name,
        "definition": '{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}',
        "described_at": timezone.now(),
    }
    defaults.update(fields)
    sm, _ = StateMachine.objects.update_or_create(arn=arn, defaults=defaults)
    return sm


def execution_row(
    state_machine: StateMachine | None = None,
    name: str | None = None,
    status: str = "SUCCEEDED",
    started: dt.datetime | None = None,
    **fields: Any,
) -> Execution:
    sm = state_machine or state_machine_row()
    name = name or f"run-{next(_counter)}"
    started = started or timezone.now() - dt.timedelta(minutes=5)
    defaults: dict[str, Any] = {
        "name": name,
        "state_machine": sm,
        "status": status,
        "start_date": started,
        "stop_date": None
        if status in ("RUNNING", "PENDING_REDRIVE")
        else started + dt.timedelta(seconds=42),
        "input": '{"order": 1}',
        "output": '{"ok": true}' if status == "SUCCEEDED" else None,
        "needs_describe": False,
        "described_at": timezone.now(),
        "synced_at": timezone.now(),
        "history_complete": status not in ("RUNNING", "PENDING_REDRIVE"),
    }
    defaults.update(fields)
    return Execution.objects.create(
        arn=f"arn:aws:states:{sm.region}:{sm.account}:execution:{sm.name}:{name}", **defaults
    )


def events(
    execution: Execution, items: list[tuple[str, str, dict[str, Any] | None]], *, step: float = 1.0
) -> list[HistoryEvent]:
    """Store events given as (type, details key, details), ids from 1, one `step` second apart."""
    rows = []
    for i, (event_type, key, details) in enumerate(items, start=1):
        rows.append(
            HistoryEvent(
                execution=execution,
                event_id=i,
                previous_event_id=i - 1,
                timestamp=execution.start_date + dt.timedelta(seconds=step * (i - 1)),
                type=event_type,
                details_key=key,
                details=details,
            )
        )
    HistoryEvent.objects.bulk_create(rows)
    Execution.objects.filter(pk=execution.pk).update(last_event_id=len(rows))
    execution.last_event_id = len(rows)
    return rows
