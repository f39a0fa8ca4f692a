"""Writing the seed rows fast: COPY on PostgreSQL (batched INSERTs
elsewhere), the secondary indexes and constraints dropped first when the
tables start empty and rebuilt once at the end, then VACUUM ANALYZE. What
the rows hold is in data.py.

With `jobs` > 1 (PostgreSQL, outside a transaction) the executions go in
over that many connections and the indexes are built that many at once: one
COPY is bound by its PostgreSQL backend (96 µs an execution, against 44 µs
for the Python that makes the row; bench/README.md), and a GIN index builds
on one core. At 1,000,000 executions on 2 cores: 201 s with one job, 159 s
with two. (Keeping the search's GIN index up during the COPYs instead of
building it after them made 1,000,000 faster, 137 s, and 10,000,000
slower: the COPYs fell from 8,300 to 5,700 rows a second as the index grew.)
"""

from __future__ import annotations

import datetime as dt
import itertools
import queue
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from django.core.management.color import no_style
from django.db import connection

from executions.database import counts
from executions.models import (
    ApiBucket,
    Execution,
    ExecutionCount,
    ExecutionCountDelta,
    HistoryEvent,
    StateMachine,
    StopRequest,
    SyncRun,
)
from executions.seed import data

EXECUTIONS = Execution._meta.db_table
EVENTS = HistoryEvent._meta.db_table
# Executions per INSERT where there is no COPY.
INSERT_BATCH = 2000
# A unique constraint as pg_get_constraintdef gives it (not deferrable).
_UNIQUE = re.compile(r"UNIQUE \((?P<columns>[^()]+)\)")
# Executions handed to one of the parallel COPYs at a time.
COPY_CHUNK = 2000

# (what, rows, seconds)
Timing = tuple[str, int, float]


class Step(Protocol):
    """Runs one part of the seeding, timed, under its name."""

    def __call__(self, what: str, work: Callable[[], int], *, counted: bool = True) -> None: ...


def seed(plan: data.Plan, *, big: bool, step: Step, timings: list[Timing], jobs: int = 1) -> None:
    """Write the plan's rows; `step` times each part, `timings` gets the state
    machines. With `jobs` > 1 the caller holds no transaction (see above)."""
    if jobs > 1 and (connection.vendor != "postgresql" or connection.in_atomic_block):
        raise ValueError("parallel seeding needs PostgreSQL and no open transaction")
    rng = random.Random(plan.seed)
    machines = _state_machines(plan, timings)
    empty = not Execution.objects.exists() and not HistoryEvent.objects.exists()
    dropped = _drop_indexes([EXECUTIONS, EVENTS]) if empty else []
    try:
        # The count triggers would add three rows per execution: counted once
        # at the end instead.
        with counts.paused(connection):
            rows = data.execution_rows(plan, machines, rng)
            step(
                "executions",
                lambda: (
                    _copy_parallel(EXECUTIONS, data.EXECUTION_COLUMNS, rows, jobs)
                    if jobs > 1
                    else _copy(EXECUTIONS, data.EXECUTION_COLUMNS, rows)
                ),
            )
            step("history events", lambda: _copy(EVENTS, data.EVENT_COLUMNS, _histories(plan, rng)))
            if big:
                step("25,000-event history", lambda: _big(plan, machines, rng))
            if jobs > 1:
                # Before the indexes, while an UPDATE of a row touches two
                # indexes instead of twenty (at 10,000,000 after them: 146 s).
                # Committed before they are built, so unlike below they are
                # usable at once, unless some older transaction still runs
                # on the server (pg_index.indcheckxmin, below).
                step("history bookkeeping", _mark_histories, counted=False)
    except BaseException:
        # Committed as they went: the rows written so far stay, the indexes
        # come back. (In a transaction the rollback brings them back.)
        if dropped and not connection.in_atomic_block:
            _rebuild(dropped, jobs)
        raise
    if dropped:
        step("indexes and constraints", lambda: _rebuild(dropped, jobs), counted=False)
    # After the indexes: an index built in the transaction that updated rows
    # is unusable (pg_index.indcheckxmin) until every transaction older than
    # it has ended, and any long one on the server (another seed) keeps the
    # pages on sequential scans meanwhile.
    if jobs == 1:
        step("history bookkeeping", _mark_histories, counted=False)
    step("counts per state machine", lambda: counts.rebuild(connection, plan.now), counted=False)
    step(
        "stop requests",
        lambda: _copy(StopRequest._meta.db_table, data.STOP_COLUMNS, data.stop_rows(plan, rng)),
    )
    step(
        "sync runs",
        lambda: _copy(
            SyncRun._meta.db_table,
            data.SYNC_RUN_COLUMNS,
            data.sync_run_rows(plan, machines, rng),
        ),
    )
    _reset_sequences([Execution, HistoryEvent, StopRequest, SyncRun, StateMachine])


