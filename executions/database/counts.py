"""Counts of executions per state machine and status, kept by the database.

The state machine pages show counts per status over every cached execution,
the executions started per hour and the failure rate of the last day. Counted
from the executions table, they cost a scan that grows with the cache (a
second or more at 10,000,000 executions); read from these counts, a few
hundred rows whatever its size.

Who keeps them: triggers on the executions table, in the transaction of the
statement that inserts, updates or deletes executions, whichever code sends it
(the sync's upserts and single-row updates, the events consumer, a lookup, a
redrive, `manage.py forget`, the admin). Code that writes executions cannot
forget them, and a write that rolls back takes its change to the counts with it.

The triggers append to `executions_executioncountdelta` (+1 for the row as it
is after the statement, -1 for the row as it was before; a row whose state
machine, status, start and stop did not change adds nothing). Appending takes
no lock that another transaction waits for: two syncs that close executions
of the same state machine at once never queue on one counter row, and cannot
deadlock on two. `compact()` (beat, every minute) folds the deltas into
`executions_executioncount`; readers add both tables, so a count is exact
before and after it.

Rows, by `kind`:
- "total": every execution, per state machine and status (`hour` is TOTAL_HOUR);
- "started": per hour the execution started (the activity chart);
- "closed": ended executions per hour they ended (the failure rate).
Hourly rows older than HOURS_KEPT are dropped when compacting.

PostgreSQL: statement-level triggers with transition tables (one INSERT of
grouped deltas per statement, however many rows it wrote). SQLite: row
triggers (its writers take turns anyway).

TRUNCATE fires no trigger: whatever truncates the executions table truncates
both count tables with it (the seeder's reset, the benchmarks).

May import Django only: nothing of executions (the tables are named here).
"""

# Every name in this module's SQL is one of its constants; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

EXECUTIONS = "executions_execution"
COUNTS = "executions_executioncount"
DELTAS = "executions_executioncountdelta"
TOTAL_HOUR = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
HOURS_KEPT = 48
OPEN = ("RUNNING", "PENDING_REDRIVE")
_COLUMNS = "state_machine_id, kind, status, hour, n"
_SUMMED = "state_machine_id, kind, status, hour, SUM(n)"
_TRIGGERS = ("executions_count_insert", "executions_count_update", "executions_count_delete")


def _hour(vendor: str, column: str, *, with_params: bool = False) -> str:
    if vendor == "postgresql":
        return f"date_trunc('hour', {column}, 'UTC')"
    # Django keeps SQLite datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC.
    # In a statement with parameters a literal % is written %%.
    pattern = "%Y-%m-%d %H:00:00".replace("%", "%%" if with_params else "%")
    return f"strftime('{pattern}', {column})"


def _total_hour(vendor: str) -> str:
    if vendor == "postgresql":
        return "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
    return "'1970-01-01 00:00:00'"


def _closed(prefix: str) -> str:
    return f"{prefix}stop_date IS NOT NULL AND {prefix}status NOT IN {OPEN!r}"


def _expanded(vendor: str, prefix: str, source: str, sign: int) -> str:
    """The count rows of some executions: `prefix` is how a column is reached
    ("NEW." in a row trigger), `source` the FROM clause ("" in a row trigger)."""
    p = prefix
    where = f" WHERE {_closed(p)}"
    return (
        f"SELECT {p}state_machine_id, 'total', {p}status, {_total_hour(vendor)}, {sign}{source} "
        f"UNION ALL SELECT {p}state_machine_id, 'started', {p}status, "
        f"{_hour(vendor, p + 'start_date')}, {sign}{source} "
        f"UNION ALL SELECT {p}state_machine_id, 'closed', {p}status, "
        f"{_hour(vendor, p + 'stop_date')}, {sign}{source}{where}"
    )


def _postgresql_triggers() -> list[str]:
    changes = {
        "INSERT": _expanded("postgresql", "", " FROM new_rows", 1),
        "DELETE": _expanded("postgresql", "", " FROM old_rows", -1),
        "UPDATE": _expanded("postgresql", "", " FROM new_rows", 1)
        + " UNION ALL "
        + _expanded("postgresql", "", " FROM old_rows", -1),
    }
    branches = "\n".join(
        f"  {'IF' if i == 0 else 'ELSIF'} TG_OP = '{op}' THEN\n"
        f"    INSERT INTO {DELTAS} ({_COLUMNS})\n"
        f"    SELECT state_machine_id, kind, status, hour, SUM(n) FROM ({sql}) "
        "AS d (state_machine_id, kind, status, hour, n)\n"
        "    GROUP BY state_machine_id, kind, status, hour HAVING SUM(n) <> 0;"
        for i, (op, sql) in enumerate(changes.items())
    )
    function = (
        "CREATE OR REPLACE FUNCTION executions_count_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$\nBEGIN\n"
        f"{branches}\n  END IF;\n  RETURN NULL;\nEND\n$$"
    )
    referencing = {
        "INSERT": "NEW TABLE AS new_rows",
        "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "DELETE": "OLD TABLE AS old_rows",
    }
    return [function] + [
        f"CREATE TRIGGER {name} AFTER {op} ON {EXECUTIONS} REFERENCING {referencing[op]} "
        "FOR EACH STATEMENT EXECUTE FUNCTION executions_count_change()"
        for name, op in zip(_TRIGGERS, ("INSERT", "UPDATE", "DELETE"), strict=True)
    ]


