"""Thin Celery tasks over sync.py, and the tick that beat runs (see settings)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import schedule, sync
from .locks import held
from .models import Execution, StateMachine, SyncRun


@shared_task(acks_late=True)
def sync_tick() -> dict[str, int]:
    """Hand out what is due. Runs every SFNUI_SYNC_TICK seconds."""
    with held("sync-tick", timeout=max(30.0, settings.SFNUI_SYNC_TICK * 4)) as mine:
        if not mine:
            return {}
        work = schedule.claim_due_work()
    for region in work.regions:
        discover.delay(region)
    for pk in work.state_machines:
        list_state_machine.delay(pk)
    for region, pks in work.batches:
        sync_executions.delay(pks, region)
    return {
        "regions": len(work.regions),
        "state_machines": len(work.state_machines),
        "executions": sum(len(pks) for _, pks in work.batches),
    }


@shared_task(acks_late=True)
def discover(region: str) -> str:
    return sync.discover_state_machines(region).summary()


@shared_task(acks_late=True)
def list_state_machine(state_machine_pk: int) -> str:
    sm = StateMachine.objects.filter(pk=state_machine_pk).first()
    if sm is None:
        return "gone"
    with held(f"state-machine:{sm.pk}", settings.SFNUI_SYNC_LEASE) as mine:
        if not mine:
            return "busy"
        stats = sync.list_state_machine(sm)
    # What the listing found goes to a worker now rather than at the next tick.
    for region, pks in schedule.claim_flagged(stats.flagged):
        sync_executions.delay(pks, region)
    return stats.summary()


@shared_task(acks_late=True)
def sync_executions(pks: list[int], region: str) -> str:
    # Throttling is "slow down": the executions were rescheduled and the
    # SyncRun says so; the task itself succeeded.
    return sync.sync_executions(pks, region).summary()


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
        with sync.recording(SyncRun.Kind.EXECUTIONS, ex.state_machine.region) as stats:
            ex.needs_describe = True
            sync.sync_execution(ex, stats)
        return stats.summary()


@shared_task
def prune_sync_runs() -> int:
    cutoff = timezone.now() - dt.timedelta(days=settings.SFNUI_SYNC_RUN_RETENTION_DAYS)
    deleted, _ = SyncRun.objects.filter(started_at__lt=cutoff).delete()
    return deleted
