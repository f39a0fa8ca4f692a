"""A state machine's versions and aliases, and how each version has run lately.

Per version, over WINDOW (the last 24 h, by start): runs, how many ended, how
many of those failed (FAILED, TIMED_OUT, ABORTED) and the p95 duration of
those that ended, so that a canary behind a weighted alias is judged at a
glance. One aggregate query over `exec_version_idx` (the version's ARN, then
the start date) on PostgreSQL, with `percentile_cont`; elsewhere (SQLite) the
counts, then the durations, sorted here.

Also the ARNs the executions list filters by (`version=`, `alias=`): parsed
here, so that a bad one is the form's 400, never a query.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Count, Q
from django.urls import reverse

from executions.arns import NotAnArn, parse_state_machine_arn
from executions.links import keep_tz
from executions.models import (
    Execution,
    StateMachine,
    StateMachineAlias,
    StateMachineVersion,
)
from executions.reads.activity import FAILURE_STATUSES
from executions.reads.runaways import percentile

WINDOW = dt.timedelta(hours=24)
PERCENTILE = 0.95
# AWS: an alias name has a letter, "_", "-" or "." somewhere (all digits would
# be a version), 1-80 characters.
_ALIAS_NAME = re.compile(r"^(?=.*[a-zA-Z_.-])[a-zA-Z0-9_.-]{1,80}$")


# --- ARNs ----------------------------------------------------------------------------


def parse_version_arn(value: str) -> tuple[str, int]:
    """(state machine ARN, version number) of a version ARN; NotAnArn otherwise."""
    base, _, qualifier = value.strip().rpartition(":")
    if not qualifier.isdigit() or len(qualifier) > 9 or not base:
        raise NotAnArn(f"{value[:300]!r} is not a state machine version ARN")
    return parse_state_machine_arn(base).arn, int(qualifier)


def parse_alias_arn(value: str) -> tuple[str, str]:
    """(state machine ARN, alias name) of an alias ARN; NotAnArn otherwise."""
    base, _, name = value.strip().rpartition(":")
    if not _ALIAS_NAME.match(name) or not base:
        raise NotAnArn(f"{value[:300]!r} is not a state machine alias ARN")
    return parse_state_machine_arn(base).arn, name


def label(arn: str) -> str:
    """A version or alias ARN in words ("orders, version 3", "orders, alias live")."""
    try:
        sm_arn, number = parse_version_arn(arn)
        return f"{parse_state_machine_arn(sm_arn).name}, version {number}"
    except NotAnArn:
        pass
    try:
        sm_arn, name = parse_alias_arn(arn)
        return f"{parse_state_machine_arn(sm_arn).name}, alias {name}"
    except NotAnArn:
        return arn


def list_url(tz_name: str, *, version: str = "", alias: str = "") -> str:
    """The executions list of one version or alias."""
    params = [("version", version)] if version else [("alias", alias)]
    return keep_tz(reverse("execution_list"), tz_name, params)


# --- The state machine page ------------------------------------------------------


@dataclass
class Stats:
    runs: int = 0
    closed: int = 0
    failed: int = 0
    p95_seconds: float | None = None

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.closed if self.closed else None


@dataclass
class VersionRow:
    version: StateMachineVersion
    stats: Stats
    url: str
    # (alias name, weight) of the active aliases routing to it.
    routed_by: list[tuple[str, int]] = field(default_factory=list)

    @property
    def definition(self) -> str:
        """The version's definition, indented ("" until the sync has read it)."""
        stored = self.version.definition
        return _pretty(stored.text) if stored is not None else ""


@dataclass
class Route:
    version_arn: str
    number: int | None
    weight: int
    url: str
    # Where its bar starts, in percent of the alias's traffic.
    offset: int = 0


@dataclass
class AliasRow:
    alias: StateMachineAlias
    routes: list[Route]
    url: str


@dataclass
class Versions:
    versions: list[VersionRow]
    aliases: list[AliasRow]
    since: dt.datetime
    until: dt.datetime

    @property
    def any(self) -> bool:
        return bool(self.versions or self.aliases)


def for_state_machine(sm: StateMachine, now: dt.datetime, tz_name: str = "UTC") -> Versions:
    """What the state machine page shows of its versions and aliases."""
    since = now - WINDOW
    versions = list(
        StateMachineVersion.objects.filter(state_machine=sm)
        .select_related("definition")
        .order_by("-version")
    )
    aliases = list(StateMachineAlias.objects.filter(state_machine=sm).order_by("status", "name"))
    stats = stats_by_version([v.arn for v in versions], since)
    numbers = {v.arn: v.version for v in versions}
    routed: dict[str, list[tuple[str, int]]] = defaultdict(list)
    alias_rows = []
    for alias in aliases:
        routes = []
        offset = 0
        for r in alias.routing:
            arn = str(r.get("stateMachineVersionArn", ""))
            weight = int(r.get("weight", 0))
            number = numbers.get(arn)
            if number is None:
                try:
                    number = parse_version_arn(arn)[1]
                except NotAnArn:
                    number = None
            routes.append(Route(arn, number, weight, list_url(tz_name, version=arn), offset))
            offset += weight
            if alias.status == "ACTIVE":
                routed[arn].append((alias.name, weight))
        alias_rows.append(AliasRow(alias, routes, list_url(tz_name, alias=alias.arn)))
    rows = [
        VersionRow(
            version=v,
            stats=stats.get(v.arn, Stats()),
            url=list_url(tz_name, version=v.arn),
            routed_by=routed.get(v.arn, []),
        )
        for v in versions
    ]
    return Versions(versions=rows, aliases=alias_rows, since=since, until=now)


