"""Posting alerts: the words of a post, the link of each firing, and the
delivery of one post to the webhook, once.

A post (AlertNotification) is claimed for its firings by check.py; here it
is sent. The attempt is claimed by compare-and-set on its count, as Watch's
posts are (executions/actions/watch.py): a task run twice, or two workers
given the same post, send it once. A failed attempt is retried with BACKOFF;
a refusal that retrying cannot fix (most 4xx) is recorded and not retried.
The client is Watch's Slack-compatible one (executions/actions/webhook.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from executions.actions import webhook
from executions.models import FAILURE_STATUSES, Execution
from executions.text import incident
from executions.times import human_seconds

from .models import AlertFiring, AlertNotification, AlertRule

log = logging.getLogger(__name__)

# Seconds before the 2nd, 3rd and 4th attempt; then it gives up.
BACKOFF = (10, 60, 300)
MAX_ATTEMPTS = len(BACKOFF) + 1
# Firings named one by one in a post; the rest are counted.
LISTED = 10


def webhook_url() -> str:
    url: str = settings.SFNUI_ALERTS_WEBHOOK_URL
    return url


def enabled() -> bool:
    return bool(webhook_url())


def subject_target(rule: AlertRule, firing: AlertFiring) -> tuple[str, list[tuple[str, str]]]:
    """Where a firing is seen in the dashboard, as a path and its query: the
    execution, the Map Run, the failures of the state machine, or the quiet
    state machine."""
    if rule.kind == AlertRule.Kind.LONG_RUNNING and firing.subject:
        return reverse("execution_detail", args=[firing.subject]), []
    if rule.kind == AlertRule.Kind.MAP_RUN_TOLERANCE and firing.subject:
        return reverse("map_run_detail", args=[firing.subject]), []
    if rule.kind == AlertRule.Kind.NO_START:
        return reverse("state_machine_detail", args=[rule.state_machine_arn]), []
    query: list[tuple[str, str]] = [("status", s) for s in FAILURE_STATUSES]
    if rule.state_machine_arn:
        query.append(("state_machine", rule.state_machine_arn))
    return reverse("execution_list"), query


def subject_path(rule: AlertRule, firing: AlertFiring) -> str:
    path, query = subject_target(rule, firing)
    return f"{path}?{urlencode(query)}" if query else path


def base_for(rule: AlertRule) -> str:
    configured: str = settings.SFNUI_BASE_URL
    return (configured or rule.base_url).rstrip("/")


def message(rule: AlertRule, kind: str, firings: Sequence[AlertFiring], now: dt.datetime) -> str:
    """The post: the rule and its condition, each firing with its link, then
    (when it fired) the incident summary of the first one's execution."""
    base = base_for(rule)
    rule_link = f"{base}{reverse('alert_rule', args=[rule.pk])}"
    ordered = sorted(firings, key=lambda f: (f.fired_at, f.pk))
    if kind == AlertNotification.Kind.RESOLVED:
        head = f"**RESOLVED** · alert {incident.plain(rule.name)}"
    else:
        head = f"**FIRING** · alert {incident.plain(rule.name)}"
    lines = [head, f"- Rule: {incident.plain(rule.condition)} ({rule_link})"]
    for firing in ordered[:LISTED]:
        link = f"{base}{subject_path(rule, firing)}"
        if kind == AlertNotification.Kind.RESOLVED:
            lasted = human_seconds(firing.lasted or 0)
            what = f"fired {incident.utc_text(firing.fired_at)}, lasted {lasted}"
        else:
            what = firing.detail
        lines.append(f"- {incident.plain(firing.label)}: {incident.plain(what)} ({link})")
    if len(ordered) > LISTED:
        lines.append(f"- and {len(ordered) - LISTED} more ({rule_link})")
    if kind == AlertNotification.Kind.FIRED:
        pk = next((f.execution_id for f in ordered if f.execution_id), None)
        ex = (
            Execution.objects.select_related("state_machine").filter(pk=pk).first()
            if pk is not None
            else None
        )
        if ex is not None:
            lines.append("")
            lines.append(incident.summary_for(ex, base=base, now=now))
    return "\n".join(lines)


@dataclass(frozen=True)
class Delivery:
    outcome: str
    # Seconds until the next attempt, when there is one.
    retry_in: int | None = None


def deliver(note_pk: int, attempt: int) -> Delivery:
    """Post attempt number `attempt` of a post, claimed by compare-and-set on
    the attempt count."""
    claimed = AlertNotification.objects.filter(
        pk=note_pk, attempts=attempt - 1, sent_at__isnull=True, gave_up_at__isnull=True
    ).update(attempts=attempt, last_attempt_at=timezone.now())
    if not claimed:
        return Delivery("already attempted")
    note = AlertNotification.objects.get(pk=note_pk)
    url = webhook_url()
    try:
        if not url:
            raise webhook.WebhookError("SFNUI_ALERTS_WEBHOOK_URL is not set", retry=False)
        webhook.post(url, webhook.payload(note.text))
    except webhook.WebhookError as exc:
        retry = exc.retry and attempt < MAX_ATTEMPTS
        error = f"attempt {attempt}: {exc}"
        AlertNotification.objects.filter(pk=note_pk).update(
            last_error=error[:2000], gave_up_at=None if retry else timezone.now()
        )
        log.warning("alert post %s: %s", note_pk, error)
        return Delivery(error, BACKOFF[attempt - 1] if retry else None)
    AlertNotification.objects.filter(pk=note_pk).update(sent_at=timezone.now(), last_error="")
    return Delivery("sent")


def give_up(note_pk: int, attempt: int, why: str) -> None:
    """The retry of a failed attempt could not be scheduled (broker down)."""
    AlertNotification.objects.filter(pk=note_pk, sent_at__isnull=True).update(
        gave_up_at=timezone.now(),
        last_error=f"attempt {attempt} failed, and the retry could not be scheduled ({why})",
    )