def _sqlite_triggers() -> list[str]:
    new = f"INSERT INTO {DELTAS} ({_COLUMNS}) " + _expanded("sqlite", "NEW.", "", 1) + ";"
    old = f"INSERT INTO {DELTAS} ({_COLUMNS}) " + _expanded("sqlite", "OLD.", "", -1) + ";"
    changed = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c}" for c in ("state_machine_id", "status", "start_date", "stop_date")
    )
    insert, update, delete = _TRIGGERS
    return [
        f"CREATE TRIGGER {insert} AFTER INSERT ON {EXECUTIONS} BEGIN {new} END",
        f"CREATE TRIGGER {update} AFTER UPDATE OF state_machine_id, status, start_date, "
        f"stop_date ON {EXECUTIONS} WHEN {changed} BEGIN {old} {new} END",
        f"CREATE TRIGGER {delete} AFTER DELETE ON {EXECUTIONS} BEGIN {old} END",
    ]


def install(connection: BaseDatabaseWrapper) -> None:
    """Create the triggers (the migration does, once)."""
    statements = _postgresql_triggers() if connection.vendor == "postgresql" else _sqlite_triggers()
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def uninstall(connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for name in _TRIGGERS:
            on = f" ON {EXECUTIONS}" if connection.vendor == "postgresql" else ""
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}{on}")
        if connection.vendor == "postgresql":
            cursor.execute("DROP FUNCTION IF EXISTS executions_count_change()")


@contextmanager
def paused(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """The triggers off while the seeder writes millions of rows (it then
    calls rebuild()). Inside the caller's transaction a failure's rollback
    puts them back; outside one (the seeder's parallel COPY, whose other
    connections must not fire them either) they are put back here."""
    if connection.vendor == "postgresql":

        def turn(state: str) -> None:
            with connection.cursor() as cursor:
                for name in _TRIGGERS:
                    cursor.execute(f"ALTER TABLE {EXECUTIONS} {state} TRIGGER {name}")

        turn("DISABLE")
        try:
            yield
        except BaseException:
            if not connection.in_atomic_block:
                turn("ENABLE")
            raise
        turn("ENABLE")
    else:
        uninstall(connection)
        yield
        install(connection)


def _keep_from(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(
        hours=HOURS_KEPT
    )


def _param(connection: BaseDatabaseWrapper, value: dt.datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def rebuild(connection: BaseDatabaseWrapper, now: dt.datetime) -> int:
    """Count everything again from the executions table (the migration, the
    seeder). Returns the count rows written."""
    vendor = connection.vendor
    since = _param(connection, _keep_from(now))
    grouped = "GROUP BY state_machine_id, status"
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {DELTAS}")
        cursor.execute(f"DELETE FROM {COUNTS}")
        cursor.execute(
            f"INSERT INTO {COUNTS} ({_COLUMNS}) SELECT state_machine_id, 'total', status, "
            f"{_total_hour(vendor)}, COUNT(*) FROM {EXECUTIONS} {grouped}"
        )
        written = int(cursor.rowcount)
        for kind, column, where in (
            ("started", "start_date", ""),
            ("closed", "stop_date", f" AND {_closed('')}"),
        ):
            hour = _hour(vendor, column, with_params=True)
            cursor.execute(
                f"INSERT INTO {COUNTS} ({_COLUMNS}) SELECT state_machine_id, '{kind}', status, "
                f"{hour}, COUNT(*) FROM {EXECUTIONS} WHERE {column} >= %s{where} "
                f"{grouped}, {hour}",
                [since],
            )
            written += int(cursor.rowcount)
    return written


def compact(connection: BaseDatabaseWrapper, now: dt.datetime) -> int:
    """Fold the deltas into the counts, and drop hourly counts older than
    HOURS_KEPT. Safe to run twice at once. Returns the deltas folded."""
    since = _param(connection, _keep_from(now))
    key = "kind, state_machine_id, hour, status"
    recent = "kind = 'total' OR hour >= %s"
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement: exactly the deltas it deletes are added (a delta
            # committed meanwhile waits for the next run). Upserted in key
            # order, so two runs at once wait for each other, never deadlock.
            cursor.execute(
                f"WITH moved AS (DELETE FROM {DELTAS} RETURNING {_COLUMNS}), "
                "folded AS (INSERT INTO "
                f"{COUNTS} ({_COLUMNS}) SELECT {_SUMMED} FROM moved "
                f"WHERE {recent} GROUP BY {key} ORDER BY {key} "
                f"ON CONFLICT ({key}) DO UPDATE SET n = {COUNTS}.n + EXCLUDED.n) "
                "SELECT COUNT(*) FROM moved",
                [since],
            )
            row = cursor.fetchone()
            folded = int(row[0]) if row else 0
        else:
            # The transaction holds SQLite's one write lock from its start:
            # no delta can arrive between the two statements.
            cursor.execute(f"SELECT COUNT(*) FROM {DELTAS}")
            row = cursor.fetchone()
            folded = int(row[0]) if row else 0
            cursor.execute(
                f"INSERT INTO {COUNTS} ({_COLUMNS}) "
                f"SELECT {_SUMMED} FROM {DELTAS} "
                f"WHERE {recent} GROUP BY {key} "
                f"ON CONFLICT ({key}) DO UPDATE SET n = n + excluded.n",
                [since],
            )
            cursor.execute(f"DELETE FROM {DELTAS}")
        cursor.execute(f"DELETE FROM {COUNTS} WHERE kind <> 'total' AND hour < %s", [since])
    return folded
