"""The executions list's queries: one page by keyset, and the counts per status.

Both must stay fast on millions of rows, so neither uses OFFSET or an
unbounded COUNT(*):

- a page is the `per_page + 1` rows after a cursor (start date, id) in the
  order of the index that serves the filter (see Execution.Meta.indexes);
- the counts per status are capped: each status counts at most CAP rows
  through its own index, and a name search, which no index serves, counts
  within the newest SEARCH_WINDOW rows of each status, so the chips say
  "10,000+" or "12+" instead of scanning the table.

Each is a single SQL statement whatever the filters.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import connections
from django.db.models import Case, Q, QuerySet, Subquery, Value, When
from django.db.models.expressions import RawSQL

from .models import Execution, ExecutionStatus, StateMachine

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200
# Counts per status stop here ("10,000+").
CAP = 10_000
# A name search is counted among this many newest executions of each status.
SEARCH_WINDOW = 2_000

STATUSES: tuple[str, ...] = tuple(ExecutionStatus.values)
# What a list row needs: never the input or output (up to 256 KiB each).
ROW_FIELDS = (
    "arn",
    "name",
    "status",
    "start_date",
    "stop_date",
    "error",
    "redrive_count",
    "state_machine",
    "state_machine__arn",
    "state_machine__name",
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CURSOR = re.compile(r"([np])(-?\d{1,18})\.(\d{1,19})")


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    state_machine_arn: str = ""
    q: str = ""
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return bool(
            self.statuses
            or self.state_machine_arn
            or self.q
            or self.started_after
            or self.started_before
        )


@dataclass(frozen=True)
class Cursor:
    """A position in the list: the page after (`forward`, older executions)
    or before (newer ones) the execution started at `start_date` with `id`."""

    start_date: dt.datetime
    id: int
    forward: bool = True

    def encode(self) -> str:
        micros = (self.start_date - _EPOCH) // dt.timedelta(microseconds=1)
        raw = f"{'n' if self.forward else 'p'}{micros}.{self.id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Raises ValueError for anything encode() did not make."""
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
            match = _CURSOR.fullmatch(raw.decode("ascii"))
            if match is None:
                raise ValueError("not a cursor")
            start = _EPOCH + dt.timedelta(microseconds=int(match[2]))
        except (ValueError, OverflowError):
            raise ValueError("not a cursor") from None
        pk = int(match[3])
        if not 0 < pk < 2**63:
            raise ValueError("not a cursor")
        return cls(start_date=start, id=pk, forward=match[1] == "n")


@dataclass
class Page:
    rows: list[Execution]
    # Cursors of the neighbouring pages; None where there is none.
    newer: Cursor | None = None
    older: Cursor | None = None


@dataclass(frozen=True)
class StatusCount:
    status: str
    count: int
    # False: a lower bound (the cap or the search window was reached).
    exact: bool


@dataclass
class Counts:
    by_status: list[StatusCount] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(c.count for c in self.by_status)

    @property
    def total_exact(self) -> bool:
        return all(c.exact for c in self.by_status)


def matching(filters: Filters, *, with_status: bool = True) -> QuerySet[Execution]:
    """Executions that pass the filters (the status one only if asked), unordered."""
    qs = Execution.objects.all()
    if filters.state_machine_arn:
        # A scalar subquery rather than a join: the database looks the state
        # machine up once and then walks exec_sm_start_idx in order.
        sm_id = StateMachine.objects.filter(arn=filters.state_machine_arn).values("id")[:1]
        qs = qs.filter(state_machine_id=Subquery(sm_id))
    if filters.started_after is not None:
        qs = qs.filter(start_date__gte=filters.started_after)
    if filters.started_before is not None:
        qs = qs.filter(start_date__lt=filters.started_before)
    if filters.q:
        qs = qs.filter(name__icontains=filters.q)
    if with_status and len(filters.statuses) == 1:
        qs = qs.filter(status=filters.statuses[0])
    return qs


