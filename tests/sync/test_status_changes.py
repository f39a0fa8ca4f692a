"""executions/sync/status_changes.py: a status-change event applied to the cache, idempotently,
never backwards, whatever order and however often it arrives."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from executions.models import Execution, StateMachine, Watch, WatchNotification
from executions.sync import status_changes
from tests.support import factories

pytestmark = pytest.mark.django_db

ACCOUNT = "123456789012"
SM = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:order-pipeline"
ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:order-pipeline:ord-1"
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def event(status: str = "RUNNING", arn: str = ARN, **detail: Any) -> str:
    """An event as EventBridge hands it to SQS (AWS's documented shape)."""
    closed = status not in ("RUNNING", "PENDING_REDRIVE")
    body: dict[str, Any] = {
        "executionArn": arn,
        "stateMachineArn": SM,
        "name": arn.rsplit(":", 1)[-1],
        "status": status,
        "startDate": ms(T0),
        "stopDate": ms(T0 + dt.timedelta(seconds=30)) if closed else None,
        "input": '{"order": "ord-1"}',
        "inputDetails": {"included": True},
        "output": '{"ok": true}' if status == "SUCCEEDED" else None,
        "outputDetails": {"included": True} if status == "SUCCEEDED" else None,
        "redriveCount": 0,
        "redriveDate": None,
        "redriveStatus": "REDRIVABLE" if closed and status != "SUCCEEDED" else "NOT_REDRIVABLE",
        "redriveStatusReason": None,
        "error": "Payment.Declined" if status == "FAILED" else None,
        "cause": "card expired" if status == "FAILED" else None,
    }
    body.update(detail)
    return json.dumps(
        {
            "version": "0",
            "id": "315c1398-40ff-a850-213b-158f73e60175",
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "time": "2026-12-01T12:00:30Z",
            "region": "us-east-1",
            "resources": [arn],
            "detail": body,
        }
    )


def apply(body: str) -> status_changes.Outcome:
    return status_changes.apply(status_changes.parse(body))


def row() -> Execution:
    return Execution.objects.get(arn=ARN)


# --- Reading ------------------------------------------------------------------------------


def test_it_reads_every_field_of_aws_documented_event() -> None:
    change = status_changes.parse(event("SUCCEEDED"))
    assert change.arn == ARN
    assert change.state_machine_arn == SM
    assert change.status == "SUCCEEDED"
    assert change.start_date == T0
    assert change.stop_date == T0 + dt.timedelta(seconds=30)
    assert (change.input, change.output) == ('{"order": "ord-1"}', '{"ok": true}')
    assert change.complete


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"source": "aws.ec2", "detail-type": "EC2 Instance State-change"}), "pattern"),
        (event(executionArn="arn:aws:states:us-east-1:1:execution:a:b"), "not a Step Functions"),
        (event(status="EXPLODED"), "unknown status"),
        (event(startDate="yesterday"), "startDate"),
        (event(startDate=10**20), "out of range"),
        (event(redriveCount=-1), "redriveCount"),
        (event(input=["not", "a", "string"]), "input"),
        (
            event(
                arn=f"arn:aws:states:us-east-1:{ACCOUNT}:express:order-pipeline:x:y",
                stateMachineArn=SM,
            ),
            "Express",
        ),
    ],
)
def test_what_is_not_a_status_change_says_why(body: str, says: str) -> None:
    with pytest.raises(status_changes.Unreadable, match=says):
        status_changes.parse(body)


def test_a_payload_left_out_for_size_is_not_taken_for_none() -> None:
    change = status_changes.parse(
        event("SUCCEEDED", input=None, inputDetails={"included": False}, output=None)
    )
    assert not change.input_included
    assert not change.complete


# --- Applying -----------------------------------------------------------------------------


def test_a_new_execution_is_cached_with_what_the_event_says_and_its_history_made_due() -> None:
    with time_machine.travel(T0 + dt.timedelta(seconds=1), tick=False):
        assert apply(event("RUNNING")) is status_changes.Outcome.APPLIED
    ex = row()
    assert (ex.status, ex.name, ex.start_date, ex.input) == (
        "RUNNING",
        "ord-1",
        T0,
        '{"order": "ord-1"}',
    )
    # Everything DescribeExecution would say is here: only the history is left.
    assert not ex.needs_describe
    assert ex.sync_due_at == T0 + dt.timedelta(seconds=1)
    # Its state machine is cached too (a stub until discovery fills it), and busy.
    sm = StateMachine.objects.get(arn=SM)
    assert sm.busy_until is not None
    assert sm.busy_until > T0


def test_an_end_is_applied_with_its_output_error_and_cause() -> None:
    apply(event("RUNNING"))
    assert apply(event("FAILED")) is status_changes.Outcome.APPLIED
    ex = row()
    assert (ex.status, ex.error, ex.cause, ex.output) == (
        "FAILED",
        "Payment.Declined",
        "card expired",
        None,
    )
    assert ex.stop_date == T0 + dt.timedelta(seconds=30)
    assert not ex.history_complete
    assert ex.sync_due_at is not None


def test_a_duplicate_changes_nothing() -> None:
    apply(event("SUCCEEDED"))
    before = Execution.objects.values().get(arn=ARN)
    assert apply(event("SUCCEEDED")) is status_changes.Outcome.DUPLICATE
    assert Execution.objects.values().get(arn=ARN) == before


