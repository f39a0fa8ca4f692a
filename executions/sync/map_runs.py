"""Distributed Map runs in the cache: the MapRun rows and their child executions.

A parent's history says a Map Run started (MapRunStarted, with its ARN);
`note_map_runs` makes its row, due at once. `sync_map_run` then describes it
(DescribeMapRun) and lists its children (ListExecutions with `mapRunArn`)
into Execution rows of the child state machine (`...:stateMachine:PARENT/LABEL`),
with the same rules as a state machine's listing:

- newest first, down to `children_watermark` only (every child started at or
  before it is known); the watermark moves only after the listing reached it;
- children cached as running are checked against ListExecutions(RUNNING);
  those that left it are flagged for DescribeExecution (the execution sync
  learns their end, without history for an Express Map Run's children);
- settled (closed, described after it closed, children listed after it
  closed): `sync_due_at` null, no more calls;
- throttling reschedules, other errors back off (doubling, capped).

Each child is then an ordinary execution for the execution sync.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from executions import aws, budget
from executions.budget import BudgetExhausted
from executions.event_types import MAP_RUN_END_TYPES
from executions.models import Execution, MapRun, StateMachine, SyncRun
from executions.sync.rows import in_chunks, upsert_listed
from executions.sync.runs import Stats, describe_error, recording

log = logging.getLogger(__name__)

# Map Runs handed out per tick, at most (each costs a DescribeMapRun and a
# listing or two); fewer when the DescribeMapRun budget holds fewer tokens.
PER_TICK = 20
MAX_BACKOFF = 600.0


# --- From a parent's history ------------------------------------------------------


def note_map_runs(execution_pk: int, events: Iterable[dict[str, Any]]) -> int:
    """MapRunStarted events make MapRun rows (due now); a Map Run's end event
    makes the execution's open Map Runs due now, a MapRunRedriven all of them
    (a redriven Map Run runs again). Returns the rows made."""
    now = timezone.now()
    new: list[MapRun] = []
    ended = redriven = False
    for event in events:
        kind = event.get("type")
        if kind == "MapRunStarted":
            details = event.get("mapRunStartedEventDetails") or {}
            arn = str(details.get("mapRunArn") or "")
            if arn:
                new.append(
                    MapRun(
                        arn=arn[:2048],
                        execution_id=execution_pk,
                        status="RUNNING",
                        start_date=aws.utc(event["timestamp"]),
                        sync_due_at=now,
                    )
                )
        elif kind in MAP_RUN_END_TYPES:
            ended = True
        elif kind == "MapRunRedriven":
            redriven = True
    if new:
        MapRun.objects.bulk_create(new, ignore_conflicts=True)
    if ended:
        MapRun.objects.filter(execution_id=execution_pk, status="RUNNING").update(sync_due_at=now)
    if redriven:
        # A redriven Map Run runs again: settled no more.
        MapRun.objects.filter(execution_id=execution_pk).update(sync_due_at=now)
    return len(new)


# --- The child state machine -------------------------------------------------------


def child_state_machine_arn(map_run_arn: str) -> str:
    """arn:...:mapRun:PARENT/LABEL:uuid -> arn:...:stateMachine:PARENT/LABEL"""
    parts = map_run_arn.split(":")
    if len(parts) != 8 or parts[5] != "mapRun" or "/" not in parts[6]:
        raise ValueError(f"{map_run_arn[:300]!r} is not a Map Run ARN")
    return ":".join([*parts[:5], "stateMachine", parts[6]])


def child_state_machine(arn: str, parent: StateMachine | None = None) -> StateMachine:
    """The row of a Map Run's child state machine (`...:stateMachine:PARENT/LABEL`).
    Never listed on its own (list_due_at null): its children come through
    their Map Run. Its type is the ItemProcessor's ExecutionType in the
    parent's definition (EXPRESS children have no history API)."""
    parts = arn.split(":")
    if len(parts) != 7 or parts[5] != "stateMachine" or "/" not in parts[6]:
        raise ValueError(f"{arn[:300]!r} is not a Map Run's state machine ARN")
    name = parts[6]
    existing = StateMachine.objects.filter(arn=arn).first()
    if existing is not None:
        return existing
    if parent is None:
        parent = StateMachine.objects.filter(
            arn=":".join([*parts[:6], name.split("/", 1)[0]])
        ).first()
    kind = _processor_type(parent.definition if parent else "", name.split("/", 1)[1])
    sm, _ = StateMachine.objects.get_or_create(
        arn=arn,
        defaults={
            "name": name[:80],
            "type": kind,
            "region": parts[3],
            "account": parts[4],
            "list_due_at": None,
        },
    )
    return sm


