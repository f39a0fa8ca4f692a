"""One execution's sync, written at once: what its DescribeExecution and its
history pages said, stored in one transaction at the end, its new events
(ON CONFLICT DO NOTHING) and ONE UPDATE of its row.

The UPDATE is a compare-and-set on what was read before the calls (status,
redrive count): if a listing, a stop or a redrive changed the row meanwhile,
nothing of the row is written and the caller describes it again. The events
are AWS's facts, kept whatever happens; only `last_event_id` then moves.

Whoever flags the row while the calls are out (a listing that saw it leave the
running set, a stop, a page someone looks at) also moves `sync_due_at`; the
UPDATE only clears `needs_describe` and sets the next due time while
`sync_due_at` is still what was read, else it leaves the flag and makes the
execution due at once.

Every field the sync learns about an execution goes into `fields`, the one
dict of that UPDATE.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from executions.models import Execution, HistoryEvent
from executions.sync import map_runs
from executions.sync.backoff import next_due
from executions.sync.rows import completion_fields, description_fields, stored_event

# History events inserted per statement (SQLite's limit on bound parameters).
EVENT_BATCH = 500


class ExecutionWrite:
    """What one sync of `ex` learned, applied to `ex` in memory as it comes and
    to its row by `store()`."""

    def __init__(self, ex: Execution) -> None:
        self.ex = ex
        # What the compare-and-set compares with.
        self.status = ex.status
        self.redrive_count = ex.redrive_count
        self.due = ex.sync_due_at
        self.fields: dict[str, Any] = {}
        self.described = False
        # Its final event is among what is stored: the history is whole.
        self.complete = False
        # The last page of new events, held for the transaction; earlier pages
        # of a long history are stored as the next one comes (memory stays
        # bounded by two pages), which the upserts make safe.
        self.held: list[dict[str, Any]] = []
        self.newest_id = 0

    def set(self, **fields: Any) -> None:
        self.fields.update(fields)
        for name, value in fields.items():
            setattr(self.ex, name, value)

    def describe(self, d: dict[str, Any]) -> None:
        self.set(**description_fields(self.ex, d))
        self.described = True

    def add_events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self._insert(self.held)
        self.held = events
        for event in events:
            self.newest_id = max(self.newest_id, event["id"])

    def _insert(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), EVENT_BATCH):
            chunk = [
                stored_event(self.ex.pk, event) for event in events[start : start + EVENT_BATCH]
            ]
            if connection.vendor == "postgresql":
                _insert_as_json(chunk)
            else:
                HistoryEvent.objects.bulk_create(chunk, ignore_conflicts=True)
        map_runs.note_map_runs(self.ex.pk, events)

    def store(self, now: dt.datetime | None = None) -> bool:
        """The held events and the row, in one transaction. False when the row
        changed since it was read (only the watermark of the stored events
        moved then)."""
        now = now or timezone.now()
        ex = self.ex
        with transaction.atomic():
            _commit_without_waiting_for_the_disk()
            self._insert(self.held)
            if self.complete:
                # Read from the events just inserted (sync/rows.py).
                self.set(**completion_fields(ex))
            written = Execution.objects.filter(
                pk=ex.pk, status=self.status, redrive_count=self.redrive_count
            ).update(**self._row(now))
            if not written and self.newest_id:
                # The events are stored whatever the row says now.
                Execution.objects.filter(pk=ex.pk).update(
                    last_event_id=Greatest(F("last_event_id"), Value(self.newest_id))
                )
        self.held = []
        if written:
            ex.last_event_id = max(ex.last_event_id, self.newest_id)
            ex.synced_at = now
            ex.sync_error, ex.sync_failures = "", 0
        return bool(written)

    def _row(self, now: dt.datetime) -> dict[str, Any]:
        untouched = Q(sync_due_at=self.due) if self.due is not None else Q(sync_due_at__isnull=True)
        row: dict[str, Any] = {
            **self.fields,
            "synced_at": now,
            "sync_error": "",
            "sync_failures": 0,
            # Flagged or made due while we worked: due again now.
            "sync_due_at": Case(
                When(untouched, then=Value(next_due(self.ex))),
                default=Value(now),
                output_field=DateTimeField(),
            ),
        }
        if self.described:
            row["needs_describe"] = Case(
                When(untouched, then=Value(False)), default=F("needs_describe")
            )
        if self.newest_id:
            row["last_event_id"] = Greatest(F("last_event_id"), Value(self.newest_id))
        return row


# HistoryEvent's table and columns (tests/sync/test_execution_write.py checks
# them against the model), the rows as JSON records.
INSERT_EVENTS = (
    'INSERT INTO "executions_historyevent" ("execution_id", "event_id", "previous_event_id",'
    ' "timestamp", "type", "details_key", "details")'
    ' SELECT "execution_id", "event_id", "previous_event_id", "timestamp", "type",'
    ' "details_key", "details"'
    ' FROM jsonb_to_recordset(%s::jsonb) AS r("execution_id" bigint, "event_id" integer,'
    ' "previous_event_id" integer, "timestamp" timestamptz, "type" text, "details_key" text,'
    ' "details" jsonb) ON CONFLICT DO NOTHING'
)


def _insert_as_json(rows: list[HistoryEvent]) -> None:
    """PostgreSQL: the events' INSERT ... ON CONFLICT DO NOTHING, with the rows
    sent as one JSON array that the server unpacks (jsonb_to_recordset).

    What bulk_create does, for a third of its time in the worker: it builds
    an array of parameters per column and psycopg quotes every element of
    each in Python; one JSON text is encoded by the json module's C encoder
    and quoted once. The rows are the same (HistoryEvent's columns; the
    details as the JSONField writes them, a JSON null as SQL NULL)."""
    data = json.dumps(
        [
            {
                "execution_id": row.execution_id,
                "event_id": row.event_id,
                "previous_event_id": row.previous_event_id,
                "timestamp": row.timestamp.isoformat(),
                "type": row.type,
                "details_key": row.details_key,
                "details": row.details,
            }
            for row in rows
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(INSERT_EVENTS, [data])


def _commit_without_waiting_for_the_disk() -> None:
    """PostgreSQL: this transaction's COMMIT does not wait for its WAL to reach
    the disk (synchronous_commit off, for this transaction only).

    What the sync writes is a copy of AWS, and its writes are idempotent: a
    database crash may lose the last fraction of a second of them (whole
    transactions, never half of one; the rows stay as they were, due, and the
    next sync writes them again), and cannot make the cache inconsistent: a
    later synchronous commit (an audit row, a stop) flushes the WAL before it,
    ours included. Waiting for the disk was most of a backfill's database
    time per execution.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