def _window(qs: QuerySet[Execution], cursor: Cursor | None, size: int) -> QuerySet[Execution]:
    """The `size` rows just past the cursor, in the direction it points."""
    if cursor is None:
        return qs.order_by("-start_date", "-id")[:size]
    at, pk = cursor.start_date, cursor.id
    if cursor.forward:
        # The redundant `start_date <= at` is the range the index scan starts
        # from; the OR only settles the ties on start_date.
        qs = qs.filter(Q(start_date__lt=at) | Q(start_date=at, id__lt=pk), start_date__lte=at)
        return qs.order_by("-start_date", "-id")[:size]
    qs = qs.filter(Q(start_date__gt=at) | Q(start_date=at, id__gt=pk), start_date__gte=at)
    return qs.order_by("start_date", "id")[:size]


def _union_of_ids(members: list[QuerySet[Execution]]) -> RawSQL:
    """SELECT id FROM (member 1) UNION ALL ... as one subquery: each member
    keeps its own ORDER BY and LIMIT, which the ORM cannot say on SQLite."""
    parts: list[str] = []
    params: list[Any] = []
    for i, member in enumerate(members):
        sql, member_params = member.values("id").query.sql_with_params()
        parts.append(f'SELECT "id" FROM ({sql}) AS m{i}')  # noqa: S608 (ORM-made SQL, params apart)
        params.extend(member_params)
    return RawSQL(" UNION ALL ".join(parts), tuple(params))  # noqa: S611


def page(filters: Filters, cursor: Cursor | None, per_page: int = DEFAULT_PER_PAGE) -> Page:
    """One page of the list, newest first, in one query."""
    qs = matching(filters)
    if len(filters.statuses) > 1:
        # status IN (...) cannot walk one index in start order; the union of
        # each status's own window (per_page + 1 rows of its index) can.
        members = [_window(qs.filter(status=s), cursor, per_page + 1) for s in filters.statuses]
        qs = qs.filter(id__in=_union_of_ids(members))
    qs = qs.select_related("state_machine").only(*ROW_FIELDS)
    rows = list(_window(qs, cursor, per_page + 1))
    more = len(rows) > per_page
    rows = rows[:per_page]
    if cursor is not None and not cursor.forward:
        rows.reverse()
    if not rows:
        return Page(rows=[])
    first, last = rows[0], rows[-1]
    going_back = cursor is not None and not cursor.forward
    # Forward from a cursor: there are newer rows (we came from them). Back
    # from one: there are older rows. Beyond that, `more` says.
    has_newer = more if going_back else cursor is not None
    has_older = more if not going_back else True
    return Page(
        rows=rows,
        newer=Cursor(first.start_date, first.pk, forward=False) if has_newer else None,
        older=Cursor(last.start_date, last.pk, forward=True) if has_older else None,
    )


def status_counts(filters: Filters) -> Counts:
    """Executions per status for the filters but the status one, capped; one query."""
    qs = matching(filters, with_status=False)
    members: list[str] = []
    params: list[Any] = []
    inner: QuerySet[Any, Any]
    for i, status in enumerate(STATUSES):
        if filters.q:
            # No index serves a substring search: look at the newest
            # SEARCH_WINDOW executions of this status (the other filters
            # applied) and count the hits among them.
            hit = Case(When(name__icontains=filters.q, then=Value(1)), default=Value(0))
            inner = (
                matching(replace(filters, q=""), with_status=False)
                .filter(status=status)
                .annotate(hit=hit)
                .order_by("-start_date", "-id")
                .values("hit")[:SEARCH_WINDOW]
            )
            outer = f"SELECT {i}, COUNT(*), COALESCE(SUM(hit), 0) FROM ({{}}) AS c{i}"  # noqa: S608
        else:
            inner = qs.filter(status=status).values("id")[: CAP + 1]
            outer = f"SELECT {i}, COUNT(*), COUNT(*) FROM ({{}}) AS c{i}"  # noqa: S608
        sql, inner_params = inner.query.sql_with_params()
        members.append(outer.format(sql))
        params.extend(inner_params)
    with connections[qs.db].cursor() as cursor:
        cursor.execute(" UNION ALL ".join(members), params)
        rows = {int(i): (int(scanned), int(found)) for i, scanned, found in cursor.fetchall()}
    counts = []
    for i, status in enumerate(STATUSES):
        scanned, found = rows.get(i, (0, 0))
        if filters.q:
            counts.append(StatusCount(status, found, exact=scanned < SEARCH_WINDOW))
        else:
            counts.append(StatusCount(status, min(found, CAP), exact=found <= CAP))
    return Counts(counts)