def _processor_type(definition: str, label: str) -> str:
    """EXPRESS or STANDARD: the ExecutionType of the distributed Map named (or
    labelled) `label` in the definition; STANDARD when it cannot be told."""
    try:
        asl = json.loads(definition or "{}")
    except ValueError:
        return "STANDARD"
    stack = [asl]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        for name, state in (node.get("States") or {}).items():
            if not isinstance(state, dict):
                continue
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if state.get("Type") == "Map" and isinstance(processor, dict):
                if label in (name, state.get("Label")):
                    config = processor.get("ProcessorConfig") or {}
                    return "EXPRESS" if config.get("ExecutionType") == "EXPRESS" else "STANDARD"
                stack.append(processor)
            for branch in state.get("Branches") or []:
                stack.append(branch)
    return "STANDARD"


# --- Syncing one -------------------------------------------------------------------


def store_description(run: MapRun, d: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "status": d.get("status", run.status),
        "start_date": aws.utc(d["startDate"]) if d.get("startDate") else run.start_date,
        "stop_date": aws.utc(d.get("stopDate")),
        "max_concurrency": int(d.get("maxConcurrency") or 0),
        "tolerated_failure_percentage": float(d.get("toleratedFailurePercentage") or 0),
        "tolerated_failure_count": int(d.get("toleratedFailureCount") or 0),
        "item_counts": d.get("itemCounts") or {},
        "execution_counts": d.get("executionCounts") or {},
        "redrive_count": int(d.get("redriveCount") or 0),
        "redrive_date": aws.utc(d.get("redriveDate")),
        "described_at": timezone.now(),
    }
    MapRun.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


def sync_map_run(run: MapRun, stats: Stats) -> None:
    """DescribeMapRun, then the children that are new or changed.

    Raises aws.Throttled (rescheduled) and aws.Unavailable (recorded) for the
    caller to stop; records other AWS errors on the row, with backoff.
    """
    now = timezone.now()
    try:
        # Due means something may have changed (a settled one is never due).
        store_description(run, aws.describe_map_run(run.arn))
        listed_from = timezone.now()
        _list_children(run, stats)
    except (aws.Throttled, BudgetExhausted):
        MapRun.objects.filter(pk=run.pk).update(
            sync_due_at=now + dt.timedelta(seconds=settings.SFNUI_RUNNING_MIN_INTERVAL)
        )
        raise
    except aws.Unavailable as exc:
        _failed(run, describe_error(exc))
        raise
    except aws.AwsError as exc:
        _failed(run, describe_error(exc))
        stats.errors.append(describe_error(exc))
        return
    MapRun.objects.filter(pk=run.pk).update(
        children_listed_at=listed_from,
        sync_error="",
        sync_failures=0,
        sync_due_at=_next_due(run, listed_from),
    )
    run.children_listed_at = listed_from


def _next_due(run: MapRun, listed_at: dt.datetime) -> dt.datetime | None:
    if not run.is_open:
        if run.stop_date is not None and listed_at >= run.stop_date:
            return None  # settled: closed, described, children listed since
        return listed_at + dt.timedelta(seconds=settings.SFNUI_RUNNING_MIN_INTERVAL)
    age = (listed_at - run.start_date).total_seconds()
    interval = min(
        max(age * 0.1, settings.SFNUI_RUNNING_MIN_INTERVAL), settings.SFNUI_RUNNING_MAX_INTERVAL
    )
    return listed_at + dt.timedelta(seconds=interval)


def _failed(run: MapRun, error: str) -> None:
    failures = run.sync_failures + 1
    delay = min(settings.SFNUI_RUNNING_MIN_INTERVAL * 2**failures, MAX_BACKOFF)
    MapRun.objects.filter(pk=run.pk).update(
        sync_failures=failures,
        sync_error=error[:2000],
        sync_due_at=timezone.now() + dt.timedelta(seconds=delay),
    )


