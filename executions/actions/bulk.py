"""Guarded bulk stop and bulk redrive: what a selection holds, the dry run, the
batch, and the worker side that stops (or redrives) each execution of it.

A batch's `action` says which: "stop" acts on the open executions of the
selection, through stop.request_stop (a StopRequest per item); "redrive" on
those AWS may redrive (failed, timed out or aborted, started less than 14
days ago, not known to be NOT_REDRIVABLE), through redrive.request_redrive
(an ActionRequest per item, with the batch id). The same guard rails hold
for both.

The guard rails, in order:

1. the dry run counts the open (running) executions of the selection, exact up
   to CAP, lists the first of them, and says how many finished ones it leaves
   out;
2. the person types that count; at confirmation the selection is read again,
   and if it changed meanwhile (something finished, something started) the
   page shows the new count and asks again;
3. the batch is a BulkStop row with one item per execution, created with the
   id of the confirmation form (a second POST finds it and starts nothing);
4. workers stop the items in chunks of CHUNK through stop.request_stop,
   which re-checks each execution live with AWS first. Its request token is
   uuid5(batch id, execution ARN), so a chunk that runs twice (acks_late, a
   worker that died) sends no second StopExecution. Every AWS call takes its
   token from the shared API budget (aws.py), which paces the batch within
   the DescribeExecution and StopExecution quotas alongside the sync.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from executions import signals
from executions.actions import redrive, stop
from executions.arns import state_machine_name
from executions.models import (
    OPEN_STATUSES,
    ActionRequest,
    BulkStop,
    BulkStopItem,
    Execution,
    StopRequest,
)
from executions.reads import runaways
from executions.reads.queries import Filters, matching
from executions.times import iso_z

log = logging.getLogger(__name__)

# A batch stops at most this many executions.
CAP = 5_000
# Executions per task.
CHUNK = 20
# Executions listed on the dry run.
SHOWN = 100
# Finished executions left out of a filter are counted up to here.
EXCLUDED_CAP = 10_000
# Picked executions per selection (the list shows 200 per page at most).
MAX_PICKED = 1_000
STOP = "stop"
REDRIVE = "redrive"
ACTIONS = (STOP, REDRIVE)


@dataclass(frozen=True)
class Selection:
    """Either the executions picked one by one (`picked`), or all that match
    the list's filters, optionally only those in one state (`in_state`, a
    group of the runaway finder)."""

    filters: Filters = field(default_factory=Filters)
    in_state: str | None = None
    picked: tuple[int, ...] = ()

    @property
    def is_picked(self) -> bool:
        return bool(self.picked)

    def candidates(self) -> QuerySet[Execution]:
        """Everything selected, whatever its status."""
        if self.is_picked:
            return Execution.objects.filter(pk__in=self.picked)
        qs = matching(self.filters, with_status=False)
        if self.filters.statuses:
            qs = qs.filter(status__in=self.filters.statuses)
        if self.in_state is not None:
            qs = runaways.in_state(qs, self.in_state)
        return qs

    def to_stop(self) -> QuerySet[Execution]:
        """What a batch stops: the open executions of the selection."""
        return self.candidates().filter(status__in=OPEN_STATUSES)

    def to_redrive(self, now: dt.datetime | None = None) -> QuerySet[Execution]:
        """What a batch redrives: what the cache says AWS may redrive (each is
        checked live again before its redrive)."""
        now = now or timezone.now()
        return (
            self.candidates()
            .filter(status__in=redrive.REDRIVABLE_STATUSES, start_date__gt=now - redrive.WINDOW)
            .filter(redrive_status__in=("", "REDRIVABLE"))
        )

    def targets(self, action: str) -> QuerySet[Execution]:
        return self.to_redrive() if action == REDRIVE else self.to_stop()

    def query(self) -> list[tuple[str, str]]:
        """The selection as query parameters (links, hidden form fields)."""
        if self.is_picked:
            return [("execution", str(pk)) for pk in self.picked]
        f = self.filters
        params = [("status", s) for s in f.statuses]
        if f.state_machine_arn:
            params.append(("state_machine", f.state_machine_arn))
        if f.version_arn:
            params.append(("version", f.version_arn))
        if f.alias_arn:
            params.append(("alias", f.alias_arn))
        params.extend(("account", a) for a in f.accounts)
        params.extend(("region", r) for r in f.regions)
        if f.q:
            params.append(("q", f.q))
        if f.started_after:
            params.append(("started_after", iso_z(f.started_after)))
        if f.started_before:
            params.append(("started_before", iso_z(f.started_before)))
        if f.redriven is not None:
            params.append(("redriven", "REDRIVEN" if f.redriven else "NOT_REDRIVEN"))
        if self.in_state is not None:
            params.append(("in_state", self.in_state))
        return params

    def snapshot(self) -> dict[str, Any]:
        """For the record (BulkStop.selection)."""
        if self.is_picked:
            return {"picked": list(self.picked)}
        f = self.filters
        return {
            "statuses": list(f.statuses),
            "state_machine": f.state_machine_arn,
            "version": f.version_arn,
            "alias": f.alias_arn,
            "accounts": list(f.accounts),
            "regions": list(f.regions),
            "q": f.q,
            "started_after": iso_z(f.started_after) if f.started_after else None,
            "started_before": iso_z(f.started_before) if f.started_before else None,
            "redriven": f.redriven,
            "in_state": self.in_state,
        }

    def describe(self, action: str = STOP) -> str:
        """In words, for the dry run and the batch."""
        if self.is_picked:
            n = len(self.picked)
            return f"{n} execution{'s' if n != 1 else ''} picked one by one"
        f = self.filters
        parts: list[str] = []
        if f.state_machine_arn:
            parts.append(f"of {state_machine_name(f.state_machine_arn)}")
        else:
            parts.append("of every state machine")
        if f.version_arn:
            parts.append(f"started through version {f.version_arn.rsplit(':', 1)[-1]}")
        if f.alias_arn:
            parts.append(f"started through alias {f.alias_arn.rsplit(':', 1)[-1]}")
        if f.accounts:
            parts.append(f"in account{'s' if len(f.accounts) > 1 else ''} {', '.join(f.accounts)}")
        if f.regions:
            parts.append(f"in {', '.join(f.regions)}")
        if self.in_state is not None:
            parts.append(f"in the state {self.in_state}" if self.in_state else "in no state yet")
        if f.q:
            parts.append(f"found by the search “{f.q}” (name, input, output, error, cause)")
        if f.started_after:
            parts.append(f"started at or after {_utc(f.started_after)}")
        if f.started_before:
            parts.append(f"started before {_utc(f.started_before)}")
        if f.redriven is not None:
            parts.append("redriven before" if f.redriven else "never redriven")
        if action == REDRIVE:
            other = [s for s in f.statuses if s not in redrive.REDRIVABLE_STATUSES]
            if other:
                parts.append(
                    f"(the filter also asks for {', '.join(other)}: nothing to redrive there)"
                )
            return (
                "Failed, timed-out or aborted executions started in the last 14 days "
                + " ".join(parts)
            )
        closed = [s for s in f.statuses if s not in OPEN_STATUSES]
        if closed:
            parts.append(f"(the filter also asks for {', '.join(closed)}: nothing to stop there)")
        return "Running executions " + " ".join(parts)


@dataclass
class DryRun:
    selection: Selection
    ids: list[int]
    # The first SHOWN of them, with their state machine and current state.
    shown: Sequence[Execution]
    # Selected but finished: left out. `excluded_exact` False: at least that many.
    excluded: int
    excluded_exact: bool
    action: str = STOP

    @property
    def count(self) -> int:
        return min(len(self.ids), CAP)

    @property
    def too_many(self) -> bool:
        return len(self.ids) > CAP

    @property
    def digest(self) -> str:
        return digest(self.ids)

    @property
    def more_than_shown(self) -> int:
        return max(0, self.count - len(self.shown))


def digest(ids: Iterable[int]) -> str:
    """Names a set of executions: the confirmation is for exactly these."""
    text = ",".join(str(pk) for pk in sorted(ids))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def snapshot_ids(selection: Selection, action: str = STOP) -> list[int]:
    """The ids a batch would stop (or redrive) now, oldest first (CAP + 1 at
    most: one more says "too many")."""
    return list(
        selection.targets(action)
        .order_by("start_date", "id")
        .values_list("id", flat=True)[: CAP + 1]
    )


def dry_run(selection: Selection, action: str = STOP) -> DryRun:
    """Three queries: the ids, the first of them in full, the ones left out
    (finished ones for a stop; the rest for a redrive)."""
    ids = snapshot_ids(selection, action)
    shown = list(
        Execution.objects.filter(pk__in=ids[:SHOWN])
        .select_related("state_machine")
        .only(*runaways.ROW_FIELDS, *(("redrive_count",) if action == REDRIVE else ()))
        .annotate(state=runaways.current_state())
        .order_by("start_date", "id")
    )
    if action == REDRIVE:
        left_out = selection.candidates().exclude(pk__in=selection.to_redrive().values("id"))
    else:
        left_out = selection.candidates().exclude(status__in=OPEN_STATUSES)
    excluded = left_out.order_by().values("id")[: EXCLUDED_CAP + 1].count()
    return DryRun(
        selection=selection,
        ids=ids,
        shown=shown,
        excluded=min(excluded, EXCLUDED_CAP),
        excluded_exact=excluded <= EXCLUDED_CAP,
        action=action,
    )


def request_token(batch_id: uuid.UUID, arn: str) -> uuid.UUID:
    """One stop per execution and batch, however often its task runs."""
    return uuid.uuid5(batch_id, arn)


def start(
    *,
    batch_id: uuid.UUID,
    user: AbstractBaseUser,
    selection: Selection,
    ids: Sequence[int],
    error: str,
    cause: str,
    action: str = STOP,
) -> BulkStop:
    """Record the batch and its items, and hand the chunks to workers once
    the transaction commits."""
    if len(ids) > CAP:
        raise ValueError(f"a batch stops at most {CAP} executions")
    if action not in ACTIONS:
        raise ValueError(f"a batch stops or redrives, not {action!r}")
    with transaction.atomic():
        batch = BulkStop.objects.create(
            id=batch_id,
            user_id=user.pk,
            username=user.get_username(),
            error=error,
            cause=cause,
            selection=selection.snapshot(),
            description=selection.describe(action)[:1000],
            count=len(ids),
            finished_at=timezone.now() if not ids else None,
            action=action,
        )
        BulkStopItem.objects.bulk_create(
            BulkStopItem(batch=batch, execution_id=pk, position=i) for i, pk in enumerate(ids)
        )
        transaction.on_commit(lambda: enqueue(batch))
    return batch


def enqueue(batch: BulkStop) -> int:
    """Hand the items still waiting to workers, CHUNK per task. Returns the
    number of tasks sent; a broker that is down is recorded on the batch."""
    pending = list(batch.items.filter(**_WAITING).order_by("position").values_list("id", flat=True))
    sent = 0
    try:
        for i in range(0, len(pending), CHUNK):
            signals.bulk_chunk_ready.send(
                sender=__name__, batch_id=str(batch.pk), item_ids=pending[i : i + CHUNK]
            )
            sent += 1
    except Exception as exc:
        log.warning("could not enqueue bulk %s %s", batch.action, batch.pk, exc_info=True)
        handed = min(sent * CHUNK, len(pending))
        what = "redrives" if batch.action == REDRIVE else "stops"
        text = (
            f"Could not hand the {what} to a worker ({type(exc).__name__}: {exc}). "
            f"{handed} of {len(pending)} were handed over; use Resume when the broker is back."
        )
        BulkStop.objects.filter(pk=batch.pk).update(enqueue_error=text[:2000])
        return sent
    BulkStop.objects.filter(pk=batch.pk).update(enqueue_error="")
    return sent


# --- The worker side ------------------------------------------------------------------

# An item still waiting: no outcome, no note.
_WAITING: dict[str, Any] = {
    "stop_request__isnull": True,
    "action_request__isnull": True,
    "note": "",
}


def stop_items(batch_id: uuid.UUID, item_ids: Sequence[int]) -> str:
    """Stop the executions of these items, in order. Items that already have an
    outcome are skipped; a stop whose attempt was recorded but not linked (the
    task died in between) is found again by its token, not sent again. A
    redrive batch's items are redriven (redrive_items)."""
    batch = BulkStop.objects.filter(pk=batch_id).first()
    if batch is None:
        return "gone"
    if batch.action == REDRIVE:
        return redrive_items(batch, item_ids)
    user = get_user_model().objects.filter(pk=batch.user_id).first() if batch.user_id else None
    items = list(
        BulkStopItem.objects.filter(
            batch=batch, pk__in=list(item_ids), stop_request__isnull=True, note=""
        )
        .select_related("execution__state_machine")
        .order_by("position")
    )
    done = 0
    for item in items:
        if user is None:
            _note(item, f"Not sent: {batch.username} no longer exists.")
            continue
        try:
            attempt = stop.request_stop(
                item.execution,
                user,
                error=batch.error,
                cause=batch.cause,
                request_token=request_token(batch.pk, item.execution.arn),
                batch_id=batch.pk,
            )
        except PermissionDenied:
            _note(
                item,
                f"Not sent: {batch.username} no longer has the permission to stop executions.",
            )
            continue
        BulkStopItem.objects.filter(pk=item.pk, stop_request__isnull=True).update(
            stop_request=attempt
        )
        done += 1
    _finish_if_done(batch)
    return f"{done} of {len(item_ids)} stopped or checked"