def _state_machines(plan: data.Plan, timings: list[Timing]) -> dict[str, int]:
    now = plan.now
    rows = []
    for m in data.MACHINES:
        rows.append(
            StateMachine(
                arn=m.arn,
                name=m.name,
                region=m.region,
                account=data.ACCOUNT,
                definition=data.definition(m),
                role_arn=data.ROLE,
                creation_date=now - dt.timedelta(days=plan.days + 30),
                described_at=now - dt.timedelta(minutes=5),
                list_watermark=now - dt.timedelta(seconds=20),
                listed_at=now - dt.timedelta(seconds=20),
                list_due_at=now + dt.timedelta(seconds=40),
                list_interval=60,
            )
        )
    existing = dict(StateMachine.objects.values_list("arn", "id"))
    StateMachine.objects.bulk_create([r for r in rows if r.arn not in existing])
    ids = dict(StateMachine.objects.values_list("arn", "id"))
    timings.append(("state machines", len(rows), 0.0))
    return {m.name: ids[m.arn] for m in data.MACHINES}


def _big(plan: data.Plan, machines: dict[str, int], rng: random.Random) -> int:
    m = next(x for x in data.MACHINES if x.name == "CatalogImport")
    start = (plan.now - dt.timedelta(days=20)).replace(hour=2, minute=0, second=0)
    pk = plan.executions + 1
    events, seconds = data.big_history_rows(pk, start, rng)
    stop = start + dt.timedelta(seconds=seconds)
    name = f"{m.prefix}-{start:%Y%m%d-%H%M}-full-reprocess"
    row = {
        "id": pk,
        "arn": f"arn:aws:states:{m.region}:{data.ACCOUNT}:execution:{m.name}:{name}",
        "name": name,
        "state_machine_id": machines[m.name],
        "status": "SUCCEEDED",
        "start_date": start,
        "stop_date": stop,
        "input": data.padded('{"batch":"reprocess"}', data.MAX_PAYLOAD),
        "output": '{"reprocessed":3000,"failed":3}',
        "error": None,
        "cause": None,
        "redrive_count": 0,
        "redrive_date": None,
        "redrive_status": "NOT_REDRIVABLE",
        "redrive_status_reason": "Execution is SUCCEEDED and cannot be redriven",
        "map_run_arn": "",
        "state_machine_version_arn": "",
        "state_machine_alias_arn": "",
        "last_event_id": 0,
        "history_complete": False,
        "needs_describe": False,
        "described_at": stop,
        "synced_at": stop + dt.timedelta(seconds=5),
        "sync_due_at": None,
        "sync_error": "",
        "sync_failures": 0,
        "failed_state": "",
    }
    _copy(EXECUTIONS, data.EXECUTION_COLUMNS, [tuple(row[c] for c in data.EXECUTION_COLUMNS)])
    return _copy(EVENTS, data.EVENT_COLUMNS, events)


