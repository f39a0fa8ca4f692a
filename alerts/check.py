"""The check the tick runs: every rule against the cache, firings opened and
resolved, and the posts they call for claimed.

- A firing opens when its rule's condition holds for a subject that has no
  open firing: the insert is the claim (a unique constraint on the open
  firing of a rule and subject), so two checks at once open it once.
- It resolves when the condition no longer holds: a compare-and-set on
  `resolved_at IS NULL`.
- Posts: the open firings of a rule that is not muted, not yet posted, are
  claimed together into one post (compare-and-set on `fired_note IS NULL`,
  as Watch claims watches), and so are the ends of firings that were posted.
  However many workers run the check, each firing is in one post of each
  kind. A muted rule's firings wait: still open when the mute ends, they are
  posted then.

No AWS call: one query per kind of rule (rules.py), a few for the rules, the
open firings and the posts due, and writes only when something changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from executions.times import human_seconds

from . import notify, rules
from .models import AlertAudit, AlertFiring, AlertNotification, AlertRule

log = logging.getLogger(__name__)

# The last check, for the page ("checked 3 s ago").
LAST_CHECK_KEY = "alerts:last-check"
# A post never attempted this long after it was claimed (the broker was down
# when the check handed it over) is handed over again.
SWEEP_AFTER = dt.timedelta(seconds=60)


@dataclass
class Report:
    rules: int = 0
    fired: int = 0
    resolved: int = 0
    errors: list[str] = field(default_factory=list)
    # Posts to deliver (attempt 1), for the caller to hand to workers.
    posts: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "rules": self.rules,
            "fired": self.fired,
            "resolved": self.resolved,
            "posts": len(self.posts),
            "errors": len(self.errors),
        }


def run(now: dt.datetime | None = None) -> Report:
    now = now or timezone.now()
    started = time.monotonic()
    report = Report()
    all_rules = list(AlertRule.objects.all())
    report.rules = len(all_rules)
    open_firings: dict[int, dict[str, AlertFiring]] = defaultdict(dict)
    for firing in AlertFiring.objects.filter(resolved_at__isnull=True).only(
        "id", "rule_id", "subject", "label", "fired_at"
    ):
        open_firings[firing.rule_id][firing.subject] = firing
    found, errors = rules.evaluate_all(all_rules, now)
    report.errors.extend(errors)
    for rule in all_rules:
        if rule.pk in found:
            _check(rule, now, found[rule.pk], open_firings.get(rule.pk, {}), report)
    if notify.enabled():
        report.posts.extend(_claim_posts(all_rules, now))
        report.posts.extend(_unattempted(now))
    cache.set(
        LAST_CHECK_KEY,
        {
            "at": now,
            "rules": report.rules,
            "seconds": round(time.monotonic() - started, 3),
            "errors": report.errors[:5],
        },
        timeout=None,
    )
    return report


def _check(
    rule: AlertRule,
    now: dt.datetime,
    found: rules.Found,
    opened: dict[str, AlertFiring],
    report: Report,
) -> None:
    for subject, finding in found.by_subject.items():
        if subject not in opened and _open(rule, finding, now):
            report.fired += 1
    # A subject beyond the cap still holds: only those that no longer hold resolve.
    for subject, firing in opened.items():
        if subject not in found.held and _resolve(rule, firing, now):
            report.resolved += 1


def _open(rule: AlertRule, finding: rules.Finding, now: dt.datetime) -> bool:
    try:
        with transaction.atomic():
            AlertFiring.objects.create(
                rule=rule,
                subject=finding.subject,
                label=finding.label[:300],
                detail=finding.detail[:500],
                execution_id=finding.execution_id,
                fired_at=now,
            )
            AlertAudit.objects.create(
                at=now,
                kind=AlertAudit.Kind.FIRED,
                rule=rule,
                rule_name=rule.name,
                detail=f"{finding.label}: {finding.detail}",
            )
    except IntegrityError:
        return False  # another check opened it first
    return True


def _resolve(rule: AlertRule, firing: AlertFiring, now: dt.datetime) -> bool:
    with transaction.atomic():
        if not AlertFiring.objects.filter(pk=firing.pk, resolved_at__isnull=True).update(
            resolved_at=now
        ):
            return False  # another check resolved it first
        lasted = human_seconds((now - firing.fired_at).total_seconds())
        AlertAudit.objects.create(
            at=now,
            kind=AlertAudit.Kind.RESOLVED,
            rule=rule,
            rule_name=rule.name,
            detail=f"{firing.label}: the condition cleared after {lasted}",
        )
    return True


def _claim_posts(all_rules: Iterable[AlertRule], now: dt.datetime) -> list[int]:
    live = {rule.pk: rule for rule in all_rules if not rule.muted(now)}
    if not live:
        return []
    due: dict[tuple[int, str], list[int]] = defaultdict(list)
    for pk, rule_id in AlertFiring.objects.filter(
        resolved_at__isnull=True, fired_note__isnull=True, rule_id__in=list(live)
    ).values_list("pk", "rule_id"):
        due[(rule_id, AlertNotification.Kind.FIRED)].append(pk)
    for pk, rule_id in AlertFiring.objects.filter(
        resolved_at__isnull=False,
        fired_note__isnull=False,
        resolved_note__isnull=True,
        rule_id__in=list(live),
    ).values_list("pk", "rule_id"):
        due[(rule_id, AlertNotification.Kind.RESOLVED)].append(pk)
    posts = []
    for (rule_id, kind), pks in due.items():
        try:
            post = claim(live[rule_id], kind, pks, now)
        except Exception:
            log.exception("alert post of rule %s could not be claimed", rule_id)
            continue
        if post is not None:
            posts.append(post)
    return posts


def claim(rule: AlertRule, kind: str, firing_pks: list[int], now: dt.datetime) -> int | None:
    """Claim these firings for one post of `kind`, by compare-and-set; the
    post's pk, or None when another worker claimed them all first."""
    column = "fired_note" if kind == AlertNotification.Kind.FIRED else "resolved_note"
    with transaction.atomic():
        note = AlertNotification.objects.create(rule=rule, kind=kind, text="")
        claimed = AlertFiring.objects.filter(
            pk__in=firing_pks, **{f"{column}__isnull": True}
        ).update(**{column: note})
        if not claimed:
            transaction.set_rollback(True)
            return None
        # Only the firings this claim won are named: another worker's stay theirs.
        mine = list(AlertFiring.objects.filter(**{column: note}))
        note.text = notify.message(rule, kind, mine, now)
        note.save(update_fields=["text"])
    return note.pk


def _unattempted(now: dt.datetime) -> list[int]:
    return list(
        AlertNotification.objects.filter(
            attempts=0,
            sent_at__isnull=True,
            gave_up_at__isnull=True,
            created_at__lt=now - SWEEP_AFTER,
        ).values_list("pk", flat=True)[:100]
    )


def last_check() -> dict[str, object] | None:
    found: dict[str, object] | None = cache.get(LAST_CHECK_KEY)
    return found
