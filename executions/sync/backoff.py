"""When a state machine is listed again and an execution synced again:
as often as their activity warrants, within the budget (plan.py), backing
off while AWS fails or lags.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from executions import aws
from executions.models import OPEN_STATUSES, SYNC_LAGGING, Execution, StateMachine
from executions.sync import plan
from executions.sync.runs import Stats

# An execution that ListExecutions showed and DescribeExecution does not know
# is retried this many times (about two minutes) as "waiting for AWS" before
# it counts as a sync error.
LAGGING_RETRIES = 6


def schedule_listing(sm: StateMachine, stats: Stats, account: str) -> None:
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


def next_due(ex: Execution) -> dt.datetime | None:
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


def reschedule(ex: Execution, delay: float, error: str) -> None:
    Execution.objects.filter(pk=ex.pk).update(
        sync_due_at=timezone.now() + dt.timedelta(seconds=delay), sync_error=error
    )


def record_lagging(ex: Execution, exc: aws.AwsError) -> None:
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


def record_failure(ex: Execution, error: str, stats: Stats) -> None:
    failures = ex.sync_failures + 1
    # 5 s, 10 s, 20 s ... up to 10 minutes: keep trying, gently.
    delay = min(5.0 * 2 ** (failures - 1), 600.0)
    Execution.objects.filter(pk=ex.pk).update(
        sync_failures=failures,
        sync_error=error[:2000],
        sync_due_at=timezone.now() + dt.timedelta(seconds=delay),
    )
    stats.errors.append(f"{ex.arn}: {error}")
