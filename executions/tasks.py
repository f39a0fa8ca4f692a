"""Thin Celery tasks over the sync, bulk stop and watch, the tick that beat
runs (see settings), and the receivers of signals.py: the only module that
enqueues. Its receivers are connected in ExecutionsConfig.ready()."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import connection
from django.dispatch import receiver
from django.utils import timezone

from executions import aws, signals
from executions.actions import bulk, watch
from executions.database import counts, unavailable
from executions.sync import flows, map_runs, runs, schedule
from executions.sync.locks import held

from .models import Execution, StateMachine, SyncRun


@shared_task(acks_late=True)
def sync_tick() -> dict[str, int]:
    """Hand out what is due. Runs every SFNUI_SYNC_TICK seconds."""
    # A tick killed while it holds the lock delays the schedule by a lease at most.
    timeout = min(settings.SFNUI_SYNC_LEASE, max(30.0, settings.SFNUI_SYNC_TICK * 4))
    with held("sync-tick", timeout=timeout) as mine:
        if not mine:
            return {}
        work = schedule.claim_due_work()
    for account, region in work.discoveries:
        discover.delay(region, account)
    for pk in work.state_machines:
        list_state_machine.delay(pk)
    _send_batches(work.batches)
    for account, region, pks in work.map_runs:
        sync_map_runs.delay(pks, region, account)
    return {
        "discoveries": len(work.discoveries),
        "state_machines": len(work.state_machines),
        "executions": sum(len(pks) for _, _, pks in work.batches),
    }


@shared_task(acks_late=True)
def discover(region: str, account: str = "default") -> str:
    stats = flows.discover_state_machines(region, account, describe=False)
    if stats.errors:
        schedule.discovery_failed(region, account)
    else:
        schedule.discovered(region, account)
    # Definitions in small batches, between the listings rather than before them.
    for start in range(0, len(stats.to_describe), DESCRIBE_BATCH):
        describe_state_machines.delay(
            stats.to_describe[start : start + DESCRIBE_BATCH], region, account
        )
    return stats.summary()


# State machines described per task: a few seconds of the DescribeStateMachine budget.
DESCRIBE_BATCH = 20


@shared_task(acks_late=True)
def describe_state_machines(pks: list[int], region: str, account: str = "") -> str:
    return flows.describe_state_machines(pks, region, account).summary()


# A listing or a batch that failed because the database was gone or too slow
# (restarted, failed over) is tried again this soon, while its claim holds,
# rather than when the claim runs out (SFNUI_SYNC_LEASE) and the tick hands it
# out again: the news it was fetching is late by seconds, not minutes.
DB_RETRY_SECONDS = 5.0


def _retry_on_outage(task: Task[Any, Any], exc: Exception, **options: Any) -> None:
    """Raise the task's retry if `exc` says the database is down or slow."""
    if not unavailable.outage(exc):
        return
    retries = max(1, int(settings.SFNUI_SYNC_LEASE // DB_RETRY_SECONDS) - 1)
    raise task.retry(exc=exc, countdown=DB_RETRY_SECONDS, max_retries=retries, **options)


@shared_task(bind=True, acks_late=True)
def list_state_machine(self: Task[Any, Any], state_machine_pk: int) -> str:
    try:
        sm = StateMachine.objects.filter(pk=state_machine_pk).first()
        if sm is None:
            return "gone"
        with held(f"state-machine:{sm.pk}", settings.SFNUI_SYNC_LEASE) as mine:
            if not mine:
                return "busy"
            stats = flows.list_state_machine(sm)
    except Exception as exc:
        _retry_on_outage(self, exc)
        raise
    # What the listing found goes to a worker now rather than at the next tick.
    _send_batches(schedule.claim_flagged(stats.flagged))
    return stats.summary()


def _send_batches(batches: list[tuple[str, str, list[int]]]) -> None:
    for account, region, pks in batches:
        sync_executions.delay(pks, region, account, schedule.batch_sent(account, region))


@shared_task(bind=True, acks_late=True)
def sync_executions(
    self: Task[Any, Any], pks: list[int], region: str, account: str = "", slot: str | None = None
) -> str:
    # Throttling is "slow down": the executions were rescheduled and the
    # SyncRun says so; the task itself succeeded.
    try:
        stats = flows.sync_executions(pks, region, account)
    except Exception as exc:
        # The retry holds no slot: this one is given back below.
        _retry_on_outage(self, exc, args=(pks, region, account, None))
        raise
    finally:
        schedule.batch_done(slot)
    if (
        len(pks) >= settings.SFNUI_SYNC_BATCH
        and not stats.throttled
        and not stats.unfinished
        and schedule.budget_for_a_batch(account or aws.DEFAULT, region)
    ):
        # A full batch went through and the budget holds another: a backlog,
        # which waiting for beat's next tick would leave untouched for up to
        # SFNUI_SYNC_TICK seconds while this process idles. Hand out the next
        # batches now (the tick's lock keeps it single; the slots bound it).
        sync_tick.delay()
    return stats.summary()


@shared_task(bind=True, acks_late=True)
def sync_map_runs(self: Task[Any, Any], pks: list[int], region: str, account: str = "") -> str:
    """Distributed Map runs that are due: DescribeMapRun, their new children."""
    try:
        return map_runs.sync_map_runs(pks, region, account).summary()
    except Exception as exc:
        _retry_on_outage(self, exc)
        raise


@shared_task(acks_late=True)
def sync_execution_now(arn: str) -> str:
    """Sync one execution right away: after a stop, or while someone watches it."""
    ex = Execution.objects.select_related("state_machine").filter(arn=arn).first()
    if ex is None:
        return "unknown"
    with held(f"execution:{ex.pk}", settings.SFNUI_SYNC_LEASE) as mine:
        if not mine:
            return "busy"
        # Throttling is recorded by `recording`; the execution was rescheduled.
        account = flows.account_key(ex.state_machine)
        with runs.recording(
            SyncRun.Kind.EXECUTIONS, ex.state_machine.region, account=account
        ) as stats:
            ex.needs_describe = True
            flows.sync_execution(ex, stats)
        return stats.summary()


@shared_task
def prune_sync_runs() -> int:
    cutoff = timezone.now() - dt.timedelta(days=settings.SFNUI_SYNC_RUN_RETENTION_DAYS)
    deleted, _ = SyncRun.objects.filter(started_at__lt=cutoff).delete()
    return deleted


@shared_task
def compact_counts() -> int:
    """Fold the changes the triggers appended into the counts per state
    machine (database/counts.py): the state machine pages read both, so this
    only keeps what they add up small."""
    return counts.compact(connection, timezone.now())


# --- Bulk stop and Watch (bulk.py, watch.py) ----------------------------------------


@shared_task(acks_late=True)
def stop_bulk_items(batch_id: str, item_ids: list[int]) -> str:
    """Stop one chunk of a bulk stop. Running it twice sends nothing twice:
    each stop's request token is derived from the batch and the execution."""
    return bulk.stop_items(uuid.UUID(batch_id), item_ids)


@shared_task(acks_late=True)
def notify_watchers(execution_pk: int) -> str:
    """A watched execution finished: post it to the webhook, once per watch."""
    return watch.notify(execution_pk)


@shared_task(acks_late=True)
def deliver_watch_notification(notification_pk: int, attempt: int) -> str:
    """A retry of a watch post that failed (watch.BACKOFF apart)."""
    return watch.deliver(notification_pk, attempt)


@shared_task
def notify_finished_watches() -> int:
    """Watches of executions that finished while the broker was unreachable."""
    return watch.notify_finished()


# --- What domain code asks for (signals.py) -----------------------------------------
# A receiver's exception (the broker is down) reaches the sender, which handles it.


@receiver(signals.resync_wanted, dispatch_uid="executions.tasks.resync")
def _resync(arn: str, **_: Any) -> None:
    sync_execution_now.delay(arn)


@receiver(signals.sync_now_wanted, dispatch_uid="executions.tasks.sync_now")
def _sync_now(arn: str, **_: Any) -> None:
    sync_execution_now.delay_on_commit(arn)  # type: ignore[attr-defined]


@receiver(signals.watchers_to_notify, dispatch_uid="executions.tasks.notify_watchers")
def _notify_watchers(execution_pk: int, **_: Any) -> None:
    notify_watchers.delay(execution_pk)


@receiver(signals.watch_retry_wanted, dispatch_uid="executions.tasks.watch_retry")
def _watch_retry(notification_pk: int, attempt: int, countdown: float, **_: Any) -> None:
    deliver_watch_notification.apply_async((notification_pk, attempt), countdown=countdown)


@receiver(signals.bulk_chunk_ready, dispatch_uid="executions.tasks.bulk_chunk")
def _bulk_chunk(batch_id: str, item_ids: list[int], **_: Any) -> None:
    stop_bulk_items.delay(batch_id, item_ids)
