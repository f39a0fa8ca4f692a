"""What the sync should do next: discovery, listings and executions that are due.

Work is claimed by pushing its due time a lease into the future (the tick
holds a lock, so two ticks never claim at once), and work whose worker died
is due again when the lease ends.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from executions import aws, budget
from executions.budget import bucket
from executions.database import busy
from executions.models import Execution, StateMachine
from executions.sync import map_runs, plan

log = logging.getLogger(__name__)


@dataclass
class DueWork:
    # (identity, region) pairs whose state machines are to be discovered
    discoveries: list[tuple[str, str]] = field(default_factory=list)
    state_machines: list[int] = field(default_factory=list)
    # (identity, region, execution pks) batches
    batches: list[tuple[str, str, list[int]]] = field(default_factory=list)
    # (identity, region, Map Run pks) batches (sync/map_runs.py)
    map_runs: list[tuple[str, str, list[int]]] = field(default_factory=list)


def claim_due_work(now: dt.datetime | None = None) -> DueWork:
    """What is due, per identity and region, each within its own budget: a
    backlog in one account never holds back the news of another."""
    now = now or timezone.now()
    work = DueWork()
    lease = dt.timedelta(seconds=settings.SFNUI_SYNC_LEASE)
    until = now + lease
    due: list[tuple[str, str, int]] = []
    for t, region in aws.scheduled():
        # One discovery per interval, whoever asks. The claim is a lease, as
        # for the rest: a discovery whose worker died (or that failed) is
        # claimed again when it ends, not a whole interval later.
        if cache.get(_discovered_key(t.key, region)) is None and cache.add(
            _discovery_claim_key(t.key, region), 1, timeout=settings.SFNUI_SYNC_LEASE
        ):
            work.discoveries.append((t.key, region))
        work.state_machines.extend(_claim_listings(t.key, region, now, until))
        due.extend((t.key, region, pk) for pk in _due_executions(t.key, region, now))
    # Executions of what no identity reads on a schedule (looked up by ARN
    # in another region) are synced too, a few at a time.
    due.extend(
        (aws.key_for(account, region), region, pk) for pk, account, region in _due_elsewhere(now)
    )
    work.batches = _claim_batches(due, until)
    work.map_runs = map_runs.claim_due(now)
    return work


def _claim_listings(account: str, region: str, now: dt.datetime, until: dt.datetime) -> list[int]:
    """The due listings of one identity and region, the latest for their
    interval first, no more than the ListExecutions budget holds right now
    (so that no worker sits waiting for tokens).

    "Latest for its interval": a busy state machine 5 s late on a 5 s
    interval goes before an idle one 60 s late on a 490 s interval, so a
    wave of idle listings (a whole account's first ones, at start) never
    holds back the busy ones; and an idle one that waits long enough goes
    first in turn, so none starves when the budget runs short (throttling).
    """
    try:
        tokens, _ = budget.level(region, "ListExecutions", account)
    except Exception:
        tokens = LISTINGS_PER_TICK  # the store is down: the calls go unmetered anyway
    room = max(1, min(LISTINGS_PER_TICK, int(tokens / plan.BUSY_COST)))
    due = plan.machines(account, region).filter(list_due_at__lte=now).order_by("list_due_at")
    columns = ("pk", "list_due_at", "list_interval")
    # The longest due, and the busy ones (few: the plan keeps them in the budget).
    candidates = dict.fromkeys(due.values_list(*columns)[: room * 4])
    candidates.update(dict.fromkeys(due.filter(busy_until__gt=now).values_list(*columns)[:room]))
    base = settings.SFNUI_LIST_INTERVAL
    # One never listed (discovered just now, or at start) counts as idle: at
    # start, a whole account's first listings must not hold back busy ones.
    unknown = plan.plan(account, region).idle_interval

    def lateness(row: tuple[int, dt.datetime, float]) -> float:
        return (now - row[1]).total_seconds() / max(row[2] or unknown, base)

    claimed = []
    for pk, due_at, _ in sorted(candidates, key=lateness, reverse=True)[:room]:
        if StateMachine.objects.filter(pk=pk, list_due_at=due_at).update(list_due_at=until):
            claimed.append(pk)
    return claimed


def _due_executions(account: str, region: str, now: dt.datetime) -> list[int]:
    # Back-pressure: no more batches than the workers are getting through.
    # The budget alone would let the tick queue more work than the workers
    # finish, and a listing (the news) would wait behind it in the queue.
    room = BATCHES_IN_FLIGHT - in_flight(account, region)
    if room <= 0:
        return []
    limit = min(executions_per_tick(account, region), room * settings.SFNUI_SYNC_BATCH)
    machines = plan.machines(account, region, deleted=True).values("pk")
    # What a listing or an event flagged (new, ended, redriven) goes first:
    # that is news people wait for. Routine re-reads of running histories
    # fill the rest.
    flagged = (
        Execution.objects.filter(
            sync_due_at__lte=now, needs_describe=True, state_machine__in=machines
        )
        .order_by("sync_due_at")
        .values_list("pk", flat=True)[:limit]
    )
    due = list(flagged)
    if len(due) < limit:
        routine = (
            Execution.objects.filter(
                sync_due_at__lte=now, needs_describe=False, state_machine__in=machines
            )
            .order_by("sync_due_at")
            .values_list("pk", flat=True)[: limit - len(due)]
        )
        due.extend(routine)
    return due


def _due_elsewhere(now: dt.datetime) -> list[tuple[int, str, str]]:
    scheduled = Q()
    for t, region in aws.scheduled():
        scheduled |= Q(state_machine__in=plan.machines(t.key, region, deleted=True).values("pk"))
    return list(
        Execution.objects.filter(sync_due_at__lte=now)
        .exclude(scheduled)
        .order_by("sync_due_at")
        .values_list("pk", "state_machine__account", "state_machine__region")[:ELSEWHERE_PER_TICK]
    )


# Listings handed out per identity and region and tick, at most.
LISTINGS_PER_TICK = 200
# Batches of executions handed out and not finished yet, per identity and
# region, at most (a batch whose worker died counts until its lease ends).
BATCHES_IN_FLIGHT = 2


def _slot_keys(account: str, region: str) -> list[str]:
    return [f"batch-slot:{account}:{region}:{i}" for i in range(BATCHES_IN_FLIGHT)]


def in_flight(account: str, region: str) -> int:
    """Batches of this identity and region handed to workers and not finished."""
    try:
        return len(cache.get_many(_slot_keys(account, region)))
    except Exception:
        # The shared cache is down: no back-pressure, the budget still holds.
        return 0


def batch_sent(account: str, region: str) -> str | None:
    """Take a slot for a batch handed to a worker; the worker gives it back
    with `batch_done`. A slot is held for a lease at most: the batch of a
    worker that died stops counting then, whatever the cache backend (one
    slot a key, no counter to drift). None when every slot is taken (the
    tick and a listing raced) or the cache is down: the batch goes anyway."""
    token = uuid.uuid4().hex
    try:
        for key in _slot_keys(account, region):
            if cache.add(key, token, timeout=settings.SFNUI_SYNC_LEASE):
                return f"{key}={token}"
    except Exception:
        log.warning("could not count a batch in flight", exc_info=True)
    return None


def batch_done(slot: str | None) -> None:
    """Give back the slot `batch_sent` took, unless its lease ended and
    another batch holds it now."""
    if not slot:
        return
    key, _, token = slot.partition("=")
    try:
        if cache.get(key) == token:
            cache.delete(key)
    except Exception:
        # The cache is down: the slot frees itself at the end of its lease.
        log.debug("could not give a batch slot back", exc_info=True)


# Executions outside every scheduled identity and region, per tick.
ELSEWHERE_PER_TICK = 20


def discovered(region: str, account: str = aws.DEFAULT) -> None:
    """The discovery went through: the next one is due in SFNUI_DISCOVER_INTERVAL."""
    cache.set(_discovered_key(account, region), 1, timeout=settings.SFNUI_DISCOVER_INTERVAL)


# A discovery that failed (throttled, AWS unreachable) is handed out again
# this soon rather than when its lease ends: until one goes through, a fresh
# install knows no state machine, and a throttling storm is when it matters.
DISCOVERY_RETRY_SECONDS = 15


def discovery_failed(region: str, account: str = aws.DEFAULT) -> None:
    """The discovery ended with an error: claimed again after
    DISCOVERY_RETRY_SECONDS (or the lease, if that is shorter)."""
    retry = min(DISCOVERY_RETRY_SECONDS, settings.SFNUI_SYNC_LEASE)
    cache.set(_discovery_claim_key(account, region), 1, timeout=retry)


def _discovered_key(account: str, region: str) -> str:
    return f"discovered:{account}:{region}"


def _discovery_claim_key(account: str, region: str) -> str:
    return f"discover-claimed:{account}:{region}"


def claim_flagged(
    arns: list[str], now: dt.datetime | None = None
) -> list[tuple[str, str, list[int]]]:
    """Claim, right after a listing, the executions it flagged: no tick to wait
    for, unless the workers are busy with as many batches as they should have
    (then the tick hands them out, flagged ones first)."""
    now = now or timezone.now()
    lease = dt.timedelta(seconds=settings.SFNUI_SYNC_LEASE)
    due: list[tuple[str, str, int]] = []
    room: dict[tuple[str, str], int] = {}
    for start in range(0, min(len(arns), LISTINGS_PER_TICK * 5), 500):
        chunk = arns[start : start + 500]
        for pk, account, region in Execution.objects.filter(
            arn__in=chunk, sync_due_at__lte=now
        ).values_list("pk", "state_machine__account", "state_machine__region"):
            pair = (aws.key_for(account, region), region)
            if pair not in room:
                room[pair] = (BATCHES_IN_FLIGHT - in_flight(*pair)) * settings.SFNUI_SYNC_BATCH
            if room[pair] > 0:
                room[pair] -= 1
                due.append((*pair, pk))
    return _claim_batches(due, now + lease)


def _claim_batches(
    due: list[tuple[str, str, int]], until: dt.datetime
) -> list[tuple[str, str, list[int]]]:
    by_target: dict[tuple[str, str], list[int]] = defaultdict(list)
    for account, region, pk in due:
        by_target[(account, region)].append(pk)
    batches = []
    size = settings.SFNUI_SYNC_BATCH
    for (account, region), pks in by_target.items():
        for start in range(0, len(pks), 500):
            Execution.objects.filter(pk__in=pks[start : start + 500]).update(sync_due_at=until)
        for start in range(0, len(pks), size):
            batches.append((account, region, pks[start : start + size]))
    return batches


def budget_for_a_batch(account: str, region: str) -> bool:
    """Whether the GetExecutionHistory budget holds a whole batch right now
    (False when its store cannot say)."""
    try:
        tokens, _ = budget.level(region, "GetExecutionHistory", account)
    except Exception:
        return False
    return tokens >= settings.SFNUI_SYNC_BATCH


def executions_per_tick(account: str = aws.DEFAULT, region: str | None = None) -> int:
    """As many executions as the GetExecutionHistory budget of one identity and
    region allows in one tick (most cost one call), plus a little for the
    burst; never none."""
    region = region or aws.scheduled()[0][1]
    b = bucket(region, "GetExecutionHistory", account)
    return max(10, int(b.rate * settings.SFNUI_SYNC_TICK + b.capacity / 10))


def make_due(execution: Execution, within: float | None = None) -> bool:
    """Someone is looking at a running execution: make it due now if it was not
    synced in the last `within` seconds, for the scheduler's next tick (nothing
    is enqueued: web/common.sync_now also asks a worker at once). Returns
    whether it was made due.

    The page never fails on it, nor waits for a lock more than a moment: with
    the database busy (another writer holds SQLite's lock, a long transaction
    holds this row or its table) it is skipped, and the schedule gets to the
    execution anyway."""
    within = settings.SFNUI_VIEWED_INTERVAL if within is None else within
    now = timezone.now()
    fresh = execution.synced_at is not None and (now - execution.synced_at).total_seconds() < within
    if fresh or not execution.is_open:
        return False
    later = Q(sync_due_at__isnull=True) | Q(sync_due_at__gt=now)
    made_due = False
    with busy.best_effort(f"make {execution.arn} due for a sync"), transaction.atomic():
        # A row lock (a long transaction, a migration, someone in psql) is
        # skipped at once, without waiting for the lock at all.
        unlocked = (
            Execution.objects.select_for_update(skip_locked=True)
            .filter(later, pk=execution.pk)
            .values("pk")
        )
        # One statement: UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED).
        made_due = bool(Execution.objects.filter(pk__in=unlocked).update(sync_due_at=now))
    return made_due