def _list_children(run: MapRun, stats: Stats) -> None:
    sm = child_state_machine(child_state_machine_arn(run.arn))
    watermark = run.children_watermark
    newest: dt.datetime | None = None
    started = timezone.now()
    for page in aws.list_executions("", map_run_arn=run.arn):
        if not page:
            break
        if newest is None:
            newest = aws.utc(page[0]["startDate"])
        upsert_listed(sm, page, stats)
        if watermark is not None and aws.utc(page[-1]["startDate"]) < watermark:
            break
    if newest is not None:
        MapRun.objects.filter(
            Q(children_watermark__isnull=True) | Q(children_watermark__lt=newest), pk=run.pk
        ).update(children_watermark=newest)
        run.children_watermark = max(newest, watermark or newest)
    cached_running = Execution.objects.filter(
        map_run_arn=run.arn, status="RUNNING", start_date__lt=started
    )
    if watermark is None or not cached_running.exists():
        return
    # Children that ended since: ListExecutions(RUNNING) no longer shows them.
    running: set[str] = set()
    for page in aws.list_executions("", map_run_arn=run.arn, status="RUNNING"):
        upsert_listed(sm, page, stats)
        running.update(item["executionArn"] for item in page)
    left = [
        pk
        for pk, arn in cached_running.values_list("pk", "arn").iterator(chunk_size=2000)
        if arn not in running
    ]
    now = timezone.now()
    for chunk in in_chunks(left, 500):
        stats.executions_changed += Execution.objects.filter(pk__in=chunk, status="RUNNING").update(
            needs_describe=True, sync_due_at=now
        )


def sync_map_runs(pks: list[int], region: str, account: str = "") -> Stats:
    """Sync a batch of Map Runs (of one identity and region); stop early when
    AWS says to slow down or cannot be reached."""
    with recording(SyncRun.Kind.EXECUTIONS, region, account=account) as stats:
        pending = list(MapRun.objects.filter(pk__in=pks).order_by("sync_due_at"))
        for i, run in enumerate(pending):
            if aws.out_of_time():
                stats.unfinished = [r.pk for r in pending[i:]]
                break
            try:
                sync_map_run(run, stats)
            except (aws.Throttled, BudgetExhausted, aws.Unavailable):
                later = timezone.now() + dt.timedelta(seconds=settings.SFNUI_RUNNING_MIN_INTERVAL)
                MapRun.objects.filter(pk__in=[r.pk for r in pending[i + 1 :]]).update(
                    sync_due_at=later
                )
                raise
    return stats


# --- What is due -------------------------------------------------------------------


def claim_due(now: dt.datetime | None = None) -> list[tuple[str, str, list[int]]]:
    """The Map Runs due, per identity and region, no more than the
    DescribeMapRun budget holds right now; claimed for a lease."""
    now = now or timezone.now()
    until = now + dt.timedelta(seconds=settings.SFNUI_SYNC_LEASE)
    out: list[tuple[str, str, list[int]]] = []
    for t, region in aws.scheduled():
        try:
            tokens, _ = budget.level(region, "DescribeMapRun", t.key)
        except Exception:
            tokens = PER_TICK  # the store is down: AWS's throttling is the backstop
        room = max(1, min(PER_TICK, int(tokens)))
        due = MapRun.objects.filter(
            sync_due_at__lte=now, execution__state_machine__region=region
        ).order_by("sync_due_at")
        if t.role_arn:
            due = due.filter(execution__state_machine__account=t.key)
        claimed = []
        for pk, due_at in due.values_list("pk", "sync_due_at")[:room]:
            if MapRun.objects.filter(pk=pk, sync_due_at=due_at).update(sync_due_at=until):
                claimed.append(pk)
        if claimed:
            out.append((t.key, region, claimed))
    return out


# --- Children without a history ----------------------------------------------------


def without_history(ex: Execution) -> bool:
    """A child of an Express Map Run: AWS has no history API for it."""
    return StateMachine.objects.filter(pk=ex.state_machine_id, type="EXPRESS").exists()
