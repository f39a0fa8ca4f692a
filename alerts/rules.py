"""The rules against the cache (never AWS): what holds now, by rule and
subject. One query per kind of rule, whatever the number of rules, so that a
tick costs a handful of round trips to the database:

- LONG_RUNNING: the open executions started (or last redriven) longer ago
  than the shortest of these rules' durations (the partial index of the
  running set); each rule then keeps its state machine's and its duration's,
  one subject per execution, the oldest CAP opened first.
- FAILURES: one aggregate over the failed, timed-out and aborted executions
  that ended within the longest window (the failures index, on the stop
  date), a count and a latest stop per rule (its state machine, error and
  window); one subject, the rule.
- MAP_RUN_TOLERANCE: the running Map Runs (the Map Run scheduler's partial
  index: an open Map Run is always due); a rule fires for those of its state
  machine whose failed and timed-out items reached `percent` of what they
  tolerate; one subject per Map Run.
- NO_START: the rules' state machines, each with its newest start (one probe
  of its (state machine, start) index), quiet for `duration` as confirmed by
  a listing made after that deadline: the sync knows of no start only up to
  its last listing, so a late listing delays the alert rather than raising a
  false one.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, OuterRef, Q, Subquery

from executions.models import FAILURE_STATUSES, OPEN_STATUSES, Execution, MapRun, StateMachine
from executions.text.incident import utc_text
from executions.times import human_seconds

from .models import AlertRule

log = logging.getLogger(__name__)

# Subjects one rule opens per check: a rule that matches thousands of
# executions fires for the oldest ones first.
CAP = 50
# Running executions or Map Runs read per check at most (a runaway incident's
# worth); beyond, the oldest are judged.
MAX_ROWS = 10_000


@dataclass(frozen=True)
class Finding:
    subject: str
    label: str
    detail: str
    execution_id: int | None = None


@dataclass
class Found:
    """What holds now for one rule: `by_subject`, at most CAP, to open;
    `held`, every subject that holds, so that none beyond the cap is resolved."""

    by_subject: dict[str, Finding] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)

    def add(self, finding: Finding) -> None:
        self.held.add(finding.subject)
        if len(self.by_subject) < CAP:
            self.by_subject[finding.subject] = finding


Batch = Callable[[Sequence[AlertRule], dt.datetime], dict[int, Found]]


def evaluate_all(
    rules: Sequence[AlertRule], now: dt.datetime
) -> tuple[dict[int, Found], list[str]]:
    """What holds for each rule (by pk), and the rules that could not be
    checked (a kind's query failed: the other kinds are still checked)."""
    found: dict[int, Found] = {}
    errors: list[str] = []
    for kind, check in CHECKS.items():
        batch = [rule for rule in rules if rule.kind == kind]
        if not batch:
            continue
        try:
            found.update(check(batch, now))
        except Exception as exc:
            # A query cancelled, say: the other kinds are still checked.
            log.exception("the %s alert rules could not be checked", kind.value)
            errors.extend(f"{rule.name}: {type(exc).__name__}" for rule in batch)
    return found, errors


def evaluate(rule: AlertRule, now: dt.datetime) -> Found:
    return CHECKS[AlertRule.Kind(rule.kind)]([rule], now)[rule.pk]


def _long_running(rules: Sequence[AlertRule], now: dt.datetime) -> dict[int, Found]:
    since = now - dt.timedelta(seconds=min(rule.duration_seconds or 0 for rule in rules))
    rows = list(
        Execution.objects.filter(status__in=OPEN_STATUSES, start_date__lte=since)
        .filter(Q(redrive_date__isnull=True) | Q(redrive_date__lte=since))
        .order_by("start_date", "id")
        .values_list(
            "pk", "arn", "name", "start_date", "redrive_date", "state_machine__arn",
            "state_machine__name",
        )[:MAX_ROWS]
    )  # fmt: skip
    found = {rule.pk: Found() for rule in rules}
    for pk, arn, name, start, redriven, machine_arn, machine in rows:
        began = max(start, redriven) if redriven else start
        running = (now - began).total_seconds()
        since_redrive = " since its redrive" if began != start else ""
        for rule in rules:
            if rule.state_machine_arn and rule.state_machine_arn != machine_arn:
                continue
            if running < (rule.duration_seconds or 0):
                continue
            found[rule.pk].add(
                Finding(
                    subject=arn,
                    label=f"{machine} · {name}",
                    detail=f"running for {human_seconds(running)}{since_redrive}",
                    execution_id=pk,
                )
            )
    return found


def _failures(rules: Sequence[AlertRule], now: dt.datetime) -> dict[int, Found]:
    longest = max(rule.window_seconds or 0 for rule in rules)
    machines = {
        arn: pk
        for arn, pk in StateMachine.objects.filter(
            arn__in={rule.state_machine_arn for rule in rules if rule.state_machine_arn}
        ).values_list("arn", "pk")
    }

    def matching(rule: AlertRule) -> Q:
        q = Q(stop_date__gte=now - dt.timedelta(seconds=rule.window_seconds or 0))
        if rule.state_machine_arn:
            q &= Q(state_machine_id=machines.get(rule.state_machine_arn, 0))
        if rule.error:
            q &= Q(error=rule.error)
        return q

    aggregates: dict[str, Any] = {}
    for rule in rules:
        aggregates[f"n{rule.pk}"] = Count("id", filter=matching(rule))
        aggregates[f"last{rule.pk}"] = Max("stop_date", filter=matching(rule))
    recent = Execution.objects.filter(
        status__in=FAILURE_STATUSES, stop_date__gte=now - dt.timedelta(seconds=longest)
    )
    counted = recent.aggregate(**aggregates)
    found = {rule.pk: Found() for rule in rules}
    for rule in rules:
        n = counted[f"n{rule.pk}"] or 0
        if n < (rule.threshold or 1):
            continue
        latest = (
            recent.filter(matching(rule))
            .order_by("-stop_date", "-id")
            .values_list("pk", flat=True)
            .first()
        )
        found[rule.pk].add(
            Finding(
                subject="",
                label=rule.machine_words + (f" · {rule.error}" if rule.error else ""),
                detail=f"{n} failures in the last {human_seconds(rule.window_seconds or 0)} "
                f"(threshold {rule.threshold}); the latest ended "
                f"{utc_text(counted[f'last{rule.pk}'])}",
                execution_id=latest,
            )
        )
    return found


def tolerance_used(counts: dict[str, Any], percentage: float, count: int) -> tuple[int, int]:
    """(failures, failures tolerated) of a Map Run, as AWS counts them: failed
    and timed-out items against the lower of the two limits (none set: none
    tolerated)."""
    total = int(counts.get("total") or 0)
    failures = int(counts.get("failed") or 0) + int(counts.get("timedOut") or 0)
    limits = [int(count)] if count else []
    if percentage:
        limits.append(math.floor(total * percentage / 100))
    return failures, min(limits) if limits else 0


def _map_runs(rules: Sequence[AlertRule], now: dt.datetime) -> dict[int, Found]:
    # An open Map Run is always due for the sync (sync/map_runs.py), so the
    # scheduler's partial index holds every running one.
    rows = (
        MapRun.objects.filter(sync_due_at__isnull=False, status="RUNNING")
        .order_by("start_date", "id")
        .values_list(
            "arn", "item_counts", "tolerated_failure_percentage", "tolerated_failure_count",
            "execution_id", "execution__name", "execution__state_machine__arn",
        )[:MAX_ROWS]
    )  # fmt: skip
    found = {rule.pk: Found() for rule in rules}
    for arn, counts, percentage, count, parent, parent_name, machine_arn in rows:
        failures, allowed = tolerance_used(counts or {}, percentage, count)
        if failures == 0:
            continue
        used = failures * 100.0 / allowed if allowed else math.inf
        share = f"{used:.0f} %" if allowed else "none tolerated"
        for rule in rules:
            if rule.state_machine_arn and rule.state_machine_arn != machine_arn:
                continue
            if used < (rule.percent or 0):
                continue
            found[rule.pk].add(
                Finding(
                    subject=arn,
                    label=f"{parent_name} · Map Run {arn.rsplit(':', 1)[-1][:8]}",
                    detail=f"{failures} failed of {allowed} tolerated ({share})",
                    execution_id=parent,
                )
            )
    return found


def _no_start(rules: Sequence[AlertRule], now: dt.datetime) -> dict[int, Found]:
    # Correlated on the state machine's key: one probe of the (state machine,
    # start) index each, however long the machine has been quiet.
    newest = Execution.objects.filter(state_machine=OuterRef("pk")).order_by("-start_date", "-id")
    machines = {
        row["arn"]: row
        for row in StateMachine.objects.filter(arn__in={rule.state_machine_arn for rule in rules})
        .annotate(
            last_start=Subquery(newest.values("start_date")[:1]),
            last_pk=Subquery(newest.values("pk")[:1]),
        )
        .values("arn", "name", "listed_at", "last_start", "last_pk")
    }
    found = {rule.pk: Found() for rule in rules}
    for rule in rules:
        row = machines.get(rule.state_machine_arn)
        if row is None:
            continue  # not in the cache (forgotten): nothing to judge by
        quiet = dt.timedelta(seconds=rule.duration_seconds or 0)
        since = row["last_start"] or rule.created_at
        listed = row["listed_at"]
        if now < since + quiet or listed is None or listed < since + quiet:
            continue
        what = f"the last start was {utc_text(since)}" if row["last_start"] else "never started"
        found[rule.pk].add(
            Finding(
                subject="",
                label=row["name"],
                detail=f"no start for {human_seconds((now - since).total_seconds())}: {what}",
                execution_id=row["last_pk"],
            )
        )
    return found


CHECKS: dict[AlertRule.Kind, Batch] = {
    AlertRule.Kind.LONG_RUNNING: _long_running,
    AlertRule.Kind.FAILURES: _failures,
    AlertRule.Kind.MAP_RUN_TOLERANCE: _map_runs,
    AlertRule.Kind.NO_START: _no_start,
}
