"""The events consumer: reads the SQS queue(s) of SFNUI_EVENTS_QUEUE_URL and
applies each Step Functions status change to the cache (status_changes.py).

Its own process (`python manage.py consume_events`), one thread per queue,
rather than Celery work: a long poll holds its request open for up to 20 s,
which would tie up a worker slot for good and put the freshest news behind
whatever the worker is busy with; a process of its own is one small loop
that `bin/run` and docker compose start next to the worker.

Nothing is lost and nothing is applied twice, whenever it is killed:

- a message is deleted only after its change is committed; killed before the
  delete, SQS hands it out again when its visibility timeout ends, and the
  second application is a no-op (status_changes.apply is idempotent);
- a message's outcome is counted (for /sync/) in the transaction that applies
  it: a message deleted from SQS has always been counted, once per delivery;
- a message that cannot be read is kept aside (UnreadableEvent, shown on
  /sync/) and then deleted: not lost, not retried forever; one whose
  application keeps failing (say, the database refuses it) is retried by SQS
  and kept aside after SFNUI_EVENTS_MAX_RECEIVES receives.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from executions import aws
from executions.models import EventCount, EventQueue, UnreadableEvent
from executions.sync import status_changes

log = logging.getLogger(__name__)

# Seconds a receive waits for a message (a long poll); shorter than SQS's 20 so
# that a stop signal is answered within this.
WAIT_SECONDS = 10
# The queue's depth is read this often.
DEPTH_EVERY = 10.0
# Waits after a failed receive: 1 s, 2 s, 4 s ... up to this.
MAX_BACKOFF = 30.0
# What is kept of an unreadable message's body.
BODY_LIMIT = 262_144


@dataclass
class Batch:
    """What one receive brought, and what became of it."""

    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Left in the queue (the application failed): SQS hands them out again.
    failed: int = 0
    # now - SentTimestamp of the oldest message received.
    oldest_age: float = 0.0
    errors: list[str] = field(default_factory=list)


class Consumer:
    """Reads one queue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue = aws.queue(url)
        self.row, _ = EventQueue.objects.get_or_create(url=url)
        self.depth_read = 0.0

    def consume_once(self, wait: int = WAIT_SECONDS) -> Batch:
        """One receive, applied and deleted. AwsError when SQS cannot be read."""
        messages = aws.receive_messages(self.queue, wait_seconds=wait)
        batch = Batch(received=len(messages))
        now_ms = time.time() * 1000
        done: dict[str, str] = {}
        for message in messages:
            attributes = message.get("Attributes") or {}
            sent = float(attributes.get("SentTimestamp") or now_ms)
            batch.oldest_age = max(batch.oldest_age, (now_ms - sent) / 1000)
            if self._handle(message, batch):
                done[message["MessageId"]] = message["ReceiptHandle"]
        if done:
            try:
                undeleted = aws.delete_messages(self.queue, done)
            except aws.AwsError as exc:
                # Applied and committed: SQS hands them out again, and the
                # second time they are duplicates.
                batch.errors.append(f"could not delete {len(done)} messages: {exc.message}")
            else:
                if undeleted:
                    batch.errors.append(f"SQS did not delete {len(undeleted)} messages")
        self._record(batch)
        return batch

    def _handle(self, message: dict[str, Any], batch: Batch) -> bool:
        """Apply one message; True when it may be deleted."""
        attributes = message.get("Attributes") or {}
        receives = int(attributes.get("ApproximateReceiveCount") or 1)
        body = str(message.get("Body") or "")
        try:
            change = status_changes.parse(body)
        except status_changes.Unreadable as exc:
            batch.outcomes["unreadable"] += 1
            return self._keep_aside(message, receives, f"unreadable: {exc}", batch)
        try:
            with transaction.atomic():
                outcome = status_changes.apply(change)
                self._count(outcome.value)
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
            log.warning("could not apply the event of %s: %s", change.arn, error)
            if receives >= settings.SFNUI_EVENTS_MAX_RECEIVES:
                batch.outcomes["unreadable"] += 1
                return self._keep_aside(
                    message, receives, f"failed {receives} times, last: {error}", batch
                )
            batch.failed += 1
            batch.errors.append(error)
            return False
        batch.outcomes[outcome.value] += 1
        return True

    def _keep_aside(self, message: dict[str, Any], receives: int, error: str, batch: Batch) -> bool:
        try:
            with transaction.atomic():
                UnreadableEvent.objects.update_or_create(
                    message_id=str(message["MessageId"])[:128],
                    defaults={
                        "queue": self.row,
                        "received_at": timezone.now(),
                        "receive_count": receives,
                        "body": str(message.get("Body") or "")[:BODY_LIMIT].replace(
                            "\x00", "\ufffd"
                        ),
                        "error": error[:4000],
                    },
                )
                self._count("unreadable")
        except Exception as exc:
            # Not kept: not deleted either. SQS hands it out again.
            batch.errors.append(f"could not keep a message aside: {type(exc).__name__}: {exc}")
            batch.failed += 1
            return False
        log.warning("kept a message aside: %s", error[:300])
        return True

    def _record(self, batch: Batch) -> None:
        """The heartbeat (the queue was read), the last error, and now and
        then the queue's depth."""
        now = timezone.now()
        fields: dict[str, Any] = {
            "heartbeat_at": now,
            "consumer": f"{socket.gethostname()}:{os.getpid()}"[:200],
            "oldest_age": batch.oldest_age,
        }
        applied = batch.outcomes.get("applied", 0)
        if applied:
            fields["last_applied_at"] = now
        if batch.errors:
            fields["last_error"] = batch.errors[-1][:4000]
            fields["last_error_at"] = now
        if time.monotonic() - self.depth_read > DEPTH_EVERY:
            self.depth_read = time.monotonic()
            try:
                fields["depth"], fields["in_flight"] = aws.queue_depth(self.queue)
                fields["depth_at"] = now
            except aws.AwsError as exc:
                fields["last_error"] = f"could not read the queue's depth: {exc.message}"
                fields["last_error_at"] = now
        EventQueue.objects.filter(pk=self.row.pk).update(**fields)

    def _count(self, outcome: str) -> None:
        """One message's outcome in this minute's counts; inside the
        transaction that applied it (see the module's docstring)."""
        minute = timezone.now().replace(second=0, microsecond=0)
        mine = EventCount.objects.filter(queue=self.row, minute=minute)
        if mine.update(**{outcome: F(outcome) + 1}):
            return
        try:
            with transaction.atomic():
                EventCount.objects.create(queue=self.row, minute=minute, **{outcome: 1})
        except IntegrityError:
            # Another consumer of the queue made the minute's row first.
            mine.update(**{outcome: F(outcome) + 1})

    def failed(self, error: str) -> None:
        """A receive failed: say so on /sync/. No heartbeat: events that cannot
        be read are not flowing, and after SFNUI_EVENTS_HEARTBEAT the sync
        polls as if they were off."""
        now = timezone.now()
        EventQueue.objects.filter(pk=self.row.pk).update(last_error=error[:4000], last_error_at=now)