def redrive_items(batch: BulkStop, item_ids: Sequence[int]) -> str:
    """Redrive the executions of these items, in order, as stop_items stops them:
    one ActionRequest each (token uuid5(batch id, ARN), also AWS's clientToken),
    each checked live first."""
    user = get_user_model().objects.filter(pk=batch.user_id).first() if batch.user_id else None
    items = list(
        BulkStopItem.objects.filter(batch=batch, pk__in=list(item_ids), **_WAITING)
        .select_related("execution__state_machine")
        .order_by("position")
    )
    done = 0
    for item in items:
        if user is None:
            _note(item, f"Not sent: {batch.username} no longer exists.")
            continue
        try:
            attempt = redrive.request_redrive(
                item.execution,
                user,
                request_token=request_token(batch.pk, item.execution.arn),
                batch_id=batch.pk,
            )
        except PermissionDenied:
            _note(
                item,
                f"Not sent: {batch.username} no longer has the permission to redrive executions.",
            )
            continue
        BulkStopItem.objects.filter(pk=item.pk, action_request__isnull=True).update(
            action_request=attempt
        )
        done += 1
    _finish_if_done(batch)
    return f"{done} of {len(item_ids)} redriven or checked"


def _note(item: BulkStopItem, text: str) -> None:
    BulkStopItem.objects.filter(
        pk=item.pk, stop_request__isnull=True, action_request__isnull=True
    ).update(note=text)


