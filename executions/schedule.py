"""What the sync should do next: discovery, listings and executions that are due.

Work is claimed by pushing its due time a lease into the future (the tick
holds a lock, so two ticks never claim at once), and work whose worker died
is due again when the lease ends.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .budget import bucket
from .models import Execution, StateMachine


@dataclass
class DueWork:
    regions: list[str] = field(default_factory=list)
    state_machines: list[int] = field(default_factory=list)
    # (region, execution pks) batches
    batches: list[tuple[str, list[int]]] = field(default_factory=list)


def claim_due_work(now: dt.datetime | None = None) -> DueWork:
    now = now or timezone.now()
    work = DueWork()
    lease = dt.timedelta(seconds=settings.SFNUI_SYNC_LEASE)

    for region in settings.SFNUI_REGIONS:
        # One discovery per interval, whoever asks. The claim is a lease, as
        # for the rest: a discovery whose worker died (or that failed) is
        # claimed again when it ends, not a whole interval later.
        if cache.get(_discovered_key(region)) is None and cache.add(
            f"discover-claimed:{region}", 1, timeout=settings.SFNUI_SYNC_LEASE
        ):
            work.regions.append(region)

    due_sms = StateMachine.objects.filter(list_due_at__lte=now).order_by("list_due_at")
    for pk, due_at in due_sms.values_list("pk", "list_due_at")[:500]:
        if StateMachine.objects.filter(pk=pk, list_due_at=due_at).update(list_due_at=now + lease):
            work.state_machines.append(pk)

    limit = executions_per_tick()
    # What a listing flagged (new, ended, redriven) goes first: that is news
    # people wait for. Routine re-reads of running histories fill the rest.
    flagged = (
        Execution.objects.filter(sync_due_at__lte=now, needs_describe=True)
        .order_by("sync_due_at")
        .values_list("pk", "state_machine__region")[:limit]
    )
    due = list(flagged)
    if len(due) < limit:
        routine = (
            Execution.objects.filter(sync_due_at__lte=now, needs_describe=False)
            .order_by("sync_due_at")
            .values_list("pk", "state_machine__region")[: limit - len(due)]
        )
        due.extend(routine)
    work.batches = _claim_batches(due, now + lease)
    return work


def discovered(region: str) -> None:
    """The discovery of `region` went through: the next one is due in SFNUI_DISCOVER_INTERVAL."""
    cache.set(_discovered_key(region), 1, timeout=settings.SFNUI_DISCOVER_INTERVAL)


def _discovered_key(region: str) -> str:
    return f"discovered:{region}"


def claim_flagged(arns: list[str], now: dt.datetime | None = None) -> list[tuple[str, list[int]]]:
    """Claim, right after a listing, the executions it flagged: no tick to wait for."""
    now = now or timezone.now()
    lease = dt.timedelta(seconds=settings.SFNUI_SYNC_LEASE)
    due: list[tuple[int, str]] = []
    for start in range(0, min(len(arns), executions_per_tick()), 500):
        chunk = arns[start : start + 500]
        due.extend(
            Execution.objects.filter(arn__in=chunk, sync_due_at__lte=now).values_list(
                "pk", "state_machine__region"
            )
        )
    return _claim_batches(due, now + lease)


def _claim_batches(due: list[tuple[int, str]], until: dt.datetime) -> list[tuple[str, list[int]]]:
    by_region: dict[str, list[int]] = defaultdict(list)
    for pk, region in due:
        by_region[region].append(pk)
    batches = []
    size = settings.SFNUI_SYNC_BATCH
    for region, pks in by_region.items():
        for start in range(0, len(pks), 500):
            Execution.objects.filter(pk__in=pks[start : start + 500]).update(sync_due_at=until)
        for start in range(0, len(pks), size):
            batches.append((region, pks[start : start + size]))
    return batches


def executions_per_tick() -> int:
    """As many executions as the GetExecutionHistory budget allows in one tick
    (most cost one call), plus a little for the burst; never none."""
    b = bucket(settings.SFNUI_REGIONS[0], "GetExecutionHistory")
    return max(10, int(b.rate * settings.SFNUI_SYNC_TICK + b.capacity / 10))


def sync_soon(execution: Execution, within: float | None = None) -> bool:
    """Someone is looking at a running execution: make it due now if it was not
    synced in the last `within` seconds. Returns whether it was made due."""
    within = settings.SFNUI_VIEWED_INTERVAL if within is None else within
    now = timezone.now()
    fresh = execution.synced_at is not None and (now - execution.synced_at).total_seconds() < within
    if fresh or not execution.is_open:
        return False
    later = Q(sync_due_at__isnull=True) | Q(sync_due_at__gt=now)
    # A page never waits for a row lock: if a long transaction (a migration,
    # a script, someone in psql) holds this row, skip it; the schedule will
    # get to the execution anyway.
    with transaction.atomic():
        unlocked = (
            Execution.objects.select_for_update(skip_locked=True)
            .filter(later, pk=execution.pk)
            .values("pk")
        )
        # One statement: UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED).
        return bool(Execution.objects.filter(pk__in=unlocked).update(sync_due_at=now))