def run(urls: list[str], stop: threading.Event) -> None:
    """Consume every queue (a thread each) until `stop` is set."""
    threads = [
        threading.Thread(target=_loop, args=(url, stop), name=f"events-{i}", daemon=True)
        for i, url in enumerate(urls)
    ]
    for thread in threads:
        thread.start()
    # Joined with a timeout, again and again: a signal that lands on one of
    # the consumer threads only runs its Python handler (which sets `stop`)
    # when the main thread wakes up, and an untimed join never does.
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.5)


def _loop(url: str, stop: threading.Event) -> None:
    backoff = 1.0
    consumer: Consumer | None = None
    while not stop.is_set():
        close_old_connections()
        try:
            if consumer is None:
                consumer = Consumer(url)
                log.info("consuming events from %s", url)
            batch = consumer.consume_once()
        except aws.AwsError as exc:
            error = f"cannot read {url}: {exc.message}"
        except Exception as exc:
            # The database, most likely: wait and go on (the messages wait in SQS).
            log.exception("the events consumer failed")
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
        else:
            backoff = 1.0
            if batch.received:
                log.debug("%s: %s", url, dict(batch.outcomes))
            continue
        log.warning("%s; trying again in %.0f s", error, backoff)
        try:
            if consumer is not None:
                consumer.failed(error)
        except Exception:
            log.debug("could not record the failure", exc_info=True)
        stop.wait(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


def applied_recently(minutes: int = 5) -> dict[int, dict[str, int]]:
    """Per queue pk: the events of the last `minutes` minutes, by outcome."""
    since = timezone.now() - dt.timedelta(minutes=minutes)
    out: dict[int, dict[str, int]] = {}
    for row in EventCount.objects.filter(minute__gte=since).values(
        "queue_id", "applied", "duplicate", "stale", "ignored", "unreadable"
    ):
        totals = out.setdefault(row["queue_id"], Counter())
        for key in ("applied", "duplicate", "stale", "ignored", "unreadable"):
            totals[key] += row[key]
    return {k: dict(v) for k, v in out.items()}
