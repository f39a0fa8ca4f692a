"""Watch: tell the incident channel when a running execution finishes.

Someone presses Watch on a running execution (a `Watch` row). When the sync
stores a closed status for it (sync/rows.py, through
signals.execution_closed; a batch of the sync once for all its closed ones,
through signals.executions_closed), `closed()` hands `notify()` to a worker
once the transaction commits; the sync itself never waits on the webhook. `notify()`
claims the execution's open watches by compare-and-set (`notification IS
NULL` -> this notification), so however often the sync sees the finish,
and however many workers run, each watch is in exactly one post: one
message per finish, naming everyone who watched.

The message is the same Markdown summary as "copy for incident"
(incident.summary_for), posted by webhook.py. A failed post is recorded and
retried with backoff (BACKOFF); a refusal that retrying cannot fix (most
4xx) is recorded and not retried.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.dispatch import receiver
from django.utils import timezone

from executions import signals
from executions.actions import webhook
from executions.models import OPEN_STATUSES, Execution, Watch, WatchNotification
from executions.text import incident

log = logging.getLogger(__name__)

# Seconds before the 2nd, 3rd and 4th attempt; then it gives up.
BACKOFF = (10, 60, 300)
MAX_ATTEMPTS = len(BACKOFF) + 1


def enabled() -> bool:
    return bool(settings.SFNUI_WATCH_WEBHOOK_URL)


def pending(execution: Execution) -> list[Watch]:
    """Who waits for this execution to finish."""
    return list(Watch.objects.filter(execution=execution, notification__isnull=True))


def watch(execution: Execution, user: AbstractBaseUser, base_url: str) -> bool:
    """Start watching; False when this person already watches it."""
    try:
        with transaction.atomic():
            Watch.objects.create(
                execution=execution,
                user_id=user.pk,
                username=user.get_username(),
                base_url=base_url,
            )
    except IntegrityError:
        return False
    # It may have closed between the page's read and this row: the sync that
    # stored the close looked for watches before this one existed.
    status = Execution.objects.filter(pk=execution.pk).values_list("status", flat=True).first()
    if status is not None and status not in OPEN_STATUSES:
        closed(execution.pk)
    return True


def unwatch(execution: Execution, user: AbstractBaseUser) -> bool:
    deleted, _ = Watch.objects.filter(
        execution=execution, user_id=user.pk, notification__isnull=True
    ).delete()
    return bool(deleted)


@receiver(signals.execution_closed, dispatch_uid="executions.actions.watch.closed")
def _closed(execution_pk: int, **_: Any) -> None:
    closed(execution_pk)


def closed(execution_pk: int) -> None:
    """The sync stored a closed status. If anyone watches the execution, a
    worker posts it once this transaction commits. Never raises: the sync
    goes on whatever happens to the notification."""
    try:
        if not Watch.objects.filter(execution_id=execution_pk, notification__isnull=True).exists():
            return
    except Exception:
        log.warning("could not look for watches of execution %s", execution_pk, exc_info=True)
        return
    transaction.on_commit(lambda: _enqueue_notify(execution_pk))


@receiver(signals.executions_closed, dispatch_uid="executions.actions.watch.closed_many")
def _closed_many(execution_pks: list[int], **_: Any) -> None:
    closed_many(execution_pks)


def closed_many(execution_pks: list[int]) -> None:
    """closed() for several executions, with one question for all of them."""
    try:
        watched = set(
            Watch.objects.filter(execution_id__in=execution_pks, notification__isnull=True)
            .values_list("execution_id", flat=True)
            .distinct()
            .order_by()
        )
    except Exception:
        log.warning(
            "could not look for watches of %d executions", len(execution_pks), exc_info=True
        )
        return
    for pk in sorted(watched):
        transaction.on_commit(functools.partial(_enqueue_notify, pk))


def _enqueue_notify(execution_pk: int) -> None:
    try:
        signals.watchers_to_notify.send(sender=__name__, execution_pk=execution_pk)
    except Exception:
        # The broker is down; notify_finished_watches (periodic) picks it up.
        log.warning("could not enqueue the watch notification of %s", execution_pk, exc_info=True)


def notify(execution_pk: int) -> str:
    """Claim the execution's open watches and post once for all of them."""
    ex = Execution.objects.select_related("state_machine").filter(pk=execution_pk).first()
    if ex is None:
        return "gone"
    if ex.is_open:
        # Redriven since the close was seen: its watches wait for the next end.
        return "running again"
    watches = pending(ex)
    if not watches:
        return "nobody watches"
    text = message(ex, watches)
    with transaction.atomic():
        note = WatchNotification.objects.create(execution=ex, text=text)
        # Compare-and-set: a watch another worker claimed meanwhile stays its own.
        claimed = Watch.objects.filter(
            pk__in=[w.pk for w in watches], notification__isnull=True
        ).update(notification=note)
        if not claimed:
            transaction.set_rollback(True)
            return "already notified"
    if claimed != len(watches):
        # Some were claimed by another worker: name only our own watchers.
        note.text = message(ex, list(note.watches.all()))
        WatchNotification.objects.filter(pk=note.pk).update(text=note.text)
    return deliver(note.pk, attempt=1)