def _finish_if_done(batch: BulkStop) -> None:
    if not batch.items.filter(**_WAITING).exists():
        BulkStop.objects.filter(pk=batch.pk, finished_at__isnull=True).update(
            finished_at=timezone.now()
        )


# --- Progress -------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    stopped: int = 0
    refused: int = 0
    failed: int = 0
    # Sent, no answer: AWS may or may not have stopped them.
    unknown: int = 0
    sending: int = 0
    not_sent: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        return self.stopped + self.refused + self.failed + self.unknown + self.not_sent


def progress(batch: BulkStop) -> Progress:
    """Outcomes so far, in one query. For a redrive batch, `stopped` counts the
    executions redriven, `refused` those AWS would not redrive."""
    if batch.action == REDRIVE:
        return _redrive_progress(batch)
    Outcome = StopRequest.Outcome
    in_flight = Q(stop_request__aws_response=stop.IN_FLIGHT)
    counts = batch.items.aggregate(
        stopped=Count("id", filter=Q(stop_request__outcome=Outcome.STOPPED)),
        refused=Count("id", filter=Q(stop_request__outcome=Outcome.REFUSED)),
        failed=Count("id", filter=Q(stop_request__outcome=Outcome.FAILED) & ~in_flight),
        unknown=Count("id", filter=Q(stop_request__outcome=Outcome.UNKNOWN)),
        sending=Count("id", filter=in_flight),
        not_sent=Count("id", filter=Q(stop_request__isnull=True) & ~Q(note="")),
        waiting=Count("id", filter=Q(stop_request__isnull=True, note="")),
    )
    return Progress(**{k: int(v or 0) for k, v in counts.items()})


def _redrive_progress(batch: BulkStop) -> Progress:
    Outcome = ActionRequest.Outcome
    in_flight = Q(action_request__aws_response=redrive.IN_FLIGHT)
    counts = batch.items.aggregate(
        stopped=Count("id", filter=Q(action_request__outcome=Outcome.DONE)),
        refused=Count("id", filter=Q(action_request__outcome=Outcome.REFUSED)),
        failed=Count("id", filter=Q(action_request__outcome=Outcome.FAILED) & ~in_flight),
        unknown=Count("id", filter=Q(action_request__outcome=Outcome.UNKNOWN)),
        sending=Count("id", filter=in_flight),
        not_sent=Count("id", filter=Q(action_request__isnull=True) & ~Q(note="")),
        waiting=Count("id", filter=Q(action_request__isnull=True, note="")),
    )
    return Progress(**{k: int(v or 0) for k, v in counts.items()})


def _utc(value: dt.datetime) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