def stats_by_version(version_arns: list[str], since: dt.datetime) -> dict[str, Stats]:
    """Runs, ends, failures and p95 duration per version ARN, of the
    executions started since `since`. One query."""
    if not version_arns:
        return {}
    if connections[Execution.objects.db].vendor == "postgresql":
        return _stats_postgresql(version_arns, since)
    return _stats_sorted_here(version_arns, since)


def _stats_postgresql(version_arns: list[str], since: dt.datetime) -> dict[str, Stats]:
    connection = connections[Execution.objects.db]
    table = connection.ops.quote_name(Execution._meta.db_table)
    # `<> ''` repeats exec_version_idx's condition, so the planner may use it.
    sql = f"""
        SELECT state_machine_version_arn,
               COUNT(*),
               COUNT(stop_date),
               COUNT(*) FILTER (WHERE status = ANY(%s)),
               percentile_cont(%s) WITHIN GROUP (
                   ORDER BY EXTRACT(EPOCH FROM stop_date - start_date)
               ) FILTER (WHERE stop_date IS NOT NULL)
        FROM {table}
        WHERE state_machine_version_arn = ANY(%s)
          AND state_machine_version_arn <> ''
          AND start_date >= %s
        GROUP BY state_machine_version_arn
    """  # noqa: S608 (the table name is ours, the values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(FAILURE_STATUSES), PERCENTILE, version_arns, since])
        rows = cursor.fetchall()
    return {
        str(arn): Stats(
            runs=int(runs),
            closed=int(closed),
            failed=int(failed),
            p95_seconds=float(p95) if p95 is not None else None,
        )
        for arn, runs, closed, failed, p95 in rows
    }


def _stats_sorted_here(version_arns: list[str], since: dt.datetime) -> dict[str, Stats]:
    """The same numbers without percentile_cont (SQLite): counts in SQL, the
    durations sorted here."""
    scope = Execution.objects.filter(
        state_machine_version_arn__in=version_arns, start_date__gte=since
    ).exclude(state_machine_version_arn="")
    out: dict[str, Stats] = {}
    counts = (
        scope.values("state_machine_version_arn")
        .annotate(
            runs=Count("id"),
            closed=Count("stop_date"),
            failed=Count("id", filter=Q(status__in=FAILURE_STATUSES)),
        )
        .order_by()
    )
    for row in counts:
        out[row["state_machine_version_arn"]] = Stats(
            runs=row["runs"], closed=row["closed"], failed=row["failed"]
        )
    durations: dict[str, list[float]] = defaultdict(list)
    ended = scope.filter(stop_date__isnull=False).values_list(
        "state_machine_version_arn", "start_date", "stop_date"
    )
    for arn, start, stop in ended:
        if stop is not None:  # excluded by the query; for the type checker
            durations[arn].append((stop - start).total_seconds())
    for arn, values in durations.items():
        out[arn].p95_seconds = percentile(values, PERCENTILE)
    return out


# --- One execution -----------------------------------------------------------------


@dataclass
class Ran:
    """What an execution ran: the version (and the alias it came through),
    and the definition, said as what it is."""

    version_arn: str
    version_number: int | None
    version_url: str
    alias_arn: str
    alias_name: str
    alias_url: str
    # The alias's routing as the cache knows it now (not when the execution started).
    routes: list[Route]
    definition: str
    definition_label: str

    @property
    def weights(self) -> str:
        return ", ".join(f"version {r.number or '?'} {r.weight}%" for r in self.routes)


def of_execution(ex: Execution, tz_name: str = "UTC") -> Ran:
    version_number: int | None = None
    if ex.state_machine_version_arn:
        try:
            version_number = parse_version_arn(ex.state_machine_version_arn)[1]
        except NotAnArn:
            version_number = None
    alias_name = ""
    routes: list[Route] = []
    if ex.state_machine_alias_arn:
        try:
            alias_name = parse_alias_arn(ex.state_machine_alias_arn)[1]
        except NotAnArn:
            alias_name = ex.state_machine_alias_arn
        alias = StateMachineAlias.objects.filter(arn=ex.state_machine_alias_arn).first()
        if alias is not None:
            offset = 0
            for r in alias.routing:
                arn = str(r.get("stateMachineVersionArn", ""))
                weight = int(r.get("weight", 0))
                try:
                    number: int | None = parse_version_arn(arn)[1]
                except NotAnArn:
                    number = None
                routes.append(Route(arn, number, weight, list_url(tz_name, version=arn), offset))
                offset += weight
    text, label = definition_of(ex)
    return Ran(
        version_arn=ex.state_machine_version_arn,
        version_number=version_number,
        version_url=list_url(tz_name, version=ex.state_machine_version_arn)
        if ex.state_machine_version_arn
        else "",
        alias_arn=ex.state_machine_alias_arn,
        alias_name=alias_name,
        alias_url=list_url(tz_name, alias=ex.state_machine_alias_arn)
        if ex.state_machine_alias_arn
        else "",
        routes=routes,
        definition=_pretty(text),
        definition_label=label,
    )


def definition_of(ex: Execution) -> tuple[str, str]:
    """(text, what it is): the definition the execution ran when the sync has
    read it, else the state machine's current one, labelled as such."""
    ran = ex.definition if ex.definition_id is not None else None
    if ran is not None:
        if ex.state_machine_version_arn:
            return ran.text, "the definition this execution ran (its version's)"
        return ran.text, "the definition this execution ran"
    if ex.state_machine.definition:
        return (
            ex.state_machine.definition,
            "the state machine's current definition: the one this execution ran is not "
            "known yet, and may differ",
        )
    return "", "not known: the state machine has not been described yet"


def _pretty(text: str) -> str:
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
