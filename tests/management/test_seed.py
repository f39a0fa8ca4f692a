"""`manage.py seed`: realistic rows, fast, and only when asked to replace them."""

from __future__ import annotations

import datetime as dt
import io
import json
import random

import pytest
from django.core.management import call_command
from django.utils import timezone

from executions.history import DETAILS_KEY
from executions.models import Execution, HistoryEvent, StateMachine, StopRequest, SyncRun
from executions.seed import data

# The command commits and, on PostgreSQL, runs VACUUM: outside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed", *args, stdout=out)
    return out.getvalue()


def test_it_fills_every_table_with_a_year_of_executions() -> None:
    output = seed("--executions", "500", "--with-history", "50", "--running", "20")
    assert "rows/s" in output
    assert StateMachine.objects.count() == len(data.MACHINES)
    assert Execution.objects.count() == 500
    statuses = set(Execution.objects.values_list("status", flat=True))
    assert {"SUCCEEDED", "RUNNING"} <= statuses
    assert Execution.objects.filter(status="RUNNING").count() >= 10
    assert not Execution.objects.filter(status="RUNNING", stop_date__isnull=False).exists()
    assert not Execution.objects.filter(status="SUCCEEDED", output__isnull=True).exists()
    first = Execution.objects.order_by("start_date").first()
    assert first is not None
    assert timezone.now() - first.start_date > dt.timedelta(days=300)
    assert SyncRun.objects.filter(ok=True).exists()
    assert StopRequest.objects.count() == Execution.objects.filter(error="Stopped.Manually").count()


def test_histories_are_stored_with_their_bookkeeping() -> None:
    seed("--executions", "300", "--with-history", "40")
    with_events = Execution.objects.filter(last_event_id__gt=0)
    assert with_events.exists()
    for ex in with_events[:20]:
        events = list(HistoryEvent.objects.filter(execution=ex).order_by("event_id"))
        assert [e.event_id for e in events] == list(range(1, len(events) + 1))
        assert ex.last_event_id == len(events)
        assert events[0].type == "ExecutionStarted"
        assert ex.history_complete == (ex.status != "RUNNING")
        for e in events:
            assert e.type in DETAILS_KEY
            assert e.details_key == (DETAILS_KEY[e.type] if e.details is not None else "")
    # The rest are as the sync leaves an execution whose history it has not read.
    assert not Execution.objects.filter(last_event_id=0, history_complete=True).exists()


def test_a_second_run_does_nothing_unless_asked_to_reset() -> None:
    seed("--executions", "50")
    names = set(Execution.objects.values_list("name", flat=True))
    assert "nothing done" in seed("--executions", "80")
    assert Execution.objects.count() == 50
    seed("--reset", "--executions", "80", "--seed", "2")
    assert Execution.objects.count() == 80
    assert set(Execution.objects.values_list("name", flat=True)) != names
    # New rows get the next ids.
    sm = StateMachine.objects.first()
    assert sm is not None
    row = Execution.objects.create(
        arn=f"{sm.arn.replace(':stateMachine:', ':execution:')}:new",
        name="new",
        state_machine=sm,
        status="RUNNING",
        start_date=timezone.now(),
    )
    assert row.pk == 81


def test_the_big_history_has_25000_events_and_payloads_up_to_256_kib() -> None:
    rows, seconds = data.big_history_rows(1, timezone.now(), random.Random(1))
    assert 24_900 <= len(rows) <= 25_000
    assert [r[1] for r in rows] == list(range(1, len(rows) + 1))
    sizes = []
    for _, _, _, _, event_type, key, details in rows:
        assert key == DETAILS_KEY[event_type] or (details is None and key == "")
        if details is not None:
            member = json.loads(details)
            sizes += [len(v) for k, v in member.items() if k in ("input", "output")]
    assert max(sizes) <= data.MAX_PAYLOAD
    assert max(sizes) > 250_000
    assert seconds > 0


def test_execution_names_are_unique_per_state_machine() -> None:
    plan = data.Plan(executions=5000, with_history=0, now=timezone.now(), days=3)
    ids = {m.name: i for i, m in enumerate(data.MACHINES, start=1)}
    arns = [row[1] for row in data.execution_rows(plan, ids, random.Random(1))]
    assert len(arns) == len(set(arns)) == 5000
