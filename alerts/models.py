"""Alert rules people write on /alerts/, what fired, what was posted, and the
audit of both."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q

from executions.times import human_seconds


class AlertRule(models.Model):
    """One condition the tick checks against the cache (rules.py)."""

    class Kind(models.TextChoices):
        LONG_RUNNING = "LONG_RUNNING", "An execution running longer than"
        FAILURES = "FAILURES", "Failures in a window"
        MAP_RUN_TOLERANCE = "MAP_RUN_TOLERANCE", "A Map Run near its failure tolerance"
        NO_START = "NO_START", "No start for"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # Blank: any state machine (not for NO_START). An ARN rather than a key:
    # the rule outlives the cache's rows (`manage.py forget`, a re-discovery).
    state_machine_arn = models.CharField(max_length=2048, blank=True)
    # Its name when the rule was saved, for the words of the rule.
    state_machine_name = models.CharField(max_length=80, blank=True)
    # LONG_RUNNING: running longer than this; NO_START: no start for this long.
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # FAILURES: `threshold` failures (FAILED, TIMED_OUT, ABORTED) that ended
    # in the last `window_seconds`, with `error` when it is set.
    threshold = models.PositiveIntegerField(null=True, blank=True)
    window_seconds = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=256, blank=True)
    # MAP_RUN_TOLERANCE: a running Map Run whose failures reached this share
    # of the failures it tolerates.
    percent = models.FloatField(null=True, blank=True)
    # Nothing is posted until then; firings are still recorded and shown.
    muted_until = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The dashboard's address as its author used it, for the links in posts
    # when SFNUI_BASE_URL is not set (the tick has no request to ask).
    base_url = models.CharField(max_length=2048, blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def muted(self, now: dt.datetime) -> bool:
        return self.muted_until is not None and self.muted_until > now

    @property
    def machine_words(self) -> str:
        return self.state_machine_name or "any state machine"

    @property
    def condition(self) -> str:
        """The rule in words, as the page and the posts say it."""
        machine = self.machine_words
        if self.kind == self.Kind.LONG_RUNNING:
            return (
                f"An execution of {machine} running longer than "
                f"{human_seconds(self.duration_seconds or 0)}"
            )
        if self.kind == self.Kind.FAILURES:
            error = f" with error {self.error}" if self.error else ""
            return (
                f"{self.threshold} or more failures of {machine}{error} "
                f"in {human_seconds(self.window_seconds or 0)}"
            )
        if self.kind == self.Kind.MAP_RUN_TOLERANCE:
            return f"A Map Run of {machine} at {self.percent:g} % of its failure tolerance or more"
        return f"No start of {machine} for {human_seconds(self.duration_seconds or 0)}"


class AlertNotification(models.Model):
    """One post to the webhook: the firings claimed for it (compare-and-set on
    AlertFiring.fired_note / resolved_note), each in at most one post of each
    kind."""

    class Kind(models.TextChoices):
        FIRED = "FIRED"
        RESOLVED = "RESOLVED"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # What is posted, fixed when it was claimed: every retry posts the same.
    text = models.TextField()
    attempts = models.IntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    gave_up_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The tick's sweep: posts never attempted (the broker was down).
            models.Index(
                fields=["created_at"],
                name="alertnote_unsent_idx",
                condition=Q(attempts=0, sent_at__isnull=True, gave_up_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} post {self.pk} of rule {self.rule_id}"

    @property
    def state(self) -> str:
        if self.sent_at:
            return "posted"
        if self.gave_up_at:
            return "not posted"
        return "posting"


class AlertFiring(models.Model):
    """A rule's condition held for one subject (an execution, a Map Run, or
    the rule as a whole) from `fired_at` until `resolved_at`."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    # What fired: an execution or Map Run ARN; "" for the rule as a whole
    # (failures in a window, no start).
    subject = models.CharField(max_length=2048, blank=True)
    # The words and the link of the subject, when it fired.
    label = models.CharField(max_length=300)
    detail = models.CharField(max_length=500)
    # The execution the post summarises: the long-running one, the latest
    # failure, the Map Run's parent, the last start.
    execution = models.ForeignKey(
        "executions.Execution", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    fired_note = models.ForeignKey(
        AlertNotification, null=True, blank=True, on_delete=models.SET_NULL, related_name="fired"
    )
    resolved_note = models.ForeignKey(
        AlertNotification,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resolved",
    )

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            # One open firing per rule and subject: two ticks that see the
            # same condition at once make one firing (the loser's insert fails).
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=Q(resolved_at__isnull=True),
                name="alertfiring_open_uniq",
            ),
        ]
        indexes = [
            # The tick's "what fires now" and the page's "firing now".
            models.Index(
                fields=["rule"], name="alertfiring_open_idx", condition=Q(resolved_at__isnull=True)
            ),
            # The page's recent alerts, newest first.
            models.Index(fields=["-resolved_at"], name="alertfiring_resolved_idx"),
            # Resolved firings that were posted and whose end was not yet.
            models.Index(
                fields=["rule"],
                name="alertfiring_unposted_end_idx",
                condition=Q(
                    resolved_at__isnull=False,
                    fired_note__isnull=False,
                    resolved_note__isnull=True,
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.label}"

    @property
    def lasted(self) -> float | None:
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.fired_at).total_seconds()


class AlertAudit(models.Model):
    """Who changed which rule, and what fired and resolved: the alerts' audit."""

    class Kind(models.TextChoices):
        CREATED = "CREATED", "Created"
        CHANGED = "CHANGED", "Changed"
        DELETED = "DELETED", "Deleted"
        MUTED = "MUTED", "Muted"
        UNMUTED = "UNMUTED", "Unmuted"
        FIRED = "FIRED", "Fired"
        RESOLVED = "RESOLVED", "Resolved"

    at = models.DateTimeField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit"
    )
    # Kept when the rule is deleted.
    rule_name = models.CharField(max_length=100)
    # Who did it; "" for the tick (fired, resolved).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)
    # The rule's words, what changed, or what fired.
    detail = models.TextField()

    class Meta:
        # The audit page reads newest first by primary key (keyset on id).
        ordering = ["-id"]
        indexes = [
            # A rule's page: its own rows.
            models.Index(fields=["rule", "-id"], name="alertaudit_rule_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.rule_name} by {self.username or 'sfnui'}"