def reset() -> None:
    """Empty every cache table; ids start again from 1."""
    models = (
        HistoryEvent,
        StopRequest,
        Execution,
        SyncRun,
        StateMachine,
        ApiBucket,
        # TRUNCATE fires no trigger: the counts of the executions go too.
        ExecutionCount,
        ExecutionCountDelta,
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        else:
            for model in models:
                table = connection.ops.quote_name(model._meta.db_table)
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (our table names)
            if connection.vendor == "sqlite":
                # Ids start again from 1, as RESTART IDENTITY does.
                for model in models:
                    cursor.execute(
                        "DELETE FROM sqlite_sequence WHERE name = %s", [model._meta.db_table]
                    )


def analyze() -> int:
    tables = [m._meta.db_table for m in (Execution, HistoryEvent, StopRequest, SyncRun)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Sets the visibility map too: index-only scans need it.
            cursor.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
        else:
            cursor.execute("ANALYZE")
    return 0


def _histories(plan: data.Plan, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for ex in plan.histories:
        yield from data.history_rows(ex, plan.now, rng)


def _copy(table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> int:
    """Write rows into `table`: COPY on PostgreSQL, batched INSERTs elsewhere."""
    count = 0
    connection.ensure_connection()
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    if connection.vendor == "postgresql":
        raw: Any = connection.connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    placeholders = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} ({quoted}) VALUES ({placeholders})"  # noqa: S608 (our names)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, INSERT_BATCH)):
            cursor.executemany(
                sql,
                [
                    tuple(adapt(v) if isinstance(v, dt.datetime) else _plain(v) for v in row)
                    for row in batch
                ],
            )
            count += len(batch)
    return count


def _plain(value: Any) -> Any:
    # SQLite stores UUIDs as 32 hex digits, as Django does.
    return value.hex if hasattr(value, "hex") and not isinstance(value, (str, float)) else value


class _Stopped(Exception):
    """Another part of a parallel COPY failed: this one's rows go too."""


def _copy_parallel(
    table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]], jobs: int
) -> int:
    """`_copy` over `jobs` connections of their own, each one COPY in its own
    transaction, fed chunks of rows by this thread. If any part fails, every
    part's COPY is rolled back and the error raised here. (Not one
    transaction: a commit that fails after the others' would leave theirs.)"""
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    sql = f"COPY {table} ({quoted}) FROM STDIN"
    chunks: queue.Queue[list[tuple[Any, ...]] | None] = queue.Queue(maxsize=2 * jobs)
    failed = threading.Event()
    # PostgreSQL checks a COPY's rows as they come but answers at its end: a
    # part commits only once every part's COPY has ended well.
    ended = threading.Barrier(jobs)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with _new_connection() as conn, conn.cursor() as cursor:
                with cursor.copy(sql) as copy:
                    while (chunk := chunks.get()) is not None:
                        for row in chunk:
                            copy.write_row(row)
                    if failed.is_set():
                        raise _Stopped
                ended.wait()
                if failed.is_set():
                    raise _Stopped
        except BaseException as exc:
            errors.append(exc)
            failed.set()
            ended.abort()

    writers = [threading.Thread(target=write, name=f"seed-copy-{i}") for i in range(jobs)]
    for writer in writers:
        writer.start()
    count = 0
    try:
        iterator = iter(rows)
        while not failed.is_set() and (chunk := list(itertools.islice(iterator, COPY_CHUNK))):
            while not failed.is_set():
                try:
                    chunks.put(chunk, timeout=0.5)
                    break
                except queue.Full:
                    continue
            count += len(chunk)
    except BaseException:
        failed.set()
        raise
    finally:
        # Every writer stops at its None (or at once, when one failed).
        for _ in writers:
            while any(w.is_alive() for w in writers):
                try:
                    chunks.put(None, timeout=0.5)
                    break
                except queue.Full:
                    if failed.is_set():
                        _drain(chunks)
        for writer in writers:
            writer.join()
    real = [e for e in errors if not isinstance(e, (_Stopped, threading.BrokenBarrierError))]
    if real:
        # As Django's own connection would raise it (django.db.DataError, ...).
        with connection.wrap_database_errors:
            raise real[0]
    return count


def _drain(chunks: queue.Queue[Any]) -> None:
    try:
        while True:
            chunks.get_nowait()
    except queue.Empty:
        return


def _new_connection() -> Any:
    """A psycopg connection of its own to the same database, committed on a
    clean exit of its `with` and rolled back otherwise."""
    return connection.get_new_connection(connection.get_connection_params())


def _mark_histories() -> int:
    """last_event_id and history_complete of the executions that got events."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {EXECUTIONS} SET last_event_id = h.n, "  # noqa: S608 (our names)
            f"history_complete = {EXECUTIONS}.status NOT IN ('RUNNING', 'PENDING_REDRIVE') "
            f"FROM (SELECT execution_id, MAX(event_id) AS n FROM {EVENTS} "
            f"GROUP BY execution_id) AS h WHERE {EXECUTIONS}.id = h.execution_id"
        )
        return int(cursor.rowcount)


def _reset_sequences(models: list[Any]) -> None:
    """The next id after the ones written by hand."""
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _drop_indexes(tables: list[str]) -> list[str]:
    """Drop the secondary indexes and the unique and foreign key constraints of
    `tables` (PostgreSQL only), inside the caller's transaction; returns the
    statements that rebuild them."""
    if connection.vendor != "postgresql":
        return []
    rebuild_indexes: list[str] = []
    rebuild_constraints: list[str] = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC",
                [table],
            )
            constraints = cursor.fetchall()
            cursor.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass "
                "AND NOT i.indisprimary AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
                [table],
            )
            indexes = cursor.fetchall()
            for name, definition in constraints:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                if unique := _UNIQUE.fullmatch(definition):
                    # Its index built as the others are (several at once with
                    # jobs), then made the constraint, which is instant.
                    rebuild_indexes.append(
                        f'CREATE UNIQUE INDEX "{name}" ON {table} ({unique["columns"]})'
                    )
                    rebuild_constraints.append(
                        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" UNIQUE USING INDEX "{name}"'
                    )
                else:
                    rebuild_constraints.append(
                        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
                    )
            for name, definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
                rebuild_indexes.append(definition)
    # Indexes first, then constraints (the unique ones first: a foreign key
    # may need one).
    return rebuild_indexes + rebuild_constraints


def _rebuild(statements: list[str], jobs: int = 1) -> int:
    if jobs == 1:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for sql in statements:
                cursor.execute(sql)
        return 0
    indexes = [sql for sql in statements if sql.startswith("CREATE")]
    # The GIN indexes take longest and build on one core each: first.
    indexes.sort(key=lambda sql: "USING gin" not in sql)

    def build(sql: str) -> None:
        with _new_connection() as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute(sql)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(build, indexes))
    with connection.cursor() as cursor:
        for sql in statements:
            if sql not in indexes:
                cursor.execute(sql)
    return 0