def test_a_running_event_after_the_end_is_stale_and_changes_nothing() -> None:
    apply(event("SUCCEEDED"))
    assert apply(event("RUNNING")) is status_changes.Outcome.STALE
    assert row().status == "SUCCEEDED"
    assert row().output == '{"ok": true}'


def test_a_redrive_reopens_and_a_late_event_of_the_attempt_before_is_stale() -> None:
    apply(event("FAILED"))
    redriven = ms(T0 + dt.timedelta(minutes=5))
    assert (
        apply(event("RUNNING", redriveCount=1, redriveDate=redriven))
        is status_changes.Outcome.APPLIED
    )
    ex = row()
    assert (ex.status, ex.redrive_count, ex.stop_date) == ("RUNNING", 1, None)
    assert ex.redrive_date == T0 + dt.timedelta(minutes=5)
    # The first attempt's end, delivered again late: older than the redrive.
    assert apply(event("FAILED")) is status_changes.Outcome.STALE
    assert row().status == "RUNNING"
    assert (
        apply(event("SUCCEEDED", redriveCount=1, redriveDate=redriven))
        is status_changes.Outcome.APPLIED
    )
    assert (row().status, row().redrive_count, row().output) == ("SUCCEEDED", 1, '{"ok": true}')


@pytest.mark.parametrize("seed", range(12))
def test_any_order_and_any_repetition_ends_where_aws_ended(seed: int) -> None:
    """Duplicated and reordered deliveries of one execution's life (start, fail,
    redrive, succeed) always leave the cache at its last status."""
    redriven = ms(T0 + dt.timedelta(minutes=5))
    life = [
        event("RUNNING"),
        event("FAILED"),
        event("RUNNING", redriveCount=1, redriveDate=redriven),
        event("SUCCEEDED", redriveCount=1, redriveDate=redriven),
    ]
    rng = random.Random(seed)
    deliveries = life + [rng.choice(life) for _ in range(4)]
    rng.shuffle(deliveries)
    outcomes = [apply(body) for body in deliveries]
    assert (row().status, row().redrive_count) == ("SUCCEEDED", 1)
    assert Execution.objects.count() == 1
    # The final state was applied exactly once, whatever came around it.
    assert outcomes.count(status_changes.Outcome.APPLIED) <= len(life)


def test_an_event_fills_the_input_a_listing_did_not_have() -> None:
    sm = factories.state_machine_row()
    factories.execution_row(
        sm, name="ord-1", status="RUNNING", started=T0, input=None, needs_describe=True
    )
    assert apply(event("RUNNING")) is status_changes.Outcome.DUPLICATE
    assert row().input == '{"order": "ord-1"}'


def test_an_end_known_from_a_listing_keeps_its_describe_flag_until_the_event_says_more() -> None:
    sm = factories.state_machine_row()
    factories.execution_row(
        sm, name="ord-1", status="RUNNING", started=T0, output=None, history_complete=False
    )
    big = event("SUCCEEDED", output=None, outputDetails={"included": False})
    assert apply(big) is status_changes.Outcome.APPLIED
    ex = row()
    assert ex.status == "SUCCEEDED"
    # The output was too large for EventBridge: DescribeExecution will bring it.
    assert ex.needs_describe
    assert ex.output is None


def test_an_event_of_an_account_nobody_reads_is_ignored(settings: Any) -> None:
    settings.SFNUI_ACCOUNTS = [
        {
            "role_arn": "arn:aws:iam::210987654321:role/sfnui-reader",
            "external_id": "",
            "regions": ["us-east-1"],
            "name": "",
        }
    ]
    assert apply(event("RUNNING")) is status_changes.Outcome.IGNORED
    assert not Execution.objects.exists()
    assert not StateMachine.objects.exists()


def test_an_event_of_a_region_nobody_reads_is_ignored(settings: Any) -> None:
    settings.SFNUI_REGIONS = ["eu-west-1"]
    assert apply(event("RUNNING")) is status_changes.Outcome.IGNORED
    assert not Execution.objects.exists()


def test_an_end_tells_whoever_watches(
    django_capture_on_commit_callbacks: Any, settings: Any, user: Any, monkeypatch: Any
) -> None:
    settings.SFNUI_WATCH_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    apply(event("RUNNING"))
    Watch.objects.create(execution=row(), user=user, username=user.username)
    notified: list[int] = []
    from executions.actions import watch

    monkeypatch.setattr(watch, "_enqueue_notify", notified.append)
    with django_capture_on_commit_callbacks(execute=True):
        apply(event("SUCCEEDED"))
    assert notified == [row().pk]
    assert not WatchNotification.objects.exists()  # the task makes it, not the event


def test_a_change_made_meanwhile_by_the_sync_is_compared_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compare-and-set loses to a concurrent write (a listing stored the
    end first): the event is read again against it, and is a duplicate."""
    apply(event("RUNNING"))
    real_filter = Execution.objects.filter
    raced: list[Any] = []

    def racing_filter(*args: Any, **kwargs: Any) -> Any:
        if "redrive_count" in kwargs and not raced:
            raced.append(True)
            Execution.objects.filter(arn=ARN).update(
                status="SUCCEEDED", stop_date=timezone.now(), output='{"ok": true}'
            )
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(Execution.objects, "filter", racing_filter)
    assert apply(event("SUCCEEDED")) is status_changes.Outcome.DUPLICATE
    assert raced