def notify_finished() -> int:
    """Open watches of executions that finished: notify them. For when the
    broker was down at the moment the sync saw the end."""
    ids = list(
        Watch.objects.filter(notification__isnull=True)
        .exclude(execution__status__in=OPEN_STATUSES)
        .values_list("execution_id", flat=True)
        .distinct()
        .order_by()
    )
    for pk in ids:
        notify(pk)
    return len(ids)


def message(ex: Execution, watches: list[Watch]) -> str:
    """The post: who watched, then the incident summary."""
    base = settings.SFNUI_BASE_URL or next((w.base_url for w in watches if w.base_url), "")
    names = sorted({w.username for w in watches})
    head = f"Watched execution finished (watched by {', '.join(incident.plain(n) for n in names)})"
    return f"{head}\n{incident.summary_for(ex, base=base.rstrip('/'))}"


def deliver(notification_pk: int, attempt: int) -> str:
    """Post attempt number `attempt`. Claimed by compare-and-set on the attempt
    count, so that a task run twice does not post twice."""
    now = timezone.now()
    claimed = WatchNotification.objects.filter(
        pk=notification_pk,
        attempts=attempt - 1,
        sent_at__isnull=True,
        gave_up_at__isnull=True,
    ).update(attempts=attempt, last_attempt_at=now)
    if not claimed:
        return "already attempted"
    note = WatchNotification.objects.get(pk=notification_pk)
    url: str = settings.SFNUI_WATCH_WEBHOOK_URL
    try:
        if not url:
            raise webhook.WebhookError("SFNUI_WATCH_WEBHOOK_URL is not set", retry=False)
        webhook.post(url, webhook.payload(note.text))
    except webhook.WebhookError as exc:
        retry = exc.retry and attempt < MAX_ATTEMPTS
        error = f"attempt {attempt}: {exc}"
        WatchNotification.objects.filter(pk=note.pk).update(
            last_error=error[:2000], gave_up_at=None if retry else timezone.now()
        )
        log.warning("watch notification %s: %s", note.pk, error)
        if retry:
            _retry_later(note.pk, attempt)
        return error
    WatchNotification.objects.filter(pk=note.pk).update(sent_at=timezone.now(), last_error="")
    return "sent"


def _retry_later(notification_pk: int, attempt: int) -> None:
    try:
        signals.watch_retry_wanted.send(
            sender=__name__,
            notification_pk=notification_pk,
            attempt=attempt + 1,
            countdown=BACKOFF[attempt - 1],
        )
    except Exception as exc:
        WatchNotification.objects.filter(pk=notification_pk).update(
            gave_up_at=timezone.now(),
            last_error=f"attempt {attempt} failed, and the retry could not be scheduled "
            f"({type(exc).__name__})",
        )
