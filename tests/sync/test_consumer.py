"""executions/sync/consumer.py and `manage.py setup_events` / `consume_events`: events
from SQS applied once each, deleted only after their change is committed, the
unreadable kept aside, nothing lost when the consumer is killed."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.db import OperationalError

from executions import aws
from executions.models import EventCount, EventQueue, Execution, UnreadableEvent
from executions.sync import consumer, status_changes
from tests.support.helpers import wait_for
from tests.support.workers import Processes
from tests.sync.test_status_changes import ARN, event

pytestmark = pytest.mark.django_db


@pytest.fixture
def sqs(fake_aws: Any) -> Any:
    return boto3.client("sqs", region_name="us-east-1", endpoint_url=fake_aws.url)


@pytest.fixture
def queue_url(fake_aws: Any, settings: Any) -> str:
    out = io.StringIO()
    call_command("setup_events", stdout=out)
    line = [x for x in out.getvalue().splitlines() if x.startswith("SFNUI_EVENTS_QUEUE_URL=")]
    url = line[0].split("=", 1)[1]
    settings.SFNUI_EVENTS_QUEUE_URL = [url]
    return url


def send(sqs: Any, url: str, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def drain(c: consumer.Consumer, rounds: int = 20) -> consumer.Batch:
    """Receive until a receive comes back empty; the outcomes of all of them."""
    total = consumer.Batch()
    for _ in range(rounds):
        batch = c.consume_once(wait=1)
        if not batch.received:
            return total
        total.received += batch.received
        total.outcomes.update(batch.outcomes)
        total.failed += batch.failed
        total.errors.extend(batch.errors)
    raise AssertionError("the queue did not empty")


def depth(sqs: Any, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def test_setup_events_creates_the_queue_and_the_rule_and_can_run_again(
    fake_aws: Any, sqs: Any, queue_url: str
) -> None:
    again = io.StringIO()
    call_command("setup_events", stdout=again)
    assert f"SFNUI_EVENTS_QUEUE_URL={queue_url}" in again.getvalue()
    eb = boto3.client("events", region_name="us-east-1", endpoint_url=fake_aws.url)
    rule = eb.describe_rule(Name="sfnui-execution-status-change")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
    }
    targets = eb.list_targets_by_rule(Rule="sfnui-execution-status-change")["Targets"]
    assert [t["Arn"] for t in targets] == ["arn:aws:sqs:us-east-1:123456789012:sfnui-events"]
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])["Attributes"][
            "Policy"
        ]
    )
    statement = policy["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == rule["Arn"]


def test_each_message_is_applied_once_then_deleted_and_counted(sqs: Any, queue_url: str) -> None:
    send(sqs, queue_url, event("RUNNING"), event("SUCCEEDED"), event("SUCCEEDED"))
    c = consumer.Consumer(queue_url)
    total = drain(c)
    assert total.received == 3
    assert total.outcomes["applied"] + total.outcomes["stale"] + total.outcomes["duplicate"] == 3
    assert total.outcomes["duplicate"] >= 1
    assert Execution.objects.get(arn=ARN).status == "SUCCEEDED"
    assert depth(sqs, queue_url) == (0, 0)
    row = EventQueue.objects.get(url=queue_url)
    assert row.heartbeat_at is not None
    assert row.last_applied_at is not None
    counted = EventCount.objects.filter(queue=row)
    assert sum(c.applied + c.duplicate + c.stale for c in counted) == 3
    assert consumer.applied_recently()[row.pk]["applied"] == total.outcomes["applied"]


def test_a_consumer_killed_after_the_delete_has_counted_what_it_deleted(
    sqs: Any, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(sqs, queue_url, event("RUNNING"), event("SUCCEEDED"), "not an event")

    class Killed(BaseException):
        pass

    def killed(self: Any, batch: Any) -> None:
        raise Killed  # SIGKILL between the delete and the heartbeat

    monkeypatch.setattr(consumer.Consumer, "_record", killed)
    c = consumer.Consumer(queue_url)
    for _ in range(10):
        with pytest.raises(Killed):
            c.consume_once(wait=1)
        if depth(sqs, queue_url) == (0, 0):
            break
    # Deleted, and every one of them counted in the transaction that applied it.
    assert depth(sqs, queue_url) == (0, 0)
    counted = EventCount.objects.all()
    assert sum(r.applied + r.duplicate + r.stale + r.unreadable for r in counted) == 3


def test_an_unreadable_message_is_kept_aside_and_not_retried(sqs: Any, queue_url: str) -> None:
    send(sqs, queue_url, "<html>not an event</html>", event(status="EXPLODED"))
    total = drain(consumer.Consumer(queue_url))
    assert total.outcomes["unreadable"] == 2
    kept = {k.body: k.error for k in UnreadableEvent.objects.all()}
    assert "not JSON" in kept["<html>not an event</html>"]
    assert "unknown status" in kept[event(status="EXPLODED")]
    assert depth(sqs, queue_url) == (0, 0)


def test_a_message_whose_change_cannot_be_stored_comes_back_then_is_kept_aside(
    sqs: Any, queue_url: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_EVENTS_MAX_RECEIVES = 3
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})

    def broken(change: Any, now: Any = None) -> Any:
        raise OperationalError("database is locked")

    monkeypatch.setattr(status_changes, "apply", broken)
    send(sqs, queue_url, event("RUNNING"))
    c = consumer.Consumer(queue_url)
    outcomes: list[consumer.Batch] = []

    def kept_aside() -> bool:
        outcomes.append(c.consume_once(wait=1))
        return UnreadableEvent.objects.exists()

    wait_for(kept_aside, timeout=30)
    # Retried by SQS until the third receive, then kept with the reason.
    assert sum(b.failed for b in outcomes) == 2
    kept = UnreadableEvent.objects.get()
    assert kept.receive_count == 3
    assert "failed 3 times" in kept.error
    assert "database is locked" in kept.error
    assert "database is locked" in EventQueue.objects.get(url=queue_url).last_error
    assert depth(sqs, queue_url) == (0, 0)


def test_a_delete_that_fails_leaves_a_duplicate_never_a_loss(
    sqs: Any, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    real_delete = aws.delete_messages

    def unreachable(q: Any, receipts: Any) -> Any:
        raise aws.Unavailable("AWS is unreachable: connect timeout", "ConnectTimeoutError")

    monkeypatch.setattr(aws, "delete_messages", unreachable)
    send(sqs, queue_url, event("SUCCEEDED"))
    c = consumer.Consumer(queue_url)
    first = c.consume_once(wait=1)
    assert first.outcomes["applied"] == 1
    assert "could not delete" in first.errors[0]
    monkeypatch.setattr(aws, "delete_messages", real_delete)
    again = wait_for(lambda: c.consume_once(wait=1).outcomes or None, timeout=15)
    assert again["duplicate"] == 1
    assert Execution.objects.get(arn=ARN).status == "SUCCEEDED"
    assert depth(sqs, queue_url) == (0, 0)


@pytest.mark.django_db(transaction=True)  # the consumer's thread has a connection of its own
def test_a_queue_that_cannot_be_read_is_reported_and_retried(
    fake_aws: Any, queue_url: str, settings: Any
) -> None:
    consumer.Consumer(queue_url)  # the queue's row, as a running consumer made it
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # AWS went away
    settings.SFNUI_AWS_MAX_ATTEMPTS = 1
    stop = threading.Event()
    thread = threading.Thread(target=consumer._loop, args=(queue_url, stop), daemon=True)
    thread.start()
    try:
        row = wait_for(
            lambda: EventQueue.objects.filter(url=queue_url).exclude(last_error="").first()
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert "cannot read" in row.last_error
    assert "unreachable" in row.last_error
    # Not heard from: events that cannot be read are not flowing (the sync polls).
    assert row.heartbeat_at is None


def test_the_command_without_a_queue_says_events_are_off(settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = []
    out = io.StringIO()
    call_command("consume_events", stdout=out)
    assert "Events are off" in out.getvalue()


def test_the_command_refuses_what_is_not_a_queue_url() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not an SQS queue URL"):
        call_command("consume_events", "--queue", "https://example.com/nope")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_consumer_killed_again_and_again_loses_nothing_and_applies_nothing_twice(
    fake_aws: Any, sqs: Any, queue_url: str, tmp_path: Path
) -> None:
    """40 executions' lives (some failing and redriven), every event delivered
    twice in a shuffled order, while a real consumer process is SIGKILLed at
    random points and started again: the cache ends at each one's last status."""
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "2"})
    rng = random.Random(40)
    bodies: list[str] = []
    final: dict[str, tuple[str, int]] = {}
    for i in range(40):
        arn = ARN.replace("ord-1", f"ord-{i}")
        life = [event("RUNNING", arn=arn)]
        if i % 4 == 0:
            redrive = {"redriveCount": 1, "redriveDate": 1_796_000_000_000}
            life += [
                event("FAILED", arn=arn),
                event("RUNNING", arn=arn, **redrive),
                event("SUCCEEDED", arn=arn, **redrive),
            ]
            final[arn] = ("SUCCEEDED", 1)
        else:
            status = rng.choice(["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"])
            life.append(event(status, arn=arn))
            final[arn] = (status, 0)
        bodies += life * 2
    rng.shuffle(bodies)
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )
    with Processes(tmp_path, endpoint=fake_aws.url) as p:
        for _ in range(6):
            proc = p.consumer(queue_url)
            time.sleep(rng.uniform(0.3, 1.5))
            p.kill(proc)
        proc = p.consumer(queue_url)

        def settled() -> bool:
            cached = dict(
                (arn, (status, redrives))
                for arn, status, redrives in Execution.objects.values_list(
                    "arn", "status", "redrive_count"
                )
            )
            return cached == final and depth(sqs, queue_url) == (0, 0)

        wait_for(settled, timeout=120, interval=0.5)
        # Settled: a kill changes nothing now, where a stop would wait out its
        # long poll (10 s). Stopping on a signal has a test of its own below.
        p.kill(proc)
    assert Execution.objects.count() == 40
    assert not UnreadableEvent.objects.exists()
    counts = EventCount.objects.all()
    handled = sum(c.applied + c.duplicate + c.stale for c in counts)
    # Every message was handled at least once (redeliveries after a kill
    # count again); and no more changes were applied than the lives hold.
    assert handled >= len(bodies)
    assert sum(c.applied for c in counts) <= len(bodies) // 2


