"""The cache: what the sync has read from AWS, and what people did here."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

OPEN_STATUSES = ("RUNNING", "PENDING_REDRIVE")
# The ends the failures page groups: an execution that did not succeed.
FAILURE_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
# How `Execution.sync_error` starts while AWS lists an execution that
# DescribeExecution does not know yet (AWS is eventually consistent): news
# on its way, retried shortly, not an error.
SYNC_LAGGING = "Waiting for AWS: "


class ExecutionStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


class StateMachine(models.Model):
    arn = models.CharField(max_length=2048, unique=True)
    name = models.CharField(max_length=80)
    type = models.CharField(max_length=16, default="STANDARD")  # STANDARD | EXPRESS
    region = models.CharField(max_length=32)
    account = models.CharField(max_length=16)
    definition = models.TextField(blank=True)
    role_arn = models.CharField(max_length=2048, blank=True)
    # ACTIVE or DELETING as AWS says; DELETED when ListStateMachines stopped
    # returning it (its executions stay in the cache).
    status = models.CharField(max_length=16, default="ACTIVE")
    creation_date = models.DateTimeField(null=True, blank=True)
    described_at = models.DateTimeField(null=True, blank=True)

    # Listing: every execution that started at or before `list_watermark` is
    # known. It only moves after a listing reached it, so a listing killed
    # halfway is redone from the top instead of leaving a gap.
    list_watermark = models.DateTimeField(null=True, blank=True)
    listed_at = models.DateTimeField(null=True, blank=True)
    list_due_at = models.DateTimeField(null=True, blank=True)
    list_interval = models.FloatField(default=0)
    list_error = models.TextField(blank=True)
    # Busy (listed often) until then: a listing or an event saw a running or
    # new execution (see plan.py).
    busy_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            # The scheduler: which state machines are due for a listing.
            models.Index(fields=["list_due_at"], name="sm_list_due_idx"),
            # The list and the pages filtered by account and region.
            models.Index(fields=["account", "region"], name="sm_account_region_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class Execution(models.Model):
    arn = models.CharField(max_length=2048, unique=True)
    name = models.CharField(max_length=256)
    state_machine = models.ForeignKey(
        StateMachine, on_delete=models.CASCADE, related_name="executions"
    )
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices)
    start_date = models.DateTimeField()
    stop_date = models.DateTimeField(null=True, blank=True)
    # NULL is "AWS gave none" (no output while running, no error on success),
    # which the pages tell apart from an empty string.
    input = models.TextField(null=True, blank=True)  # noqa: DJ001
    output = models.TextField(null=True, blank=True)  # noqa: DJ001
    error = models.TextField(null=True, blank=True)  # noqa: DJ001
    cause = models.TextField(null=True, blank=True)  # noqa: DJ001
    redrive_count = models.IntegerField(default=0)
    redrive_date = models.DateTimeField(null=True, blank=True)
    redrive_status = models.CharField(max_length=32, blank=True)
    redrive_status_reason = models.TextField(blank=True)
    map_run_arn = models.CharField(max_length=2048, blank=True)
    state_machine_version_arn = models.CharField(max_length=2048, blank=True)
    state_machine_alias_arn = models.CharField(max_length=2048, blank=True)
    # The state it failed in (from the history: the state entered last before
    # the execution failed, timed out or was aborted); "" when unknown or not a
    # failure. State names are at most 80 characters.
    failed_state = models.CharField(max_length=80, blank=True)

    # Sync bookkeeping.
    # Every event with an id up to this one is stored. It only moves once a
    # whole incremental fetch is stored, so a fetch killed halfway is redone.
    last_event_id = models.IntegerField(default=0)
    # The execution is closed and its final event is stored: no more calls,
    # unless a redrive reopens it.
    history_complete = models.BooleanField(default=False)
    # Set when a listing saw a new execution or a change of status or redrive
    # count; DescribeExecution clears it.
    needs_describe = models.BooleanField(default=True)
    described_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    # When the scheduler should sync it next; null when nothing is left to do.
    sync_due_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.TextField(blank=True)
    sync_failures = models.IntegerField(default=0)
    # The definition this execution ran (DescribeStateMachineForExecution),
    # which may not be today's; shared by every execution that ran the same text.
    definition = models.ForeignKey(
        "Definition", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        indexes = [
            # The list's default order: newest first, keyset on (start, id).
            models.Index(fields=["-start_date", "-id"], name="exec_start_idx"),
            # The list filtered by status (counts per status too).
            models.Index(fields=["status", "-start_date", "-id"], name="exec_status_start_idx"),
            # The list filtered by state machine, and state machine pages.
            models.Index(fields=["state_machine", "-start_date", "-id"], name="exec_sm_start_idx"),
            # The list filtered by state machine and status at once.
            models.Index(
                fields=["state_machine", "status", "-start_date"],
                name="exec_sm_status_start_idx",
            ),
            # Name search by prefix (varchar_pattern_ops on PostgreSQL makes
            # LIKE 'abc%' use it whatever the collation).
            models.Index(fields=["name"], name="exec_name_idx", opclasses=["varchar_pattern_ops"]),
            # The scheduler's work queue: executions with something left to sync.
            models.Index(
                fields=["sync_due_at"],
                name="exec_sync_due_idx",
                condition=Q(sync_due_at__isnull=False),
            ),
            # Its front: what a listing flagged (new, ended, redriven) goes first.
            models.Index(
                fields=["sync_due_at"],
                name="exec_describe_due_idx",
                condition=Q(sync_due_at__isnull=False, needs_describe=True),
            ),
            # A Map Run's children, with their status filters.
            models.Index(
                fields=["map_run_arn", "status", "-start_date"],
                name="exec_map_run_idx",
                condition=~Q(map_run_arn=""),
            ),
            # The list filtered by the version or the alias that ran it.
            models.Index(
                fields=["state_machine_version_arn", "-start_date"],
                name="exec_version_idx",
                condition=~Q(state_machine_version_arn=""),
            ),
            models.Index(
                fields=["state_machine_alias_arn", "-start_date"],
                name="exec_alias_idx",
                condition=~Q(state_machine_alias_arn=""),
            ),
            # The running set of a state machine, compared with ListExecutions(RUNNING).
            models.Index(
                fields=["state_machine", "start_date"],
                name="exec_running_idx",
                condition=Q(status__in=OPEN_STATUSES),
            ),
            # The failures page: failed, timed-out and aborted executions that
            # ended in a window, grouped by (state machine, failed state, error)
            # with first/last seen and per-hour counts. The error (at most 256
            # characters in AWS) and the start are carried so PostgreSQL reads
            # only the index.
            models.Index(
                fields=["stop_date", "state_machine", "failed_state", "status"],
                name="exec_failure_stop_idx",
                include=["error", "start_date"],
                condition=Q(status__in=FAILURE_STATUSES),
            ),
            # One group of failures: when it last failed before a window (is it
            # new?), and the executions list filtered to the group.
            models.Index(
                fields=["state_machine", "failed_state", "error", "stop_date"],
                name="exec_failure_group_idx",
                condition=Q(status__in=FAILURE_STATUSES),
            ),
        ]
        permissions = [
            ("stop_execution", "Can stop a running execution"),
            ("redrive_execution", "Can redrive a failed, timed-out or aborted execution"),
            ("start_execution", "Can start an execution of a state machine"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def sync_lagging(self) -> bool:
        """AWS lists it but cannot describe it yet: show "syncing", not an error."""
        return self.sync_error.startswith(SYNC_LAGGING)


class HistoryEvent(models.Model):
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    event_id = models.IntegerField()
    previous_event_id = models.IntegerField(default=0)
    timestamp = models.DateTimeField()
    type = models.CharField(max_length=64)
    # The one `*EventDetails` member of the event, under its own name, so that
    # history.json gives the event back as AWS sent it.
    details_key = models.CharField(max_length=64, blank=True)
    details = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            # One row per event however often, or however concurrently, it is
            # fetched; also serves the history's ordered scan.
            models.UniqueConstraint(
                fields=["execution", "event_id"], name="event_execution_id_uniq"
            ),
        ]
        indexes = [
            # The history's event type filter.
            models.Index(fields=["execution", "type", "event_id"], name="event_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} [{self.event_id}]"


class StopRequest(models.Model):
    """One attempt to stop an execution from this dashboard: sent, refused or failed."""

    class Outcome(models.TextChoices):
        STOPPED = "STOPPED"
        REFUSED = "REFUSED"  # already finished: nothing was sent
        FAILED = "FAILED"  # AWS answered with an error or could not be reached
        # Sent (or maybe sent) and no answer came: AWS may or may not have
        # stopped it; aws_response says what a DescribeExecution saw right after.
        UNKNOWN = "UNKNOWN"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="stops")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as text too: the audit outlives a deleted user.
    username = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    error = models.CharField(max_length=256, blank=True)
    cause = models.TextField(blank=True)
    status_before = models.CharField(max_length=16, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    aws_response = models.TextField(blank=True)
    # One per rendered confirmation form: a replayed or double-clicked POST
    # finds its attempt already recorded and sends nothing again.
    request_token = models.UUIDField(null=True, blank=True, unique=True)
    batch_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            # The audit page, newest first.
            models.Index(fields=["-requested_at"], name="stop_requested_idx"),
            # The audit filtered by batch id (a bulk stop's attempts).
            models.Index(
                fields=["batch_id", "-requested_at"],
                name="stop_batch_idx",
                condition=Q(batch_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} {self.execution_id} by {self.username}"


class SyncRun(models.Model):
    """One piece of sync work: what ran, where, what it cost, what went wrong."""

    class Kind(models.TextChoices):
        DISCOVER = "discover"  # ListStateMachines in one region
        LIST = "list"  # ListExecutions of one state machine
        EXECUTIONS = "executions"  # DescribeExecution / GetExecutionHistory of a batch
        LOOKUP = "lookup"  # an execution the cache had never seen, asked for by a person

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The identity that made the calls (aws.Target.key: an account id, or
    # "default"), whose budget they were spent from.
    account = models.CharField(max_length=32, blank=True, default="")
    region = models.CharField(max_length=32)
    state_machine = models.ForeignKey(
        StateMachine, null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_runs"
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # {"ListExecutions": 3, ...}: every HTTP attempt, retries included.
    api_calls = models.JSONField(default=dict)
    rows_written = models.IntegerField(default=0)
    ok = models.BooleanField(default=False)
    # "throttled" when AWS (or our own budget) asked us to slow down.
    throttled = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # With events on, a listing is reconciliation: the changes it found that
    # the events should have brought long before (EventBridge dropped them).
    missed_events = models.IntegerField(default=0)
    missed_example = models.CharField(max_length=2048, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # The sync page: latest runs per region / state machine and kind.
            models.Index(fields=["region", "kind", "-started_at"], name="syncrun_region_idx"),
            models.Index(fields=["state_machine", "-started_at"], name="syncrun_sm_idx"),
            # The warning bar: the newest successful run.
            models.Index(fields=["-finished_at"], name="syncrun_ok_idx", condition=Q(ok=True)),
            # The sync page's time windows and the failing runs since the last good one.
            models.Index(fields=["-started_at"], name="syncrun_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.region} {self.started_at:%Y-%m-%d %H:%M:%S}"


class ApiBucket(models.Model):
    """A token bucket of the API budget, for when there is no Redis (see budget.py)."""

    key = models.CharField(max_length=200, unique=True)
    tokens = models.FloatField()
    stamp = models.FloatField()  # time.time() of the last refill

    def __str__(self) -> str:
        return self.key


class BulkStop(models.Model):
    """A guarded bulk stop: who stopped which executions together, and why.

    Its id is the batch id of every StopRequest it makes (the audit's batch
    filter), and the token of the confirmation form: a second POST of the same
    form finds the batch and starts nothing again.
    """

    id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    error = models.CharField(max_length=256, blank=True)
    cause = models.TextField(blank=True)
    # What was selected, as the person saw it on the dry run: the list's
    # filters (and the current state, from the runaway finder), or picked ids.
    selection = models.JSONField(default=dict)
    description = models.CharField(max_length=1000)
    count = models.IntegerField()
    # Every item has an outcome (or a note saying why nothing was sent).
    finished_at = models.DateTimeField(null=True, blank=True)
    # The tasks could not be handed to a worker (the broker was down).
    enqueue_error = models.TextField(blank=True)
    # What the batch does to each execution: "stop" or "redrive".
    action = models.CharField(max_length=16, default="stop")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"bulk stop {self.pk} of {self.count} by {self.username}"


class BulkStopItem(models.Model):
    """One execution of a bulk stop, and the StopRequest its stop made."""

    batch = models.ForeignKey(BulkStop, on_delete=models.CASCADE, related_name="items")
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="+")
    position = models.IntegerField()
    stop_request = models.OneToOneField(
        StopRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A bulk redrive's item: the ActionRequest its redrive made.
    action_request = models.OneToOneField(
        "ActionRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Why nothing was sent for this one, when nothing could be (say, the
    # person lost the stop permission before the worker got to it).
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            # The progress page's ordered scan of a batch, and the tasks' chunks.
            models.UniqueConstraint(fields=["batch", "position"], name="bulkitem_position_uniq"),
            # An execution is stopped once per batch.
            models.UniqueConstraint(fields=["batch", "execution"], name="bulkitem_execution_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} #{self.position}"


class WatchNotification(models.Model):
    """One post to the watch webhook: an execution finished, and the watches
    it answers were claimed for it (each watch is in at most one)."""

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="watch_notifications"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # What is posted, fixed when the finish was claimed: every retry posts the same.
    text = models.TextField()
    attempts = models.IntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set when the retries ran out, or the webhook refused for good.
    gave_up_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"notification {self.pk} for {self.execution_id}"


class Watch(models.Model):
    """Someone asked to hear (on the webhook) when a running execution finishes."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="watches")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    # The dashboard's address as the watcher used it, for the links in the
    # post when SFNUI_BASE_URL is not set (a worker has no request to ask).
    base_url = models.CharField(max_length=2048, blank=True)
    # Claimed, by compare-and-set, for the one post that tells of the finish.
    notification = models.ForeignKey(
        WatchNotification, null=True, blank=True, on_delete=models.SET_NULL, related_name="watches"
    )

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # One open watch per person and execution; also serves the sync's
            # "is anyone waiting for this one?" when an execution closes.
            models.UniqueConstraint(
                fields=["execution", "user"],
                condition=Q(notification__isnull=True),
                name="watch_pending_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.username} watches {self.execution_id}"


class EventQueue(models.Model):
    """An SQS queue the events consumer reads, and what it last saw there."""

    url = models.CharField(max_length=2048, unique=True)
    # The consumer's last sign of life (each receive, empty or not).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    consumer = models.CharField(max_length=200, blank=True)  # host:pid
    # SQS's ApproximateNumberOfMessages / ...NotVisible, read every few seconds.
    depth = models.IntegerField(null=True, blank=True)
    in_flight = models.IntegerField(null=True, blank=True)
    depth_at = models.DateTimeField(null=True, blank=True)
    # The oldest message in the last batch received: now - its SentTimestamp.
    oldest_age = models.FloatField(null=True, blank=True)
    last_applied_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url


class EventCount(models.Model):
    """What the consumer did with the events of one queue in one minute."""

    queue = models.ForeignKey(EventQueue, on_delete=models.CASCADE, related_name="counts")
    minute = models.DateTimeField()
    # Changed the cache.
    applied = models.IntegerField(default=0)
    # Already known (a duplicate delivery, or polling got there first).
    duplicate = models.IntegerField(default=0)
    # Older than what the cache holds (out of order): changed nothing.
    stale = models.IntegerField(default=0)
    # For an account or region this dashboard does not read.
    ignored = models.IntegerField(default=0)
    unreadable = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # One row per queue and minute, bumped with F() by every batch; also
            # serves "the last 5 minutes" on /sync/.
            models.UniqueConstraint(fields=["queue", "minute"], name="eventcount_minute_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id} {self.minute:%H:%M}"


class UnreadableEvent(models.Model):
    """A message the consumer could not apply, kept aside (and shown on /sync/)
    rather than lost or retried forever."""

    queue = models.ForeignKey(
        EventQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="unreadable"
    )
    # SQS's message id: the same message kept aside twice is one row.
    message_id = models.CharField(max_length=128, unique=True)
    received_at = models.DateTimeField()
    receive_count = models.IntegerField(default=1)
    body = models.TextField()
    error = models.TextField()

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # /sync/: the newest ones.
            models.Index(fields=["-received_at"], name="unreadable_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id}: {self.error[:60]}"


class Definition(models.Model):
    """A state machine definition's text, once per distinct text (keyed by its
    SHA-256): what an execution ran, or a version was published with."""

    sha256 = models.CharField(max_length=64, unique=True)
    text = models.TextField()
    # The state machine's revision id when AWS gave one.
    revision_id = models.CharField(max_length=128, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256[:12]


class StateMachineVersion(models.Model):
    """A published version of a state machine (ListStateMachineVersions,
    DescribeStateMachine on the version ARN)."""

    arn = models.CharField(max_length=2048, unique=True)
    state_machine = models.ForeignKey(
        StateMachine, on_delete=models.CASCADE, related_name="versions"
    )
    version = models.IntegerField()
    description = models.TextField(blank=True)
    creation_date = models.DateTimeField(null=True, blank=True)
    definition = models.ForeignKey(
        Definition, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    described_at = models.DateTimeField(null=True, blank=True)
    # DELETED when ListStateMachineVersions stopped returning it.
    status = models.CharField(max_length=16, default="ACTIVE")

    class Meta:
        ordering = ["state_machine", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["state_machine", "version"], name="smversion_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.state_machine_id}:{self.version}"


class StateMachineAlias(models.Model):
    """An alias of a state machine and how it routes starts between versions
    (DescribeStateMachineAlias: routingConfiguration)."""

    arn = models.CharField(max_length=2048, unique=True)
    state_machine = models.ForeignKey(
        StateMachine, on_delete=models.CASCADE, related_name="aliases"
    )
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True)
    # [{"stateMachineVersionArn": ..., "weight": 0-100}, ...] as AWS gives it.
    routing = models.JSONField(default=list)
    creation_date = models.DateTimeField(null=True, blank=True)
    update_date = models.DateTimeField(null=True, blank=True)
    described_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, default="ACTIVE")

    class Meta:
        ordering = ["state_machine", "name"]

    def __str__(self) -> str:
        return f"{self.state_machine_id}:{self.name}"


class MapRun(models.Model):
    """A Distributed Map's run inside an execution (ListMapRuns, DescribeMapRun).
    Its child executions are Execution rows whose map_run_arn is this arn."""

    arn = models.CharField(max_length=2048, unique=True)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="map_runs")
    status = models.CharField(max_length=16)  # RUNNING | SUCCEEDED | FAILED | ABORTED
    start_date = models.DateTimeField()
    stop_date = models.DateTimeField(null=True, blank=True)
    max_concurrency = models.IntegerField(default=0)
    tolerated_failure_percentage = models.FloatField(default=0)
    tolerated_failure_count = models.BigIntegerField(default=0)
    # DescribeMapRun's itemCounts and executionCounts as AWS gives them
    # (pending, running, succeeded, failed, timedOut, aborted, total,
    # resultsWritten, failuresNotRedrivable, pendingRedrive).
    item_counts = models.JSONField(default=dict)
    execution_counts = models.JSONField(default=dict)
    redrive_count = models.IntegerField(default=0)
    redrive_date = models.DateTimeField(null=True, blank=True)
    described_at = models.DateTimeField(null=True, blank=True)
    # Children: every child that started at or before this is in the cache.
    children_watermark = models.DateTimeField(null=True, blank=True)
    children_listed_at = models.DateTimeField(null=True, blank=True)
    # The scheduler's queue: null when settled (closed, described, children listed).
    sync_due_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.TextField(blank=True)
    sync_failures = models.IntegerField(default=0)

    class Meta:
        ordering = ["-start_date"]
        indexes = [
            models.Index(
                fields=["sync_due_at"],
                name="maprun_sync_due_idx",
                condition=Q(sync_due_at__isnull=False),
            ),
        ]
        permissions = [
            (
                "update_map_run",
                "Can change a running Map Run's concurrency and failure tolerance",
            )
        ]

    def __str__(self) -> str:
        return self.arn.rsplit(":", 1)[-1]

    @property
    def is_open(self) -> bool:
        return self.status == "RUNNING"


class ActionRequest(models.Model):
    """One redrive, start or Map Run update asked for from this dashboard: the
    audit's rows beside StopRequest. Sent, refused or failed, like a stop."""

    class Kind(models.TextChoices):
        REDRIVE = "REDRIVE"
        START = "START"
        UPDATE_MAP_RUN = "UPDATE_MAP_RUN"

    class Outcome(models.TextChoices):
        DONE = "DONE"
        REFUSED = "REFUSED"  # AWS (or the live re-check) said it cannot be done: nothing changed
        FAILED = "FAILED"  # AWS answered with an error or could not be reached
        UNKNOWN = "UNKNOWN"  # sent, and no answer came

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # What it acted on: an execution (redrive, re-run's source), a state
    # machine, version or alias (start), or a Map Run.
    target_arn = models.CharField(max_length=2048)
    # The execution it concerns in the cache, when there is one: the redriven
    # one, or the one a start made.
    execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    # A start's new execution ARN (also a re-run's).
    result_arn = models.CharField(max_length=2048, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    username = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    # What was asked (a start's name and input size, a Map Run's new limits
    # and the old ones).
    parameters = models.JSONField(default=dict)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    aws_response = models.TextField(blank=True)
    # One per rendered confirmation form: a replayed or double-clicked POST
    # finds its request already recorded and sends nothing again.
    request_token = models.UUIDField(null=True, blank=True, unique=True)
    batch_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            models.Index(fields=["-requested_at"], name="action_requested_idx"),
            models.Index(
                fields=["batch_id", "-requested_at"],
                name="action_batch_idx",
                condition=Q(batch_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome} {self.target_arn} by {self.username}"


class ExecutionCount(models.Model):
    """Executions per state machine and status, kept by database triggers
    (executions/database/counts.py) so that the state machine pages read a
    few hundred rows however many executions the cache holds.

    Three kinds: "total" (every execution; `hour` is COUNT_TOTAL_HOUR),
    "started" (by the hour it started) and "closed" (ended executions by the
    hour they ended). Hourly rows older than COUNT_HOURS_KEPT are dropped.
    The triggers append changes to ExecutionCountDelta; `counts.compact()`
    (every minute, from beat) folds them in here. A reader adds both."""

    state_machine_id = models.BigIntegerField()
    kind = models.CharField(max_length=8)
    status = models.CharField(max_length=16)
    hour = models.DateTimeField()
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The compaction's upsert key; also serves the pages' reads (the
            # totals, and the last day's hours of one or all state machines).
            models.UniqueConstraint(
                fields=["kind", "state_machine_id", "hour", "status"], name="execcount_key_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.state_machine_id} {self.status} {self.hour}: {self.n}"


class ExecutionCountDelta(models.Model):
    """A change to ExecutionCount not yet folded in: appended by the triggers
    in the transaction that inserts, updates or deletes executions (append
    only, so that concurrent syncs never wait on the same counter row)."""

    state_machine_id = models.BigIntegerField()
    kind = models.CharField(max_length=8)
    status = models.CharField(max_length=16)
    hour = models.DateTimeField()
    n = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.kind} {self.state_machine_id} {self.status} {self.hour}: {self.n:+d}"
