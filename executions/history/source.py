"""Reading an execution's history from the cache, in the shapes the page and
the exports need: the skeleton of every event (no payloads) for the
timeline, keyset batches of full events for the streamed exports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, F, Func, Q, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.db.models.sql.compiler import SQLCompiler

from ..event_types import FAILURE_TYPES, ITERATION_TYPES
from ..models import Execution, HistoryEvent
from .events import PAYLOAD_KEYS
from .timeline import Ev

# Which events carry which of the few facts the timeline reads, so that the
# database extracts them only there (payload-heavy details are parsed once).
_INDEXED = sorted(ITERATION_TYPES)
_NAMED = Q(type__endswith="StateEntered") | Q(type__endswith="StateExited") | Q(type__in=_INDEXED)
_ERRORS = sorted(FAILURE_TYPES)
EXPORT_BATCH = 1000


class _Member(Func):
    """One member of `details` as text (numbers may come as numbers): a single
    JSON_EXTRACT on SQLite (Django's key transform parses twice), ->> on
    PostgreSQL."""

    output_field = TextField()

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(F("details"))

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        lhs, params = compiler.compile(self.source_expressions[0])
        return f"JSON_EXTRACT({lhs}, %s)", (*params, f'$."{self.key}"')

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        # PostgreSQL (->>) and any other backend: Django's own key transform.
        sql, params = compiler.compile(KeyTextTransform(self.key, self.source_expressions[0]))
        return sql, tuple(params)


class _UtcText(Func):
    """A timestamp as text in UTC (`to_char` format) on PostgreSQL, where
    psycopg's timestamptz loader, in Python, costs ~2 µs a row (50 ms on a
    25,000-event history) and `datetime.fromisoformat` 0.2 µs; elsewhere the
    column as it is (SQLite hands out text already)."""

    output_field = TextField()

    def __init__(self, column: str, fmt: str) -> None:
        self.fmt = fmt
        super().__init__(F(column))

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"to_char({sql} AT TIME ZONE 'UTC', %s)", (*params, self.fmt)

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return sql, tuple(params)


# fromisoformat() reads it as an aware datetime.
_ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'
# What the exports print (exports.iso_ms): milliseconds, cut, not rounded.
ISO_MS = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
# Members that hold payloads: history.txt leaves them out (events.PAYLOAD_KEYS
# and their *Details flags), so the database need not send them.
_PAYLOAD_MEMBERS = [f"{key}{suffix}" for key in PAYLOAD_KEYS for suffix in ("", "Details")]


class _WithoutPayloads(Func):
    """`details` without its payload members, as JSON text: jsonb minus a
    text[] on PostgreSQL, json_remove on SQLite, the whole text elsewhere."""

    output_field = TextField()

    def __init__(self) -> None:
        super().__init__(F("details"))

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"({sql} - %s::text[])::text", (*params, _PAYLOAD_MEMBERS)

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(self.source_expressions[0])
        paths = ", ".join(["%s"] * len(_PAYLOAD_MEMBERS))
        return (
            f"json_remove({sql}, {paths})",
            (*params, *(f'$."{key}"' for key in _PAYLOAD_MEMBERS)),
        )

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple[Any, ...]]:
        sql, params = compiler.compile(Cast(self.source_expressions[0], TextField()))
        return sql, tuple(params)


def _only(condition: Q, expression: Any) -> Case:
    return Case(When(condition, then=expression), default=Value(None), output_field=TextField())


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) or value is None else str(value)


def skeleton(execution: Execution) -> list[Ev]:
    """Every event of the execution, in id order, without its payloads: one
    query. Read with a plain cursor: on 25,000 rows the ORM's per-row
    conversions would cost more than the query."""
    qs = (
        HistoryEvent.objects.filter(execution=execution)
        .order_by("event_id")
        .values_list(
            "event_id",
            "previous_event_id",
            _UtcText("timestamp", _ISO_UTC),
            "type",
            _only(_NAMED, _Member("name")),
            _only(Q(type__in=_INDEXED), _Member("index")),
            _only(Q(type__in=_ERRORS), _Member("error")),
            Case(
                When(type="EvaluationFailed", then=_Member("state")),
                When(type="MapStateStarted", then=_Member("length")),
                When(
                    type__in=["ExecutionRedriven", "MapRunRedriven"], then=_Member("redriveCount")
                ),
                default=Value(None),
                output_field=TextField(),
            ),
        )
    )
    sql, params = qs.query.sql_with_params()
    out: list[Ev] = []
    append = out.append
    utc = dt.UTC
    with connections[qs.db].cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(5000):
            for event_id, prev, ts, type_, name, index, error, extra in rows:
                # SQLite gives naive UTC datetimes (or text), PostgreSQL aware
                # ones; JSON members come as text or numbers. Inline: 25,000 rows.
                if type(ts) is str:
                    ts = dt.datetime.fromisoformat(ts)
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=utc)
                if type_ == "EvaluationFailed":
                    name, number = _text(extra), None
                else:
                    number = extra if extra is None or type(extra) is int else _int(extra)
                if name is not None and type(name) is not str:
                    name = str(name)
                if index is not None and type(index) is not int:
                    index = _int(index)
                append(Ev(event_id, prev or 0, ts, type_, name, index, _text(error), number))
    return out


def batches(
    execution: Execution,
    *,
    raw_details: bool = False,
    payloads: bool = True,
    iso_ms: bool = False,
    size: int = EXPORT_BATCH,
) -> Iterator[list[tuple[Any, ...]]]:
    """(event_id, previous_event_id, timestamp, type, details_key, details)
    rows in id order, `size` at a time (keyset on event id: memory stays
    bounded by one batch). With `raw_details`, details come as the JSON text
    the database holds, not decoded; without `payloads`, as JSON text without
    the payload members (but ExecutionSucceeded's, whose output history.txt
    may print). With `iso_ms`, the timestamp may come as exports.iso_ms text
    already (PostgreSQL formats it faster than Python parses it)."""
    details: Any
    if not payloads:
        details = Case(
            When(type="ExecutionSucceeded", then=Cast(F("details"), TextField())),
            default=_WithoutPayloads(),
            output_field=TextField(),
        )
    elif raw_details:
        details = Cast(F("details"), TextField())
    else:
        details = F("details")
    postgresql = connections[HistoryEvent.objects.db].vendor == "postgresql"
    timestamp: Any = _UtcText("timestamp", ISO_MS) if iso_ms and postgresql else F("timestamp")
    last = 0
    while True:
        rows = list(
            HistoryEvent.objects.filter(execution=execution, event_id__gt=last)
            .order_by("event_id")
            .values_list(
                "event_id", "previous_event_id", timestamp, "type", "details_key", details
            )[:size]
        )
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        last = rows[-1][0]
