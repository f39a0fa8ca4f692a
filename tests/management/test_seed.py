"""`manage.py seed`: realistic rows, fast, and only when asked to replace them."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DataError, connection
from django.utils import timezone

from executions.history import DETAILS_KEY
from executions.models import (
    Execution,
    ExecutionCountDelta,
    HistoryEvent,
    StateMachine,
    StopRequest,
    SyncRun,
)
from executions.seed import data, load
from tests.database.test_counts import assert_counts_equal_the_table
from tests.support.helpers import wait_for

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


def _what_was_seeded() -> tuple[list[Any], int, set[str], set[str]]:
    rows = list(
        Execution.objects.order_by("pk").values_list(
            "pk", "arn", "status", "start_date", "stop_date", "input", "last_event_id"
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN (%s, %s)",
            [Execution._meta.db_table, HistoryEvent._meta.db_table],
        )
        indexes = {name for (name,) in cursor.fetchall()}
        cursor.execute(
            "SELECT tgname || ':' || tgenabled::text FROM pg_trigger "
            "WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            [Execution._meta.db_table],
        )
        triggers = {t for (t,) in cursor.fetchall()}
    return rows, HistoryEvent.objects.count(), indexes, triggers


def test_over_several_connections_it_writes_the_same_rows_and_puts_everything_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "postgresql":
        with pytest.raises(CommandError, match="--jobs needs PostgreSQL"):
            seed("--executions", "100", "--jobs", "2")
        return
    # Small chunks: every connection gets several.
    monkeypatch.setattr(load, "COPY_CHUNK", 97)
    fixed = ["--executions", "2000", "--with-history", "60", "--running", "30"]
    at = timezone.now().replace(microsecond=0)
    with time_machine.travel(at, tick=False):
        seed("--reset", *fixed)
    one = _what_was_seeded()
    with time_machine.travel(at, tick=False):
        seed("--reset", *fixed, "--jobs", "3")
    three = _what_was_seeded()

    assert len(three[0]) == 2000
    assert three == one
    assert {"exec_search_idx", "exec_name_trgm_idx"} <= three[2]
    assert all(t.endswith(":O") for t in three[3]), three[3]
    # The counts the pages read equal the table, and the triggers count again.
    assert not ExecutionCountDelta.objects.exists()
    assert_counts_equal_the_table()
    Execution.objects.filter(status="RUNNING").update(status="SUCCEEDED", stop_date=timezone.now())
    assert ExecutionCountDelta.objects.exists()


def test_a_failure_in_one_connection_stops_them_all_and_puts_the_indexes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("--jobs is PostgreSQL's")
    seed("--reset", "--executions", "300")
    before = _what_was_seeded()
    monkeypatch.setattr(load, "COPY_CHUNK", 50)
    real_rows = data.execution_rows

    def one_bad_row(*args: Any) -> Iterator[tuple[Any, ...]]:
        for i, row in enumerate(real_rows(*args)):
            # A status longer than the column: PostgreSQL refuses that chunk.
            yield row if i != 420 else tuple("X" * 500 if v == "SUCCEEDED" else v for v in row)

    monkeypatch.setattr(data, "execution_rows", one_bad_row)
    with pytest.raises(DataError):
        seed("--reset", "--executions", "1000", "--jobs", "2")
    after = _what_was_seeded()
    # Not one transaction: the reset happened, and no part of the COPY stayed.
    assert after[0] == []
    assert after[2] == before[2]
    assert after[3] == before[3]


def test_a_parallel_seed_stopped_half_way_puts_the_indexes_and_triggers_back() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("--jobs is PostgreSQL's")
    seed("--reset", "--executions", "100")
    before = _what_was_seeded()
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    seeder = subprocess.Popen(
        [sys.executable, "manage.py", "seed", "--reset", "--executions", "3000000", "--jobs", "2"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def copying() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM pg_stat_progress_copy "
                    "WHERE datname = current_database() AND tuples_processed > 0"
                )
                return cursor.fetchone()[0] == 2

        wait_for(copying, timeout=120)
        seeder.send_signal(signal.SIGTERM)
        _, stderr = seeder.communicate(timeout=120)
    finally:
        seeder.kill()
    assert seeder.returncode == 128 + signal.SIGTERM, stderr
    after = _what_was_seeded()
    # The reset was committed; no part of the COPY was.
    assert after[0] == []
    assert after[2] == before[2]
    assert after[3] == before[3]
