"""The sync: AWS pages in, idempotent upserts out.

Plain functions that tasks.py and the `sync` command call. Every write is
keyed by ARN or by (execution, event id) and guarded so that a sync that runs
twice, runs concurrently with another, or is killed halfway leaves the cache
correct:

- new rows are inserted with ON CONFLICT DO NOTHING;
- changed rows are updated by compare-and-set on what was read before;
- watermarks (`StateMachine.list_watermark`, `Execution.last_event_id`)
  only move after the work below them is stored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from executions import aws, signals
from executions.arns import parse_execution_arn, parse_state_machine_arn
from executions.budget import BudgetExhausted
from executions.event_types import TERMINAL_TYPES
from executions.models import (
    OPEN_STATUSES,
    SYNC_LAGGING,
    Execution,
    HistoryEvent,
    StateMachine,
    SyncRun,
)
from executions.sync import plan

log = logging.getLogger(__name__)

# GetExecutionHistory's maximum page: fewest calls.
HISTORY_PAGE_SIZE = 1000
EVENT_BATCH = 500
# SQLite's limit on bound parameters, with room to spare.
IN_CHUNK = 500
# A running execution missing from ListExecutions(RUNNING) is only taken as
# closed if it started this long before the listing: AWS is eventually
# consistent, and a listing does not see what started while it ran.
LISTING_MARGIN = dt.timedelta(seconds=5)
# Ends are learned from one listing of every status when at most this many
# executions started since the oldest one that ended (two pages), else from a
# listing per closed status, each at most CLOSED_MAX_PAGES pages a cycle.
CLOSED_SCAN_ALL = 2000
CLOSED_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
CLOSED_MAX_PAGES = 3
# With events on, a change a listing finds counts as missed by the events
# when it happened longer ago than this (EventBridge delivers within seconds).
EVENTS_GRACE = dt.timedelta(seconds=60)
# An execution that ListExecutions showed and DescribeExecution does not know
# is retried this many times (about two minutes) as "waiting for AWS" before
# it counts as a sync error.
LAGGING_RETRIES = 6
# State machine definitions change on deploys; read them again this often.
DESCRIBE_STATE_MACHINE_EVERY = dt.timedelta(hours=1)


@dataclass
class Stats:
    state_machines: int = 0
    executions_new: int = 0
    executions_changed: int = 0
    executions_synced: int = 0
    events: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    throttled: bool = False
    # Executions a throttled batch did not get to (rescheduled for later).
    unfinished: list[int] = field(default_factory=list)
    # Executions a listing found new or changed: worth syncing right away.
    flagged: list[str] = field(default_factory=list)
    # With events flowing, a listing is reconciliation: what it found that the
    # events should have brought already.
    reconciling: bool = False
    missed_events: int = 0
    missed_example: str = ""
    # A listing learned ends from the closed statuses (no DescribeExecution).
    ends_listed: int = 0
    # State machines a discovery left to describe (see discover_state_machines).
    to_describe: list[int] = field(default_factory=list)
    # AWS could not be reached (or gave no answer): the rest of this identity
    # and region would meet the same.
    unreachable: bool = False

    @property
    def rows(self) -> int:
        return self.state_machines + self.executions_new + self.executions_changed + self.events

    def merge(self, other: Stats) -> None:
        self.state_machines += other.state_machines
        self.executions_new += other.executions_new
        self.executions_changed += other.executions_changed
        self.executions_synced += other.executions_synced
        self.events += other.events
        self.calls.update(other.calls)
        self.errors.extend(other.errors)
        self.throttled = self.throttled or other.throttled
        self.unreachable = self.unreachable or other.unreachable
        self.unfinished.extend(other.unfinished)
        self.flagged.extend(other.flagged)
        self.missed_events += other.missed_events
        self.missed_example = self.missed_example or other.missed_example
        self.ends_listed += other.ends_listed

    def summary(self) -> str:
        calls = ", ".join(f"{op} {n}" for op, n in sorted(self.calls.items())) or "none"
        return (
            f"state machines: {self.state_machines}; "
            f"executions: {self.executions_new} new, {self.executions_changed} changed, "
            f"{self.executions_synced} synced; events: {self.events}; "
            f"API calls: {calls} (total {sum(self.calls.values())})"
        )


@contextlib.contextmanager
def recording(
    kind: str,
    region: str,
    state_machine: StateMachine | None = None,
    account: str = "",
) -> Iterator[Stats]:
    """Count the calls made inside the block and keep a SyncRun of them.

    AWS errors end the block and are recorded, not raised: the sync is
    expected to meet them and to try again later. Anything else is recorded
    and raised.
    """
    stats = Stats()
    run = SyncRun(
        kind=kind,
        account=account,
        region=region,
        state_machine=state_machine,
        started_at=timezone.now(),
    )
    with aws.count_calls() as calls:
        try:
            yield stats
        except (aws.Throttled, BudgetExhausted) as exc:
            stats.throttled = True
            stats.errors.append(f"throttled: {exc}")
        except aws.AwsError as exc:
            stats.unreachable = isinstance(exc, aws.Unavailable)
            stats.errors.append(_describe_error(exc))
        except Exception as exc:
            stats.errors.append(f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            stats.calls.update(calls)
            run.finished_at = timezone.now()
            run.api_calls = dict(calls)
            run.rows_written = stats.rows
            run.throttled = stats.throttled
            run.error = "\n".join(stats.errors)[:10_000]
            run.ok = not stats.errors
            run.missed_events = stats.missed_events
            run.missed_example = stats.missed_example[:2048]
            run.save()


_KINDS: tuple[tuple[type[aws.AwsError], str], ...] = (
    (aws.NotFound, "not found"),
    (aws.InvalidArn, "invalid"),
    (aws.Throttled, "throttled"),
    (aws.Unavailable, "AWS unreachable"),  # NoAnswer too
    (aws.NotConfigured, "not configured"),
)


def _describe_error(exc: aws.AwsError) -> str:
    kind = next((kind for cls, kind in _KINDS if isinstance(exc, cls)), "AWS error")
    where = f" in {exc.operation}" if exc.operation else ""
    code = f" {exc.code}" if exc.code else ""
    return f"{kind}{where}:{code} {exc.message}"[:2000]


# --- State machines ------------------------------------------------------------


def discover_state_machines(
    region: str, account: str = aws.DEFAULT, describe: bool = True
) -> Stats:
    """ListStateMachines of one identity (aws.Target.key) in one region; describe
    the new ones (and stale definitions), or with `describe` off leave them in
    `stats.to_describe` (the task hands them out in small batches, so that a
    thousand DescribeStateMachine calls never hold a worker for half a minute
    while listings wait)."""
    with recording(SyncRun.Kind.DISCOVER, region, account=account) as stats:
        t = aws.target(account)
        now = timezone.now()
        seen: set[str] = set()
        for item in aws.list_state_machines(region, t):
            arn = item["stateMachineArn"]
            seen.add(arn)
            parsed = parse_state_machine_arn(arn)
            sm, created = StateMachine.objects.get_or_create(
                arn=arn,
                defaults={
                    "name": item["name"],
                    "type": item.get("type", "STANDARD"),
                    "region": parsed.region,
                    "account": parsed.account,
                    "creation_date": aws.utc(item.get("creationDate")),
                    "list_due_at": now,
                },
            )
            if not created and (sm.status == "DELETED" or sm.name != item["name"]):
                StateMachine.objects.filter(pk=sm.pk).update(
                    name=item["name"], status="ACTIVE", list_due_at=now
                )
            stats.state_machines += 1
            if sm.described_at is None or now - sm.described_at > DESCRIBE_STATE_MACHINE_EVERY:
                if describe:
                    _describe_state_machine(sm)
                else:
                    stats.to_describe.append(sm.pk)
        # What this identity reads in the region and no longer lists is gone.
        gone = plan.machines(account, region).exclude(arn__in=seen)
        gone.update(status="DELETED", list_due_at=None)
    return stats


def describe_state_machines(pks: list[int], region: str, account: str = "") -> Stats:
    """DescribeStateMachine of a batch (new ones, or definitions due again)."""
    with recording(SyncRun.Kind.DISCOVER, region, account=account) as stats:
        for sm in StateMachine.objects.filter(pk__in=pks):
            _describe_state_machine(sm)
            stats.state_machines += 1
    return stats


def _describe_state_machine(sm: StateMachine) -> None:
    d = aws.describe_state_machine(sm.arn)
    StateMachine.objects.filter(pk=sm.pk).update(
        type=d.get("type", sm.type),
        definition=_clean(d.get("definition", "")),
        role_arn=d.get("roleArn", ""),
        status=d.get("status", "ACTIVE"),
        described_at=timezone.now(),
    )


def state_machine_for(arn: str) -> StateMachine:
    """The cached state machine, or a stub named from its ARN (filled by discovery)."""
    parsed = parse_state_machine_arn(arn)
    sm, _ = StateMachine.objects.get_or_create(
        arn=arn,
        defaults={
            "name": parsed.name,
            "region": parsed.region,
            "account": parsed.account,
            # Only what the configured identities read is listed on a schedule.
            "list_due_at": timezone.now() if is_scheduled(parsed.account, parsed.region) else None,
        },
    )
    return sm


def is_scheduled(account: str, region: str) -> bool:
    """Whether the sync reads `account` in `region` on its schedule."""
    try:
        t = aws.target_for(account, region)
    except aws.NotConfigured:
        return False
    return region in t.regions


# --- Listing executions ----------------------------------------------------------


def list_state_machine(sm: StateMachine) -> Stats:
    """Find new executions and status changes of one state machine.

    ListExecutions newest first, stopping at the watermark: every execution
    started since the oldest one listed is seen, with its status. Running
    executions older than that are checked with ListExecutions(RUNNING),
    only if the cache holds any; the ones that left it get their new status
    from the closed statuses' listings (up to 1,000 a call), so that
    DescribeExecution is not on the way to the right status.
    """
    account = account_key(sm)
    with recording(SyncRun.Kind.LIST, sm.region, sm, account=account) as stats:
        stats.reconciling = plan.events_flowing()
        started = timezone.now()
        reached = _list_new(sm, stats)
        older_open = Execution.objects.filter(state_machine=sm, status__in=OPEN_STATUSES)
        if reached is not None:
            older_open = older_open.filter(start_date__lte=reached)
        if reached is not _EVERYTHING and older_open.exists():
            _refresh_running(sm, started, stats)
    _schedule_listing(sm, stats, account)
    return stats


def account_key(sm: StateMachine) -> str:
    """The identity that reads this state machine (its budget pays the calls)."""
    return aws.key_for(sm.account, sm.region)


# _list_new's answer when it listed every execution AWS has for the machine.
_EVERYTHING = dt.datetime.min.replace(tzinfo=dt.UTC)


def _list_new(sm: StateMachine, stats: Stats) -> dt.datetime | None:
    """List newest first down to the watermark. Returns the start date of the
    oldest execution listed (_EVERYTHING when the listing reached the end,
    None when AWS listed nothing)."""
    watermark = sm.list_watermark
    newest: dt.datetime | None = None
    oldest: dt.datetime | None = None
    exhausted = True
    for page in aws.list_executions(sm.arn):
        if not page:
            break
        if newest is None:
            newest = aws.utc(page[0]["startDate"])
        _upsert_listed(sm, page, stats)
        oldest = aws.utc(page[-1]["startDate"])
        if watermark is not None and oldest < watermark:
            # Known from here on; whether older ones exist, AWS told us.
            exhausted = not getattr(page, "more", True)
            break
    if newest is not None:
        # Everything at or before `newest` is now known; move the watermark
        # forward only (a slower concurrent listing must not move it back).
        StateMachine.objects.filter(
            Q(list_watermark__isnull=True) | Q(list_watermark__lt=newest), pk=sm.pk
        ).update(list_watermark=newest)
    if exhausted:
        return _EVERYTHING
    return oldest


def _refresh_running(sm: StateMachine, started: dt.datetime, stats: Stats) -> None:
    running: set[str] = set()
    for page in aws.list_executions(sm.arn, status="RUNNING"):
        _upsert_listed(sm, page, stats)
        running.update(item["executionArn"] for item in page)
    cached = Execution.objects.filter(
        state_machine=sm, status="RUNNING", start_date__lt=started - LISTING_MARGIN
    ).values_list("pk", "arn", "start_date")
    ended = [row for row in cached.iterator(chunk_size=2000) if row[1] not in running]
    if ended:
        _learn_ends(sm, ended, stats)


def _learn_ends(sm: StateMachine, ended: list[tuple[int, str, dt.datetime]], stats: Stats) -> None:
    """Executions that left the running set: their new status and stop date from
    the closed statuses' listings, newest first down to the oldest that left.

    One listing of every status when few executions started since then (it
    holds them all in a page or two), else one per closed status. What these
    pages do not show (AWS lags, or it lies too far back) is flagged for
    DescribeExecution, as before.
    """
    missing = {arn: pk for pk, arn, _ in ended}
    oldest = min(start for _, _, start in ended)
    newer = (
        Execution.objects.filter(state_machine=sm, start_date__gte=oldest)
        .values("pk")[: CLOSED_SCAN_ALL + 1]
        .count()
    )
    listings: tuple[str | None, ...] = (None,) if newer <= CLOSED_SCAN_ALL else CLOSED_STATUSES
    for status in listings:
        for pages, page in enumerate(aws.list_executions(sm.arn, status=status), start=1):
            found = [item for item in page if item["executionArn"] in missing]
            found = [item for item in found if item["status"] not in OPEN_STATUSES]
            if found:
                before = stats.executions_changed
                _upsert_listed(sm, found, stats)
                stats.ends_listed += stats.executions_changed - before
                for item in found:
                    missing.pop(item["executionArn"], None)
            if (
                not missing
                or not page
                or aws.utc(page[-1]["startDate"]) < oldest
                or pages >= CLOSED_MAX_PAGES
            ):
                break
        if not missing:
            return
    now = timezone.now()
    left = list(missing.items())
    for chunk in _chunks(left, IN_CHUNK):
        # Its new status is not in the listings; DescribeExecution will tell.
        stats.executions_changed += Execution.objects.filter(
            pk__in=[pk for _, pk in chunk], status="RUNNING"
        ).update(needs_describe=True, sync_due_at=now)
        stats.flagged.extend(arn for arn, _ in chunk)


def _upsert_listed(sm: StateMachine, items: list[dict[str, Any]], stats: Stats) -> None:
    now = timezone.now()
    for chunk in _chunks(items, IN_CHUNK):
        arns = [item["executionArn"] for item in chunk]
        known = {
            arn: (pk, status, redrive_count)
            for pk, arn, status, redrive_count in Execution.objects.filter(
                arn__in=arns
            ).values_list("pk", "arn", "status", "redrive_count")
        }
        new_rows = []
        for item in chunk:
            arn = item["executionArn"]
            if arn not in known:
                new_rows.append(
                    Execution(
                        arn=arn,
                        name=item["name"],
                        state_machine=sm,
                        status=item["status"],
                        start_date=aws.utc(item["startDate"]),
                        stop_date=aws.utc(item.get("stopDate")),
                        redrive_count=item.get("redriveCount", 0),
                        redrive_date=aws.utc(item.get("redriveDate")),
                        map_run_arn=item.get("mapRunArn", ""),
                        state_machine_version_arn=item.get("stateMachineVersionArn", ""),
                        state_machine_alias_arn=item.get("stateMachineAliasArn", ""),
                        needs_describe=True,
                        sync_due_at=now,
                    )
                )
                continue
            pk, status, redrive_count = known[arn]
            change = _listed_change(item, status, redrive_count)
            if change is None:
                continue
            # Compare-and-set: only if nobody changed the row since we read it.
            if Execution.objects.filter(pk=pk, status=status, redrive_count=redrive_count).update(
                **change, sync_due_at=now
            ):
                stats.executions_changed += 1
                if change.get("needs_describe"):
                    stats.flagged.append(arn)
                if stats.reconciling:
                    changed_at = change.get("redrive_date") or change.get("stop_date")
                    _missed(stats, arn, changed_at, now)
        if new_rows:
            Execution.objects.bulk_create(new_rows, ignore_conflicts=True)
            stats.executions_new += len(new_rows)
            stats.flagged.extend(row.arn for row in new_rows)
            if stats.reconciling:
                for row in new_rows:
                    _missed(stats, row.arn, row.start_date, now)


def _missed(stats: Stats, arn: str, changed_at: dt.datetime | None, now: dt.datetime) -> None:
    if changed_at is not None and now - changed_at > EVENTS_GRACE:
        stats.missed_events += 1
        stats.missed_example = stats.missed_example or arn


def _listed_change(item: dict[str, Any], status: str, redrive_count: int) -> dict[str, Any] | None:
    """What a listing tells us that the cache does not know yet, if anything.

    A listing can be older than what a concurrent DescribeExecution stored, so
    only moves AWS can make count: open -> closed, or a higher redrive count.
    """
    listed_status = item["status"]
    listed_redrives = item.get("redriveCount", 0)
    if listed_redrives > redrive_count:
        return {
            "status": listed_status,
            "redrive_count": listed_redrives,
            "redrive_date": aws.utc(item.get("redriveDate")),
            "stop_date": aws.utc(item.get("stopDate")),
            "needs_describe": True,
            "history_complete": False,
        }
    if listed_redrives < redrive_count or listed_status == status:
        return None
    if status in OPEN_STATUSES and listed_status not in OPEN_STATUSES:
        return {
            "status": listed_status,
            "stop_date": aws.utc(item.get("stopDate")),
            "needs_describe": True,
        }
    if status in OPEN_STATUSES and listed_status in OPEN_STATUSES:
        return {"status": listed_status}
    return None


def _schedule_listing(sm: StateMachine, stats: Stats, account: str) -> None:
    """When to list it again: as often as its activity warrants, within the
    budget of its account and region (plan.py); backing off while it fails."""
    now = timezone.now()
    busy = (
        bool(stats.executions_new)
        or Execution.objects.filter(state_machine=sm, status__in=OPEN_STATUSES).exists()
    )
    busy_until = plan.busy_until(now) if busy else sm.busy_until
    if stats.throttled or stats.errors:
        interval = max(settings.SFNUI_LIST_INTERVAL, sm.list_interval or 0) * 2
        interval = min(interval, settings.SFNUI_LIST_MAX_INTERVAL)
    else:
        current = plan.plan(account, sm.region)
        interval = current.interval(busy_until is not None and busy_until > now)
    StateMachine.objects.filter(pk=sm.pk).update(
        listed_at=now if not stats.errors else F("listed_at"),
        list_due_at=now + dt.timedelta(seconds=interval),
        list_interval=interval,
        list_error="\n".join(stats.errors)[:2000],
        busy_until=busy_until,
    )


# --- One execution -----------------------------------------------------------------


def sync_execution(ex: Execution, stats: Stats) -> None:
    """DescribeExecution if the listing saw a change, then the history's new events.

    Raises aws.Throttled (after rescheduling the execution) so that the
    caller stops and lets the budget refill, and aws.Unavailable (after
    recording it on the execution) so that the caller stops calling an AWS it
    cannot reach; records other AWS errors on the execution and reschedules it
    with backoff.
    """
    try:
        if ex.needs_describe or ex.described_at is None:
            _describe(ex, stats)
        if not ex.history_complete:
            _fetch_history(ex, stats)
            if ex.needs_describe:
                # The history showed the end before DescribeExecution did.
                _describe(ex, stats)
                _mark_complete_if_final(ex)
    except (aws.Throttled, BudgetExhausted):
        _reschedule(ex, delay=settings.SFNUI_RUNNING_MIN_INTERVAL, error="")
        raise
    except aws.NotFound as exc:
        if ex.described_at is None and ex.sync_failures < LAGGING_RETRIES:
            # AWS is eventually consistent: a fresh execution that
            # ListExecutions returned can be unknown to DescribeExecution
            # for a moment. Not an error (yet): try again shortly.
            _lagging(ex, exc)
        else:
            _failed(ex, f"AWS does not know this execution: {exc.message}", stats)
        return
    except aws.Unavailable as exc:
        # Not this execution's problem: AWS is away for every one of them.
        _failed(ex, _describe_error(exc), stats)
        raise
    except aws.AwsError as exc:
        _failed(ex, _describe_error(exc), stats)
        return
    stats.executions_synced += 1
    now = timezone.now()
    Execution.objects.filter(pk=ex.pk).update(
        synced_at=now,
        sync_error="",
        sync_failures=0,
        # A listing may have flagged a change while we worked: then it is due now.
        sync_due_at=Case(When(needs_describe=True, then=Value(now)), default=Value(_next_due(ex))),
    )


def _describe(ex: Execution, stats: Stats) -> None:
    for _ in range(3):
        if _store_description(ex, aws.describe_execution(ex.arn)):
            return
        ex.refresh_from_db()
    raise aws.AwsError("the execution kept changing while it was described", "Conflict")


def _store_description(ex: Execution, d: dict[str, Any]) -> bool:
    redrives = d.get("redriveCount", 0)
    fields: dict[str, Any] = {
        "name": d.get("name", ex.name),
        "status": d["status"],
        "start_date": aws.utc(d["startDate"]),
        "stop_date": aws.utc(d.get("stopDate")),
        "input": _clean(d.get("input")),
        "output": _clean(d.get("output")),
        "error": _clean(d.get("error")),
        "cause": _clean(d.get("cause")),
        "redrive_count": redrives,
        "redrive_date": aws.utc(d.get("redriveDate")),
        "redrive_status": d.get("redriveStatus", ""),
        "redrive_status_reason": _clean(d.get("redriveStatusReason", "")) or "",
        "map_run_arn": d.get("mapRunArn", ""),
        "state_machine_version_arn": d.get("stateMachineVersionArn", ""),
        "state_machine_alias_arn": d.get("stateMachineAliasArn", ""),
        "needs_describe": False,
        "described_at": timezone.now(),
    }
    if redrives > ex.redrive_count or d["status"] in OPEN_STATUSES:
        fields["history_complete"] = False
    # Compare-and-set against what we read before asking AWS: if a listing
    # changed the row meanwhile, our answer may be older than its news.
    if not Execution.objects.filter(
        pk=ex.pk, status=ex.status, redrive_count=ex.redrive_count
    ).update(**fields):
        return False
    for name, value in fields.items():
        setattr(ex, name, value)
    if ex.status not in OPEN_STATUSES:
        # Whoever watches it hears of the end: a task once this commits, never a wait here.
        signals.execution_closed.send(sender=__name__, execution_pk=ex.pk)
    return True


def _fetch_history(ex: Execution, stats: Stats) -> None:
    """Store the events newer than `last_event_id`, newest page first.

    Pages are stored as they arrive (memory stays bounded by one page), but
    `last_event_id` moves only when the fetch reached what was already there:
    a fetch killed halfway starts again from the top, and the upserts make
    the repeated events harmless.
    """
    watermark = ex.last_event_id
    newest_id, newest_type = 0, ""
    for page in aws.execution_history(ex.arn, reverse=True, page_size=HISTORY_PAGE_SIZE):
        fresh = [event for event in page if event["id"] > watermark]
        for chunk in _chunks(fresh, EVENT_BATCH):
            HistoryEvent.objects.bulk_create(
                [_event_row(ex.pk, event) for event in chunk], ignore_conflicts=True
            )
        stats.events += len(fresh)
        for event in fresh:
            if event["id"] > newest_id:
                newest_id, newest_type = event["id"], event["type"]
        # An endpoint that ignores reverseOrder (moto) returns the oldest
        # events first; stopping only when a page held known events is
        # correct for both orders.
        if len(fresh) < len(page):
            break
    if newest_id:
        Execution.objects.filter(pk=ex.pk).update(
            last_event_id=Greatest(F("last_event_id"), newest_id)
        )
        ex.last_event_id = max(ex.last_event_id, newest_id)
    else:
        newest_type = (
            HistoryEvent.objects.filter(execution_id=ex.pk, event_id=ex.last_event_id)
            .values_list("type", flat=True)
            .first()
            or ""
        )
    if newest_type in TERMINAL_TYPES:
        if ex.status in OPEN_STATUSES:
            # It ended between DescribeExecution and now.
            Execution.objects.filter(pk=ex.pk).update(needs_describe=True)
            ex.needs_describe = True
        else:
            _mark_complete_if_final(ex)


def _mark_complete_if_final(ex: Execution) -> None:
    if ex.status in OPEN_STATUSES:
        return
    last_type = (
        HistoryEvent.objects.filter(execution_id=ex.pk, event_id=ex.last_event_id)
        .values_list("type", flat=True)
        .first()
    )
    if last_type in TERMINAL_TYPES and Execution.objects.filter(
        pk=ex.pk, status=ex.status, redrive_count=ex.redrive_count
    ).update(history_complete=True):
        ex.history_complete = True


def _event_row(execution_pk: int, event: dict[str, Any]) -> HistoryEvent:
    details_key, details = "", None
    for key, value in event.items():
        if key.endswith("EventDetails"):
            details_key, details = key, _clean_json(value)
            break
    return HistoryEvent(
        execution_id=execution_pk,
        event_id=event["id"],
        previous_event_id=event.get("previousEventId", 0),
        timestamp=aws.utc(event["timestamp"]),
        type=event["type"],
        details_key=details_key,
        details=details,
    )


def _next_due(ex: Execution) -> dt.datetime | None:
    now = timezone.now()
    if ex.needs_describe:
        return now
    if ex.status in OPEN_STATUSES:
        age = (now - ex.start_date).total_seconds()
        interval = min(
            max(age * 0.1, settings.SFNUI_RUNNING_MIN_INTERVAL),
            settings.SFNUI_RUNNING_MAX_INTERVAL,
        )
        return now + dt.timedelta(seconds=interval)
    if not ex.history_complete:
        # Closed, but its final event is not in the history yet (AWS lags).
        return now + dt.timedelta(seconds=settings.SFNUI_RUNNING_MIN_INTERVAL)
    return None


def _reschedule(ex: Execution, delay: float, error: str) -> None:
    Execution.objects.filter(pk=ex.pk).update(
        sync_due_at=timezone.now() + dt.timedelta(seconds=delay), sync_error=error
    )


def _lagging(ex: Execution, exc: aws.AwsError) -> None:
    failures = ex.sync_failures + 1
    # 2 s, 4 s, 8 s ...: AWS usually catches up within seconds.
    delay = min(2.0 * 2 ** (failures - 1), 60.0)
    Execution.objects.filter(pk=ex.pk).update(
        sync_failures=failures,
        sync_error=(
            f"{SYNC_LAGGING}AWS lists this execution, but DescribeExecution does not know "
            f"it yet (AWS is eventually consistent); trying again in {delay:g} s. "
            f"({exc.code}: {exc.message})"
        )[:2000],
        sync_due_at=timezone.now() + dt.timedelta(seconds=delay),
    )


def _failed(ex: Execution, error: str, stats: Stats) -> None:
    failures = ex.sync_failures + 1
    # 5 s, 10 s, 20 s ... up to 10 minutes: keep trying, gently.
    delay = min(5.0 * 2 ** (failures - 1), 600.0)
    Execution.objects.filter(pk=ex.pk).update(
        sync_failures=failures,
        sync_error=error[:2000],
        sync_due_at=timezone.now() + dt.timedelta(seconds=delay),
    )
    stats.errors.append(f"{ex.arn}: {error}")


def sync_executions(pks: Iterable[int], region: str, account: str = "") -> Stats:
    """Sync a batch of executions (of one identity and region); stop early when
    AWS says to slow down or cannot be reached."""
    from executions.sync.locks import held

    with recording(SyncRun.Kind.EXECUTIONS, region, account=account) as stats:
        pending = list(Execution.objects.filter(pk__in=list(pks)).order_by("sync_due_at"))
        for i, ex in enumerate(pending):
            if aws.out_of_time():
                # The cycle's deadline passed: no new work, the rest is due.
                stats.unfinished = [e.pk for e in pending[i:]]
                stats.errors.append(
                    f"deadline: {len(pending) - i} executions left for the next sync"
                )
                break
            with held(f"execution:{ex.pk}", settings.SFNUI_SYNC_LEASE) as mine:
                if not mine:
                    continue  # another worker has it right now
                try:
                    sync_execution(ex, stats)
                except (aws.Throttled, BudgetExhausted, aws.Unavailable):
                    # Slow down, or AWS is unreachable: the rest of the batch
                    # would meet the same (and each wait out the timeouts).
                    stats.unfinished = [e.pk for e in pending[i:]]
                    for rest in pending[i + 1 :]:
                        _reschedule(rest, delay=settings.SFNUI_RUNNING_MIN_INTERVAL, error="")
                    raise
    return stats


# --- An execution the cache has never seen ----------------------------------------


def import_execution(arn: str, *, with_history: bool = True) -> Execution:
    """Look up one execution in AWS (someone pasted its ARN) and store it.

    One DescribeExecution, then (unless told not to) its history. Raises
    arns.NotAnArn for a malformed ARN and aws.NotFound when AWS does not
    know it; other aws.AwsError as they come.
    """
    parsed = parse_execution_arn(arn)
    account = aws.key_for(parsed.account, parsed.region)
    with recording(SyncRun.Kind.LOOKUP, parsed.region, account=account) as stats:
        try:
            d = aws.describe_execution(arn)
        except aws.AwsError as exc:
            failure: aws.AwsError | None = exc
            stats.errors.append(_describe_error(exc))
        else:
            failure = None
            sm = state_machine_for(d.get("stateMachineArn") or parsed.state_machine_arn)
            Execution.objects.bulk_create(
                [
                    Execution(
                        arn=arn,
                        name=d.get("name", parsed.name),
                        state_machine=sm,
                        status=d["status"],
                        start_date=aws.utc(d["startDate"]),
                        sync_due_at=timezone.now(),
                    )
                ],
                ignore_conflicts=True,
            )
            ex = Execution.objects.get(arn=arn)
            if ex.needs_describe:
                _store_description(ex, d)
            stats.executions_new += 1
            if with_history:
                sync_execution(ex, stats)
    if failure is not None:
        raise failure
    return Execution.objects.select_related("state_machine").get(arn=arn)


# --- Helpers -------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _clean(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; AWS strings can.
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    if isinstance(value, dt.datetime):
        return aws.utc(value).isoformat()
    return value
