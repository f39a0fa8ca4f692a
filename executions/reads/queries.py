"""The executions list's queries: one page by keyset, and the counts per status.

Both must stay fast on millions of rows, so neither uses OFFSET or an
unbounded COUNT(*):

- a page is the `per_page + 1` rows after a cursor (start date, id) in the
  order of the index that serves the filter (see Execution.Meta.indexes);
- the counts per status are capped: each status counts at most CAP rows
  through its own index, so the chips say "10,000+" instead of scanning the
  table; a name search is counted among the newest SEARCH_WINDOW executions
  (or from its page, when that holds every match);
- a name search walks the start index only as far as SEARCH_WALK rows, and
  otherwise asks the trigram index (PostgreSQL, 3 characters or more) or
  shows a partial page that goes on from where the walk stopped (see page).

Each is a single SQL statement whatever the filters (but a page of a name
search: two, and three when it is rare near its cursor).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import connections
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    DateTimeField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Concat, Substr

from executions.models import Execution, ExecutionStatus, StateMachine
from executions.reads import search

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200
# Counts per status stop here ("10,000+").
CAP = 10_000
# A name search is counted among this many newest executions (see _search_counts).
SEARCH_WINDOW = 2_000
# A name search walks this many executions past the cursor before it asks the
# trigram index instead (see _bounded).
SEARCH_WALK = 5_000
# Bounds of a walk that saw every execution past its cursor (see _bounded).
_FIRST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_LAST = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
# The start date as an expression no index serves (see _window).
_UNINDEXED_START = ExpressionWrapper(
    F("start_date") + Value(dt.timedelta(0)), output_field=DateTimeField()
)

# The name as an expression no index serves (see page).
_UNINDEXED_NAME = Concat(F("name"), Value(""), output_field=CharField())

# The state machine as an expression no index serves (see matching).
_UNINDEXED_STATE_MACHINE = ExpressionWrapper(
    F("state_machine_id") + Value(0), output_field=BigIntegerField()
)

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
    "state_machine__account",
    "state_machine__region",
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CURSOR = re.compile(r"([np])(-?\d{1,18})\.(\d{1,19})")


@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()
    state_machine_arn: str = ""
    # The version or alias that started them (their ARNs).
    version_arn: str = ""
    alias_arn: str = ""
    # Of the state machine (its ARN's account and region).
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    q: str = ""
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None
    # AWS's redriveFilter: True for REDRIVEN (redriven at least once), False
    # for NOT_REDRIVEN, None for either.
    redriven: bool | None = None
    # Exact matches, for the failures page's groups; None is no filter, ""
    # matches executions without one (no error; failing state unknown).
    error: str | None = None
    failed_state: str | None = None
    # When it ended (the failures page's window).
    stopped_after: dt.datetime | None = None
    stopped_before: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return bool(
            self.redriven is not None
            or self.statuses
            or self.state_machine_arn
            or self.version_arn
            or self.alias_arn
            or self.accounts
            or self.regions
            or self.q
            or self.started_after
            or self.started_before
            or self.error is not None
            or self.failed_state is not None
            or self.stopped_after
            or self.stopped_before
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
    # A name search that no index can serve (1 or 2 characters; any on
    # SQLite) looks at SEARCH_WALK executions past the cursor, no more: when
    # they hold fewer matches than a page, the page is partial, says how many
    # it searched, and its cursor goes on from where the walk stopped.
    walked: int | None = None


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


def matching(
    filters: Filters, *, with_status: bool = True, in_start_order: bool = False
) -> QuerySet[Execution]:
    """Executions that pass the filters (the status one only if asked), unordered.
    `in_start_order`: for a query that walks them newest first (see below)."""
    qs = Execution.objects.all()
    if filters.state_machine_arn:
        # A scalar subquery rather than a join: the database looks the state
        # machine up once and then walks exec_sm_start_idx in order.
        sm_id = StateMachine.objects.filter(arn=filters.state_machine_arn).values("id")[:1]
        qs = qs.filter(state_machine_id=Subquery(sm_id))
    if filters.accounts or filters.regions:
        # Through a subquery (sm_account_region_idx finds the state machines)
        # rather than a join, so that the counts stay one statement.
        machines = StateMachine.objects.all()
        if filters.accounts:
            machines = machines.filter(account__in=filters.accounts)
        if filters.regions:
            machines = machines.filter(region__in=filters.regions)
        if in_start_order:
            # A page walks its start index and tests each row against the
            # short list of state machines. Left to itself, the planner may
            # read every execution of them through exec_sm_start_idx and sort
            # them all instead (SQLite does, having no statistics): millions
            # of rows for a busy account, to show 50.
            qs = qs.alias(sm_unindexed=_UNINDEXED_STATE_MACHINE).filter(
                sm_unindexed__in=machines.values("id")
            )
        else:
            # Counts per status: one seek of exec_sm_status_start_idx per
            # state machine, each capped.
            qs = qs.filter(state_machine_id__in=machines.values("id"))
    # exec_version_idx and exec_alias_idx (partial: never the empty ARN).
    if filters.version_arn:
        qs = qs.filter(state_machine_version_arn=filters.version_arn)
    if filters.alias_arn:
        qs = qs.filter(state_machine_alias_arn=filters.alias_arn)
    if filters.started_after is not None:
        qs = qs.filter(start_date__gte=filters.started_after)
    if filters.started_before is not None:
        qs = qs.filter(start_date__lt=filters.started_before)
    if filters.q:
        qs = qs.filter(search.condition(search.parse(filters.q), connections[qs.db].vendor))
    if filters.redriven is not None:
        qs = qs.filter(redrive_count__gt=0) if filters.redriven else qs.filter(redrive_count=0)
    if filters.error:
        qs = qs.filter(error=filters.error)
    elif filters.error is not None:
        # NULL (AWS gave none) and "" are both "no error".
        qs = qs.filter(Q(error="") | Q(error__isnull=True))
    if filters.failed_state is not None:
        qs = qs.filter(failed_state=filters.failed_state)
    if filters.stopped_after is not None:
        qs = qs.filter(stop_date__gte=filters.stopped_after)
    if filters.stopped_before is not None:
        qs = qs.filter(stop_date__lt=filters.stopped_before)
    if with_status and len(filters.statuses) == 1:
        qs = qs.filter(status=filters.statuses[0])
    return qs


def _window(
    qs: QuerySet[Execution], cursor: Cursor | None, size: int, *, walk: bool = True
) -> QuerySet[Execution]:
    """The `size` rows just past the cursor, in the direction it points.

    `walk=False` orders by an expression no index has, so that the database
    finds the rows some other way (the trigram index) and sorts them, instead
    of walking exec_start_idx until enough of them turned up."""
    start: Any = "start_date" if walk else _UNINDEXED_START
    newest_first = cursor is None or cursor.forward
    order = (
        [start.desc() if not walk else "-start_date", "-id"]
        if newest_first
        else [start.asc() if not walk else "start_date", "id"]
    )
    if cursor is not None:
        at, pk = cursor.start_date, cursor.id
        if cursor.forward:
            # The redundant `start_date <= at` is the range the index scan
            # starts from; the OR only settles the ties on start_date.
            qs = qs.filter(Q(start_date__lt=at) | Q(start_date=at, id__lt=pk), start_date__lte=at)
        else:
            qs = qs.filter(Q(start_date__gt=at) | Q(start_date=at, id__gt=pk), start_date__gte=at)
    return qs.order_by(*order)[:size]


def _bounded(qs: QuerySet[Execution], plain: QuerySet[Execution], cursor: Cursor | None) -> Any:
    """`qs` (a name search; `plain`: the same without it) cut off at the start
    date of the SEARCH_WALK-th execution past the cursor, found in the index
    alone.

    Walking exec_start_idx and testing each name is fast when matches are
    common near the cursor ("order": 300 rows for a page), and hopeless when
    they are rare there: a search for "20260315" in November walked 700,000
    rows (2 s) back to March. With the cut-off the walk stops after
    SEARCH_WALK rows; when it comes up short, page() asks the trigram index
    for every match instead (rare near the cursor means few, as a rule: one
    day's executions, one order). Each row says where the walk stopped
    (`walk_end`): None when fewer than SEARCH_WALK executions lie past the
    cursor, and the walk saw them all."""
    newest_first = cursor is None or cursor.forward
    at = _window(plain, cursor, SEARCH_WALK).values("start_date")[SEARCH_WALK - 1 : SEARCH_WALK]
    end = Subquery(at, output_field=DateTimeField())
    if newest_first:
        return qs.annotate(walk_end=end).filter(start_date__gte=Coalesce(end, Value(_FIRST)))
    return qs.annotate(walk_end=end).filter(start_date__lte=Coalesce(end, Value(_LAST)))


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


def _walk_end(plain: QuerySet[Execution], cursor: Cursor | None) -> tuple[dt.datetime, int] | None:
    """Where a bounded walk stops: the (start date, id) of the SEARCH_WALK-th
    execution past the cursor (found in exec_start_idx alone, or the filter's
    own index); None when fewer lie past it and a walk sees them all.

    Asked first and on its own so that the page's query gets it as a literal
    range: given a sub-query's value instead, the planner cannot see how
    narrow the range is and reads the trigram index for every match (22 ms
    for "20260603" at 1M, then again for the fallback)."""
    found = _window(plain, cursor, SEARCH_WALK).values_list("start_date", "id")[
        SEARCH_WALK - 1 : SEARCH_WALK
    ]
    row = next(iter(found), None)
    return None if row is None else (row[0], row[1])


def _up_to(qs: QuerySet[Execution], end: tuple[dt.datetime, int], newest_first: bool) -> Any:
    """`qs` from the cursor up to the walk's end (that row included)."""
    at, pk = end
    if newest_first:
        return qs.filter(Q(start_date__gt=at) | Q(start_date=at, id__gte=pk), start_date__gte=at)
    return qs.filter(Q(start_date__lt=at) | Q(start_date=at, id__lte=pk), start_date__lte=at)


def trigram_helps(q: str, vendor: str) -> bool:
    """Whether the trigram index can find a name search's matches: PostgreSQL
    only, and 3 characters or more (fewer have no trigram: the index then
    returns nearly every row, 416,184 of 1,000,000 for "zz")."""
    return vendor == "postgresql" and len(q) >= 3


def page(filters: Filters, cursor: Cursor | None, per_page: int = DEFAULT_PER_PAGE) -> Page:
    """One page of the list, newest first, in one query. A search takes one
    more first (where its walk ends); when it is rare near the cursor, the
    page comes from the index in the same statement (_near_or_all), or, with
    no index to ask, is a partial page (see Page.walked). A day's search on
    PostgreSQL needs no walk: its indexes give its matches in start order
    (_day_members)."""
    size = per_page + 1
    qs = matching(filters, in_start_order=True)
    if len(filters.statuses) > 1:
        qs = qs.filter(status__in=filters.statuses)
    vendor = connections[qs.db].vendor
    found = search.parse(filters.q) if filters.q else None
    # An index finds every match: no need to stop a walk short.
    indexed = found is not None and search.indexed(found, vendor)
    plain = matching(replace(filters, q=""), in_start_order=True)
    newest_first = cursor is None or cursor.forward

    wanted = _row_fields(qs, found)
    # Where a search's walk stopped without a page of matches, and no index
    # can find the rest: the page is partial, and continues from there.
    stopped_at: tuple[dt.datetime, int] | None = None
    if len(filters.statuses) > 1:
        # status IN (...) cannot walk one index in start order; the union of
        # each status's own window (per_page + 1 rows of its index) can. The
        # few rows it picks are sorted, not found again by walking an index.
        def member(status: str) -> Any:
            one = qs.filter(status=status)
            if indexed:
                one = _bounded(one, plain.filter(status=status), cursor)
            return _window(one, cursor, size)

        ids = _union_of_ids([member(s) for s in filters.statuses])
        rows = list(_window(wanted.filter(id__in=ids), cursor, size, walk=False))
        # A bounded walk that came up short, unless it saw every execution
        # past the cursor: every match past the cursor, sorted.
        saw_all = bool(rows) and getattr(rows[0], "walk_end", 0) is None
        if indexed and len(rows) < size and not saw_all:
            rows = _sorted_page(qs, wanted, cursor, size)
    elif found is not None and (day := search.name_day(found, vendor)) is not None:
        ids = _union_of_ids(_day_members(found, day, plain, cursor, size, vendor))
        rows = list(_window(_row_fields(plain, found).filter(id__in=ids), cursor, size, walk=False))
    elif found is not None:
        end = _walk_end(plain, cursor)
        near = _near(found, plain, cursor, size, end, vendor)
        if end is not None and indexed:
            # The walk may come up short of a page: then every match past the
            # cursor, from the index, in the same statement (_near_or_all).
            ids = _near_or_all(near, _window(qs, cursor, size, walk=False), size)
            rows = list(
                _window(_row_fields(plain, found).filter(id__in=ids), cursor, size, walk=False)
            )
        else:
            rows = list(near)
            if len(rows) < size and end is not None:
                stopped_at = end
    else:
        rows = list(_window(wanted, cursor, size))
    more = len(rows) > per_page
    rows = rows[:per_page]
    if not newest_first:
        rows.reverse()
    going_back = not newest_first
    walked = SEARCH_WALK if stopped_at is not None else None
    if not rows:
        if stopped_at is None:
            return Page(rows=[])
        here = cursor
        on = Cursor(stopped_at[0], stopped_at[1], forward=newest_first)
        back = None if here is None else Cursor(here.start_date, here.id, forward=going_back)
        return Page(
            rows=[],
            newer=back if newest_first else on,
            older=on if newest_first else back,
            walked=walked,
        )
    first, last = rows[0], rows[-1]
    # Forward from a cursor: there are newer rows (we came from them). Back
    # from one: there are older rows. Beyond that, `more` says.
    has_newer = (more or stopped_at is not None) if going_back else cursor is not None
    has_older = (more or stopped_at is not None) if not going_back else True
    newer = Cursor(first.start_date, first.pk, forward=False) if has_newer else None
    older = Cursor(last.start_date, last.pk, forward=True) if has_older else None
    if stopped_at is not None:
        # Past the last match lies only what the walk saw: go on from its end.
        on = Cursor(stopped_at[0], stopped_at[1], forward=newest_first)
        if newest_first:
            older = on
        else:
            newer = on
    return Page(rows=rows, newer=newer, older=older, walked=walked)


def _sorted_page(
    qs: QuerySet[Execution], wanted: QuerySet[Execution], cursor: Cursor | None, size: int
) -> list[Execution]:
    """The page among every match of `qs`, sorted (an index found them, none
    walks them in order), in one query: the ids first, then the rows for
    those alone. Sorting the rows themselves carried each match's fields,
    its state machine and its heads for the snippet into the sort: 2,649
    rows, their inputs read from TOAST, for one day's search at 1M."""
    ids = _window(qs, cursor, size, walk=False).values("id")
    return list(_window(wanted.filter(id__in=ids), cursor, size, walk=False))


def _day_members(
    found: search.Search,
    day: str,
    plain: QuerySet[Execution],
    cursor: Cursor | None,
    size: int,
    vendor: str,
) -> list[QuerySet[Execution]]:
    """A day's search (q=20260605, PostgreSQL) as up to three pages, each
    from its own index, whose union holds the page:

    - the names whose first day it is, walked newest first on
      exec_name_day_idx: it stops after `size` rows, however many carry it;
    - the names with more than one day that contain it (a day other than
      the first can only be in those), from exec_name_days_trgm_idx, sorted;
    - unless the search is scoped to the name, the executions whose data has
      it as a word, from the data's index, sorted.

    Every name that contains the day is in the first or the second: where
    the first day in it is another, a second day starts after that one's
    first character. The trigram index (search.name_contains) finds the
    same names in no order, and the page sorted every one: 15,747 at
    10,000,000 executions, ten times as many as at 1,000,000."""
    first = plain.alias(name_day=search.NameDay("name")).filter(name_day=day)
    # By the day's tail, as the trigram index is read for every name: the
    # year's trigrams are in each of these names.
    more = plain.filter(search.NameMoreDays("name")).filter(search.name_contains(day, vendor))
    members = [_window(first, cursor, size), _window(more, cursor, size, walk=False)]
    data = search.data_condition(found, vendor)
    if data is not None:
        members.append(_window(plain.filter(data), cursor, size, walk=False))
    return members


def _near_or_all(near: QuerySet[Execution], every: QuerySet[Execution], size: int) -> RawSQL:
    """The ids of `near` (a search's page among the newest SEARCH_WALK
    executions past the cursor), and, only when it holds fewer than `size`,
    those of `every` (the page among every match, from the index): one
    statement where it used to be two. The second part's condition does not
    depend on its rows, so PostgreSQL runs it as a one-time filter and never
    starts the index scan behind it when the walk found a page. Every match
    past the cursor includes the walk's: sorted together, the first `size`
    are the page."""
    near_sql, near_params = near.values("id").query.sql_with_params()
    every_sql, every_params = every.values("id").query.sql_with_params()
    sql = (
        f'WITH near AS ({near_sql}) SELECT "id" FROM near UNION ALL '  # noqa: S608 (ORM-made SQL)
        f'SELECT "id" FROM ({every_sql}) AS every WHERE (SELECT COUNT(*) FROM near) < %s'
    )
    return RawSQL(sql, (*near_params, *every_params, size))  # noqa: S611


def _row_fields(qs: QuerySet[Execution], found: search.Search | None) -> QuerySet[Execution]:
    """What a list row needs; for a search inside the data, also the indexed
    part of each field, for the snippet (search.snippet)."""
    qs = qs.select_related("state_machine").only(*ROW_FIELDS)
    if found is not None and found.data:
        qs = qs.annotate(
            **{f"head_{f}": Substr(f, 1, search.HEAD) for f in search.FIELDS if f != "error"}
        )
    return qs


def _near(
    found: search.Search,
    plain: QuerySet[Execution],
    cursor: Cursor | None,
    size: int,
    end: tuple[dt.datetime, int] | None,
    vendor: str,
) -> QuerySet[Execution]:
    """A search's page among the SEARCH_WALK executions past the cursor (up
    to `end`), in one query.

    The name's part walks exec_start_idx and tests each name as an
    expression the trigram index does not serve: given the index, the
    planner ANDs its bitmap of every match (182,551 rows for "order": 20 ms)
    with the walk's range. The data's part asks its index within the range
    (its rows sorted, not walked: testing each walked row would read its
    whole tsvector). A search with neither walks and tests each row."""
    newest_first = cursor is None or cursor.forward

    def near(qs: QuerySet[Execution]) -> QuerySet[Execution]:
        return qs if end is None else _up_to(qs, end, newest_first)

    data = search.data_condition(found, vendor)
    if found.either:
        name = plain.alias(name_unindexed=_UNINDEXED_NAME).filter(
            name_unindexed__icontains=found.either
        )
        if data is None:
            return _window(near(_row_fields(name, found)), cursor, size)
        members = [
            _window(near(name), cursor, size),
            _window(near(plain.filter(data)), cursor, size, walk=False),
        ]
        wanted = _row_fields(plain, found).filter(id__in=_union_of_ids(members))
        return _window(wanted, cursor, size, walk=False)
    wanted = near(_row_fields(plain.filter(search.condition(found, vendor)), found))
    return _window(wanted, cursor, size, walk=data is None)


def status_counts(filters: Filters, first_page: Page | None = None) -> Counts:
    """Executions per status for the filters but the status one, capped; one
    query at most. `first_page`: the list's page without a cursor, when the
    caller has it (a name search that fits on it is counted from it)."""
    if filters.q:
        return _search_counts(filters, first_page)
    qs = matching(filters, with_status=False)
    members: list[str] = []
    params: list[Any] = []
    for i, status in enumerate(STATUSES):
        inner = qs.filter(status=status).values("id")[: CAP + 1]
        sql, inner_params = inner.query.sql_with_params()
        members.append(f"SELECT {i}, COUNT(*) FROM ({sql}) AS c{i}")  # noqa: S608
        params.extend(inner_params)
    with connections[qs.db].cursor() as cursor:
        cursor.execute(" UNION ALL ".join(members), params)
        found = {int(i): int(n) for i, n in cursor.fetchall()}
    return Counts(
        [
            StatusCount(status, min(found.get(i, 0), CAP), exact=found.get(i, 0) <= CAP)
            for i, status in enumerate(STATUSES)
        ]
    )


def _search_counts(filters: Filters, first_page: Page | None) -> Counts:
    """A name search's counts. When its first page holds every match (no
    status filter, no older page), they are counted from that page: exact, no
    query. Else among the newest SEARCH_WINDOW executions that pass the other
    filters (one walk of exec_start_idx, whatever the search: bounded work),
    exact when that was all of them. (Counting the matches themselves costs
    as much as there are: 1.6 s for a common one whose matches lie months
    back.)"""
    if first_page is not None and not filters.statuses and first_page.older is None:
        found = Counter(row.status for row in first_page.rows)
        return Counts([StatusCount(status, found[status], True) for status in STATUSES])
    vendor = connections[Execution.objects.db].vendor
    hit = Case(
        When(search.condition(search.parse(filters.q), vendor), then=Value(1)), default=Value(0)
    )
    newest = (
        matching(replace(filters, q=""), with_status=False, in_start_order=True)
        .annotate(hit=hit)
        .order_by("-start_date", "-id")
        .values("status", "hit")[:SEARCH_WINDOW]
    )
    sql, params = newest.query.sql_with_params()
    with connections[newest.db].cursor() as cursor:
        cursor.execute(
            f"SELECT status, COUNT(*), COALESCE(SUM(hit), 0) FROM ({sql}) AS w "  # noqa: S608
            "GROUP BY status",
            params,
        )
        rows = cursor.fetchall()
    walked = sum(int(n) for _, n, _ in rows)
    found = Counter({str(status): int(hits) for status, _, hits in rows})
    exact = walked < SEARCH_WINDOW
    return Counts([StatusCount(status, found[status], exact) for status in STATUSES])