# --- With the endpoint's own events --------------------------------------------------------


def consume_until(c: consumer.Consumer, done: Any, timeout: float = 30) -> None:
    """Consume until `done()`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the events did not bring the cache there"
        c.consume_once(wait=1)


def test_aws_events_alone_bring_starts_ends_and_stops_to_the_cache(
    fake_aws: Any, queue_url: str, make_state_machine: Any, start: Any, sfn: Any
) -> None:
    from tests.support.helpers import FAIL, LONG_WAIT, PASS

    done = start(make_state_machine("hello", PASS), "hello-1")
    failed = start(make_state_machine("fails", FAIL), "fails-1")
    running = start(make_state_machine("nightly", LONG_WAIT), "nightly-1")
    c = consumer.Consumer(queue_url)

    def final() -> bool:
        statuses = dict(Execution.objects.values_list("arn", "status"))
        return statuses == {done: "SUCCEEDED", failed: "FAILED", running: "RUNNING"}

    consume_until(c, final)
    sfn.stop_execution(executionArn=running, error="Oncall.Stop", cause="runaway at 3 a.m.")
    consume_until(c, lambda: Execution.objects.get(arn=running).status == "ABORTED")

    # What DescribeExecution says, without one call to it or to ListExecutions.
    calls = fake_aws.post("/fakeaws/calls", {})["calls"]
    assert "ListExecutions" not in calls
    assert "DescribeExecution" not in calls
    for arn in (done, failed, running):
        aws_side = sfn.describe_execution(executionArn=arn)
        ex = Execution.objects.get(arn=arn)
        assert ex.status == aws_side["status"]
        assert ex.input == aws_side["input"]
        assert ex.output == aws_side.get("output")
        assert (ex.error, ex.cause) == (aws_side.get("error"), aws_side.get("cause"))
        assert ex.stop_date is not None
        # Only the history is left to fetch, at the budget's pace.
        assert not ex.needs_describe
        assert ex.sync_due_at is not None
    assert (Execution.objects.get(arn=running).error, Execution.objects.get(arn=running).cause) == (
        "Oncall.Stop",
        "runaway at 3 a.m.",
    )


def test_duplicated_and_delayed_events_end_where_aws_ended(
    fake_aws: Any, queue_url: str, make_state_machine: Any, start: Any, sfn: Any
) -> None:
    from tests.support.helpers import PASS

    fake_aws.app.configure(events={"duplicate_fraction": 1.0, "delay_seconds": 1.0})
    sm = make_state_machine("hello", PASS)
    arns = [start(sm, f"hello-{i}") for i in range(6)]
    c = consumer.Consumer(queue_url)
    total = consumer.Batch()

    def all_succeeded_and_drained() -> bool:
        batch = c.consume_once(wait=1)
        total.outcomes.update(batch.outcomes)
        statuses = set(Execution.objects.filter(arn__in=arns).values_list("status", flat=True))
        # Every event twice: 6 x (RUNNING, SUCCEEDED) x 2.
        return statuses == {"SUCCEEDED"} and sum(total.outcomes.values()) >= 24

    deadline = time.monotonic() + 60
    while not all_succeeded_and_drained():
        assert time.monotonic() < deadline
    assert Execution.objects.filter(arn__in=arns).count() == 6
    assert total.outcomes["applied"] <= 12
    assert total.outcomes["duplicate"] + total.outcomes["stale"] >= 12


# A stop signal that lands on a queue's thread, not the main one (the kernel
# picks any thread of the process): the handler still runs and the consumer
# stops. With an untimed join in the main thread it never did.
SIGNAL_ON_A_QUEUE_THREAD = """
import os, signal, sys, threading, time
import django
django.setup()
from executions.sync import consumer

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

def queue_loop(url, stop):  # stands in for a queue's long poll
    while not stop.wait(0.2):
        pass

consumer._loop = queue_loop

def aim():
    # Once run() has started the queue's thread, however slow the machine.
    while not (queues := [t for t in threading.enumerate() if t.name.startswith("events-")]):
        time.sleep(0.05)
    (queue_thread,) = queues
    signal.pthread_kill(queue_thread.ident, signal.SIGTERM)

threading.Thread(target=aim, daemon=True).start()
consumer.run(["queue"], stop)
print("stopped", flush=True)
"""


def test_a_stop_signal_that_lands_on_a_queue_thread_stops_the_consumer(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sfnui.settings",
        "SFNUI_VAR_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_ON_A_QUEUE_THREAD],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "stopped"
