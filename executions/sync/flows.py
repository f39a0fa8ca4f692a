"""The sync's five flows: discovery, state machine definitions, listings,
executions with their history, an import on demand. AWS pages in, rows out
(rows.py), each flow recorded as a SyncRun (runs.py) and due again when
backoff.py says.

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

import datetime as dt
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from executions import aws, budget
from executions.arns import parse_execution_arn, parse_state_machine_arn
from executions.budget import BudgetExhausted
from executions.event_types import TERMINAL_TYPES
from executions.models import (
    OPEN_STATUSES,
    Execution,
    HistoryEvent,
    StateMachine,
    SyncRun,
)
from executions.sync import map_runs, plan
from executions.sync.backoff import (
    LAGGING_RETRIES,
    record_failure,
    record_lagging,
    reschedule,
    schedule_listing,
)
from executions.sync.execution_write import ExecutionWrite
from executions.sync.rows import (
    IN_CHUNK,
    in_chunks,
    store_description,
    upsert_listed,
    without_nul,
)
from executions.sync.runs import Stats, describe_error, recording
from executions.sync.versions import link_definition, refresh_versions

log = logging.getLogger(__name__)

# GetExecutionHistory's maximum page: fewest calls.
HISTORY_PAGE_SIZE = 1000
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
# State machine definitions change on deploys; read them again this often.
DESCRIBE_STATE_MACHINE_EVERY = dt.timedelta(hours=1)


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
        definition=without_nul(d.get("definition", "")),
        role_arn=d.get("roleArn", ""),
        status=d.get("status", "ACTIVE"),
        described_at=timezone.now(),
    )
    # Versions and aliases change on deploys too: read with the definition.
    refresh_versions(sm)


def state_machine_for(arn: str) -> StateMachine:
    """The cached state machine, or a stub named from its ARN (filled by discovery)."""
    if "/" in arn.rsplit(":", 1)[-1]:
        # A Map Run's child state machine (...:stateMachine:PARENT/LABEL).
        return map_runs.child_state_machine(arn)
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
    schedule_listing(sm, stats, account)
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
        upsert_listed(sm, page, stats)
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
        upsert_listed(sm, page, stats)
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
                upsert_listed(sm, found, stats)
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
    for chunk in in_chunks(left, IN_CHUNK):
        # Its new status is not in the listings; DescribeExecution will tell.
        stats.executions_changed += Execution.objects.filter(
            pk__in=[pk for _, pk in chunk], status="RUNNING"
        ).update(needs_describe=True, sync_due_at=now)
        stats.flagged.extend(arn for arn, _ in chunk)


# --- One execution -----------------------------------------------------------------


def sync_execution(ex: Execution, stats: Stats) -> None:
    """DescribeExecution if the listing saw a change, then the history's new events,
    stored at once (execution_write.py): one transaction, one UPDATE of the row.

    Raises aws.Throttled (after rescheduling the execution) so that the
    caller stops and lets the budget refill, and aws.Unavailable (after
    recording it on the execution) so that the caller stops calling an AWS it
    cannot reach; records other AWS errors on the execution and reschedules it
    with backoff. An execution that closed is added to `stats.closed` (its
    watchers are told when the run is recorded).
    """
    try:
        for _ in range(3):
            write = ExecutionWrite(ex)
            _sync_once(write, stats)
            if write.store():
                break
            # A listing, a stop or a redrive changed the row while we asked
            # AWS: our answers may be older than its news. Ask again.
            ex.refresh_from_db()
        else:
            raise aws.AwsError("the execution kept changing while it was synced", "Conflict")
        if write.described and not ex.is_open:
            stats.closed.append(ex.pk)
        # Once in its life: the definition it ran (sync/versions.py).
        link_definition(ex)
    except (aws.Throttled, BudgetExhausted):
        reschedule(ex, delay=settings.SFNUI_RUNNING_MIN_INTERVAL, error="")
        raise
    except aws.NotFound as exc:
        if ex.described_at is None and ex.sync_failures < LAGGING_RETRIES:
            # AWS is eventually consistent: a fresh execution that
            # ListExecutions returned can be unknown to DescribeExecution
            # for a moment. Not an error (yet): try again shortly.
            record_lagging(ex, exc)
        else:
            record_failure(ex, f"AWS does not know this execution: {exc.message}", stats)
        return
    except aws.Unavailable as exc:
        # Not this execution's problem: AWS is away for every one of them.
        record_failure(ex, describe_error(exc), stats)
        raise
    except aws.AwsError as exc:
        record_failure(ex, describe_error(exc), stats)
        return
    stats.executions_synced += 1


def _sync_once(write: ExecutionWrite, stats: Stats) -> None:
    ex = write.ex
    if ex.needs_describe or ex.described_at is None:
        write.describe(aws.describe_execution(ex.arn))
    if ex.map_run_arn and map_runs.without_history(ex):
        # An Express Map Run's child: no history API, DescribeExecution tells all.
        if not write.described and ex.is_open:
            write.describe(aws.describe_execution(ex.arn))
        if not ex.is_open and not ex.history_complete:
            write.set(history_complete=True)
        return
    if ex.history_complete:
        return
    newest_type = _fetch_history(write, stats)
    if newest_type in TERMINAL_TYPES and ex.is_open:
        # It ended between DescribeExecution and the history.
        write.describe(aws.describe_execution(ex.arn))
    if newest_type in TERMINAL_TYPES and not ex.is_open:
        write.complete = True


def _fetch_history(write: ExecutionWrite, stats: Stats) -> str:
    """The events newer than `last_event_id`, newest page first, into `write`;
    returns the newest event's type.

    `last_event_id` moves (in the write) only when the fetch reached what was
    already there: a fetch killed halfway starts again from the top, and the
    upserts make the repeated events harmless.
    """
    ex = write.ex
    watermark = ex.last_event_id
    newest_id, newest_type = 0, ""
    for page in aws.execution_history(ex.arn, reverse=True, page_size=HISTORY_PAGE_SIZE):
        fresh = [event for event in page if event["id"] > watermark]
        write.add_events(fresh)
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
        return newest_type
    return (
        HistoryEvent.objects.filter(execution_id=ex.pk, event_id=ex.last_event_id)
        .values_list("type", flat=True)
        .first()
        or ""
    )


def sync_executions(pks: Iterable[int], region: str, account: str = "") -> Stats:
    """Sync a batch of executions (of one identity and region); stop early when
    AWS says to slow down or cannot be reached.

    The batch takes its executions' locks at once and its API budget ahead
    (budget.reserved: the tokens it expects to spend, given back if unspent),
    instead of a few round trips to the shared cache per execution; each lock
    is released as soon as its execution is done.
    """
    from executions.sync.locks import held_many

    with recording(SyncRun.Kind.EXECUTIONS, region, account=account) as stats:
        pending = list(
            Execution.objects.filter(pk__in=list(pks))
            .select_related("state_machine")
            .order_by("sync_due_at")
        )
        if not pending:
            return stats
        names = [f"execution:{ex.pk}" for ex in pending]
        with (
            held_many(names, settings.SFNUI_SYNC_LEASE) as locks,
            budget.reserved(
                _calls_expected(pending), region, account_key(pending[0].state_machine)
            ),
        ):
            for i, ex in enumerate(pending):
                if aws.out_of_time():
                    # The cycle's deadline passed: no new work, the rest is due.
                    stats.unfinished = [e.pk for e in pending[i:]]
                    stats.errors.append(
                        f"deadline: {len(pending) - i} executions left for the next sync"
                    )
                    break
                if names[i] not in locks.mine:
                    continue  # another worker has it right now
                try:
                    sync_execution(ex, stats)
                except (aws.Throttled, BudgetExhausted, aws.Unavailable):
                    # Slow down, or AWS is unreachable: the rest of the batch
                    # would meet the same (and each wait out the timeouts).
                    stats.unfinished = [e.pk for e in pending[i:]]
                    for rest in pending[i + 1 :]:
                        reschedule(rest, delay=settings.SFNUI_RUNNING_MIN_INTERVAL, error="")
                    raise
                finally:
                    locks.release(names[i])
    return stats


def _calls_expected(pending: list[Execution]) -> dict[str, int]:
    """The calls a batch will most likely make (its budget reservation)."""
    wants = {
        "DescribeExecution": sum(1 for ex in pending if ex.needs_describe or not ex.described_at),
        "GetExecutionHistory": sum(
            1 for ex in pending if ex.needs_describe or not ex.history_complete
        ),
        # link_definition's, once per execution in its life.
        "DescribeStateMachineForExecution": sum(
            1 for ex in pending if ex.definition_id is None and not ex.map_run_arn
        ),
    }
    return {operation: n for operation, n in wants.items() if n}


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
            stats.errors.append(describe_error(exc))
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
                store_description(ex, d)
            stats.executions_new += 1
            if with_history:
                sync_execution(ex, stats)
    if failure is not None:
        raise failure
    return Execution.objects.select_related("state_machine").get(arn=arn)
