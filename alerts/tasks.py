"""Thin Celery tasks over the alert check and its posts; beat runs the check
on every tick of the sync (SFNUI_SYNC_TICK, see settings)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from executions.sync.locks import held

from . import check, notify

log = logging.getLogger(__name__)


@shared_task(acks_late=True)
def check_alerts() -> dict[str, object]:
    """Every rule against the cache; the posts it claimed go to workers."""
    # A check killed while it holds the lock delays the next by this at most.
    timeout = max(30.0, settings.SFNUI_SYNC_TICK * 4)
    with held("alerts-check", timeout=timeout) as mine:
        if not mine:
            return {}
        report = check.run()
    for pk in report.posts:
        try:
            deliver_alert.delay(pk, 1)
        except Exception:
            # The broker is down: the next check hands it over again (check.SWEEP_AFTER).
            log.warning("could not hand alert post %s to a worker", pk, exc_info=True)
    return report.summary()


@shared_task(acks_late=True)
def deliver_alert(note_pk: int, attempt: int) -> str:
    """One attempt of a post; a failed one is tried again after notify.BACKOFF."""
    delivery = notify.deliver(note_pk, attempt)
    if delivery.retry_in is not None:
        try:
            deliver_alert.apply_async((note_pk, attempt + 1), countdown=delivery.retry_in)
        except Exception as exc:
            notify.give_up(note_pk, attempt, type(exc).__name__)
    return delivery.outcome
