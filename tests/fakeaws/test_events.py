"""fakeaws: Step Functions' own EventBridge events, quotas per account, several accounts.

Each test routes the `aws.states` events of the default bus to an SQS queue
(as a consumer of those events would) and reads what arrives.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fakeaws import FaithfulStepFunctions
from fakeaws.events import StatusEvents
from tests.support.helpers import FAIL, LONG_WAIT, PASS, wait_for

REGION = "us-east-1"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
PATTERN = {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}
DETAIL_KEYS = {
    "executionArn",
    "stateMachineArn",
    "name",
    "status",
    "startDate",
    "stopDate",
    "input",
    "inputDetails",
    "output",
    "outputDetails",
    "redriveCount",
    "redriveDate",
    "redriveStatus",
    "redriveStatusReason",
    "error",
    "cause",
}
TIMES_OUT = {
    "StartAt": "Sleep",
    "TimeoutSeconds": 1,
    "States": {"Sleep": {"Type": "Wait", "Seconds": 5, "End": True}},
}
# Keeps part of its input: an output of the size of `b`.
KEEPS_B = {
    "StartAt": "Keep",
    "States": {"Keep": {"Type": "Pass", "Parameters": {"kept.$": "$.b"}, "End": True}},
}


class Account:
    """boto3 clients on the fake endpoint, in one account."""

    def __init__(self, url: str, number: str, **credentials: str) -> None:
        self.url = url
        self.number = number
        self.credentials = credentials
        self.sfn = self.client("stepfunctions")
        self.events = self.client("events")
        self.sqs = self.client("sqs")

    def client(self, service: str, **kwargs: Any) -> Any:
        make: Any = boto3.client  # its stubs know literal service names only
        return make(
            service, region_name=REGION, endpoint_url=self.url, **self.credentials, **kwargs
        )

    def machine(self, name: str, definition: dict[str, Any], **kwargs: Any) -> str:
        arn: str = self.sfn.create_state_machine(
            name=name,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{self.number}:role/sfn",
            **kwargs,
        )["stateMachineArn"]
        return arn

    def start(self, machine: str, name: str, payload: Any = None) -> str:
        arn: str = self.sfn.start_execution(
            stateMachineArn=machine, name=name, input=json.dumps(payload or {})
        )["executionArn"]
        return arn

    def finished(self, arn: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            return described if described["status"] != "RUNNING" else None

        result: dict[str, Any] = wait_for(done, timeout=30, interval=0.1)
        return result


class Queue:
    """An SQS queue that the `aws.states` events of the default bus go to."""

    def __init__(self, account: Account) -> None:
        self.sqs = account.sqs
        self.url = self.sqs.create_queue(QueueName="sfn-events")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        account.events.put_rule(Name="sfn-status", EventPattern=json.dumps(PATTERN))
        # The whole event, as AWS sends it by default: moto's default leaves
        # out the envelope's "account".
        whole = {"InputTemplate": "<aws.events.event.json>"}
        account.events.put_targets(
            Rule="sfn-status", Targets=[{"Id": "queue", "Arn": arn, "InputTransformer": whole}]
        )

    def receive(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """At least `count` messages (all that came), or fail after `timeout`."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(messages)} of {count} events after {timeout} s")
            messages.extend(self._poll(wait=1))
        return messages

    def quiet(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        """What else comes within `seconds` (long polling, no sleep)."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            messages.extend(self._poll(wait=1))
        return messages

    def _poll(self, wait: int) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        ).get("Messages", [])
        for message in got:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in got]


@pytest.fixture
def main(fake_aws: Any) -> Account:
    return Account(fake_aws.url, ACCOUNT)


@pytest.fixture
def other(fake_aws: Any) -> Account:
    """The same endpoint, as a role assumed into another account."""
    sts = boto3.client("sts", region_name=REGION, endpoint_url=fake_aws.url)
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/x", RoleSessionName="tests"
    )["Credentials"]
    return Account(
        fake_aws.url,
        OTHER_ACCOUNT,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


@pytest.fixture
def queue(main: Account) -> Queue:
    return Queue(main)


def ms(value: dt.datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


def statuses(messages: list[dict[str, Any]], arn: str) -> list[str]:
    return [m["detail"]["status"] for m in messages if m["detail"]["executionArn"] == arn]


def of(messages: list[dict[str, Any]], arn: str, status: str) -> dict[str, Any]:
    """The detail of the one event of `arn` with `status`."""
    found = [
        m["detail"]
        for m in messages
        if m["detail"]["executionArn"] == arn and m["detail"]["status"] == status
    ]
    assert len(found) == 1, f"{len(found)} {status} events of {arn}"
    return found[0]


def assert_describes(detail: dict[str, Any], described: dict[str, Any]) -> None:
    """The detail says what DescribeExecution says (at the same status)."""
    assert set(detail) == DETAIL_KEYS
    assert detail["executionArn"] == described["executionArn"]
    assert detail["stateMachineArn"] == described["stateMachineArn"]
    assert detail["name"] == described["name"]
    assert detail["status"] == described["status"]
    assert detail["startDate"] == ms(described["startDate"])
    assert detail["stopDate"] == ms(described.get("stopDate"))
    assert detail["redriveCount"] == described.get("redriveCount", 0)
    assert detail["redriveDate"] == ms(described.get("redriveDate"))
    assert detail["error"] == described.get("error")
    assert detail["cause"] == described.get("cause")
    if detail["inputDetails"] == {"included": True}:
        assert detail["input"] == described["input"]
    if detail["outputDetails"] == {"included": True}:
        assert detail["output"] == described["output"]
    if described["status"] == "SUCCEEDED":
        assert detail["redriveStatus"] == "NOT_REDRIVABLE"
        assert detail["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven"
    elif described["status"] in ("FAILED", "TIMED_OUT", "ABORTED"):
        assert detail["output"] is None
        assert detail["outputDetails"] is None
        assert (detail["redriveStatus"], detail["redriveStatusReason"]) == ("REDRIVABLE", None)


def assert_running(detail: dict[str, Any], described: dict[str, Any]) -> None:
    assert set(detail) == DETAIL_KEYS
    assert detail["status"] == "RUNNING"
    assert detail["executionArn"] == described["executionArn"]
    assert detail["stateMachineArn"] == described["stateMachineArn"]
    assert detail["name"] == described["name"]
    assert detail["startDate"] == ms(described["startDate"])
    assert (detail["input"], detail["inputDetails"]) == (described["input"], {"included": True})
    assert detail["redriveCount"] == described.get("redriveCount", 0)
    assert detail["redriveDate"] == ms(described.get("redriveDate"))
    for key in ("stopDate", "output", "outputDetails", "error", "cause"):
        assert detail[key] is None, key
    assert detail["redriveStatus"] == "NOT_REDRIVABLE"
    assert detail["redriveStatusReason"] == "Execution is RUNNING and cannot be redriven"


def event_counts(fake_aws: Any) -> dict[str, int]:
    counts: dict[str, int] = fake_aws.post("/fakeaws/events", {})["counts"]
    return counts


def wait_for_counts(fake_aws: Any, **expected: int) -> dict[str, int]:
    def reached() -> dict[str, int] | None:
        counts = event_counts(fake_aws)
        return counts if all(counts[k] == v for k, v in expected.items()) else None

    result: dict[str, int] = wait_for(reached, timeout=30, interval=0.1)
    return result


# --- What the events say --------------------------------------------------------------


def test_a_succeeded_execution_emits_running_then_succeeded_like_aws(
    main: Account, queue: Queue
) -> None:
    arn = main.start(main.machine("hello", PASS), "h-1", {"order": 7})
    described = main.finished(arn)
    messages = queue.receive(2)
    assert statuses(messages, arn) == ["RUNNING", "SUCCEEDED"]
    for message in messages:
        assert message["source"] == "aws.states"
        assert message["detail-type"] == "Step Functions Execution Status Change"
        assert (message["account"], message["region"]) == (ACCOUNT, REGION)
        assert message["resources"] == [arn]
    assert_running(of(messages, arn, "RUNNING"), described)
    succeeded = of(messages, arn, "SUCCEEDED")
    assert_describes(succeeded, described)
    assert succeeded["input"] == '{"order": 7}'
    assert succeeded["output"] == described["output"]
    assert succeeded["outputDetails"] == {"included": True}
    assert succeeded["stopDate"] >= succeeded["startDate"]
    assert queue.quiet() == []


def test_a_failed_execution_emits_failed_with_its_error_and_cause(
    main: Account, queue: Queue
) -> None:
    arn = main.start(main.machine("fails", FAIL), "f-1")
    described = main.finished(arn)
    messages = queue.receive(2)
    assert statuses(messages, arn) == ["RUNNING", "FAILED"]
    failed = of(messages, arn, "FAILED")
    assert_describes(failed, described)
    assert (failed["error"], failed["cause"]) == ("Order.Invalid", "the order has no items")


def test_a_timed_out_execution_emits_timed_out_with_its_stop_date(
    main: Account, queue: Queue
) -> None:
    arn = main.start(main.machine("slow", TIMES_OUT), "t-1")
    described = main.finished(arn)
    assert described["status"] == "TIMED_OUT"
    messages = queue.receive(2)
    assert statuses(messages, arn) == ["RUNNING", "TIMED_OUT"]
    timed_out = of(messages, arn, "TIMED_OUT")
    assert_describes(timed_out, described)
    assert timed_out["stopDate"] is not None


def test_a_stopped_execution_emits_one_aborted_event_with_the_reason(
    main: Account, queue: Queue
) -> None:
    arn = main.start(main.machine("nightly", LONG_WAIT), "n-1")
    main.sfn.stop_execution(executionArn=arn, error="Oncall", cause="runaway")
    described = main.sfn.describe_execution(executionArn=arn)
    messages = queue.receive(2) + queue.quiet()
    assert statuses(messages, arn) == ["RUNNING", "ABORTED"]
    aborted = of(messages, arn, "ABORTED")
    assert_describes(aborted, described)
    assert (aborted["error"], aborted["cause"]) == ("Oncall", "runaway")


def test_a_redriven_execution_emits_running_with_its_redrive_count_then_its_end(
    fake_aws: Any, main: Account, queue: Queue
) -> None:
    arn = main.start(main.machine("fails", FAIL), "f-1")
    main.finished(arn)
    queue.receive(2)

    main.sfn.redrive_execution(executionArn=arn)
    redriven = main.sfn.describe_execution(executionArn=arn)
    running = of(queue.receive(1), arn, "RUNNING")
    assert_running(running, redriven)
    assert running["redriveCount"] == 1
    assert running["redriveDate"] == ms(redriven["redriveDate"])

    fake_aws.post(
        "/fakeaws/finish",
        {
            "executionArn": arn,
            "status": "SUCCEEDED",
            "events": [
                {
                    "type": "ExecutionSucceeded",
                    "executionSucceededEventDetails": {"output": '{"ok":1}'},
                }
            ],
            "output": '{"ok":1}',
        },
    )
    finished = main.sfn.describe_execution(executionArn=arn)
    succeeded = of(queue.receive(1), arn, "SUCCEEDED")
    assert_describes(succeeded, finished)
    assert (succeeded["output"], succeeded["redriveCount"]) == ('{"ok":1}', 1)
    # The first run's failure is not the redriven run's.
    assert (succeeded["error"], succeeded["cause"]) == (None, None)
    assert succeeded["stopDate"] >= succeeded["redriveDate"]
    assert queue.quiet() == []


def test_a_redriven_execution_stopped_emits_aborted_with_the_reason_and_its_redrive_count(
    fake_aws: Any, main: Account, queue: Queue
) -> None:
    arn = main.start(main.machine("fails", FAIL), "f-1")
    main.finished(arn)
    main.sfn.redrive_execution(executionArn=arn)
    fake_aws.post(
        "/fakeaws/finish",
        {"executionArn": arn, "status": "FAILED", "events": [], "error": "Again", "cause": "2"},
    )
    main.sfn.redrive_execution(executionArn=arn)
    main.sfn.stop_execution(executionArn=arn, error="Oncall", cause="enough")
    described = main.sfn.describe_execution(executionArn=arn)
    assert (described["status"], described["error"], described["redriveCount"]) == (
        "ABORTED",
        "Oncall",
        2,
    )
    messages = queue.receive(6) + queue.quiet()
    assert statuses(messages, arn) == [
        "RUNNING",
        "FAILED",
        "RUNNING",
        "FAILED",
        "RUNNING",
        "ABORTED",
    ]
    assert [m["detail"]["redriveCount"] for m in messages] == [0, 0, 1, 1, 2, 2]
    assert [m["detail"]["error"] for m in messages[2:4]] == [None, "Again"]
    aborted = of(messages, arn, "ABORTED")
    assert_describes(aborted, described)
    assert (aborted["error"], aborted["cause"]) == ("Oncall", "enough")
    history = main.sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1)
    assert history["events"][0]["executionAbortedEventDetails"] == {
        "error": "Oncall",
        "cause": "enough",
    }


def test_another_app_in_the_same_process_does_not_repeat_the_events(
    main: Account, queue: Queue
) -> None:
    # moto's state, and its end of every execution, are the process's: the
    # other app hears the end too, but only the app that started it reports it.
    bystander = FaithfulStepFunctions()
    arn = main.start(main.machine("hello", PASS), "h-1")
    main.finished(arn)
    messages = queue.receive(2) + queue.quiet()
    assert statuses(messages, arn) == ["RUNNING", "SUCCEEDED"]
    assert bystander.events.counted()["emitted"] == 0


def test_an_input_that_with_the_output_exceeds_248_kb_is_left_out(
    main: Account, queue: Queue
) -> None:
    big = {"a": "x" * 100 * 1024, "b": "y" * 100 * 1024}
    arn = main.start(main.machine("keeps-b", KEEPS_B), "k-1", big)
    described = main.finished(arn)
    messages = queue.receive(2)
    # Alone, the 200 KB input fits.
    assert_running(of(messages, arn, "RUNNING"), described)
    succeeded = of(messages, arn, "SUCCEEDED")
    assert_describes(succeeded, described)
    assert (succeeded["input"], succeeded["inputDetails"]) == (None, {"included": False})
    assert json.loads(succeeded["output"]) == {"kept": big["b"]}
    assert succeeded["outputDetails"] == {"included": True}


def test_an_express_workflow_emits_no_events(main: Account, queue: Queue) -> None:
    express = main.start(main.machine("quick", PASS, type="EXPRESS"), "q-1")
    standard = main.start(main.machine("hello", PASS), "h-1")
    main.finished(standard)
    messages = queue.receive(2) + queue.quiet()
    assert statuses(messages, standard) == ["RUNNING", "SUCCEEDED"]
    assert statuses(messages, express) == []


def test_the_events_of_another_account_arrive_through_a_forwarding_rule(
    main: Account, other: Account, queue: Queue
) -> None:
    other.events.put_rule(Name="to-central", EventPattern=json.dumps(PATTERN))
    other.events.put_targets(
        Rule="to-central",
        Targets=[{"Id": "central", "Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"}],
    )
    arn = other.start(other.machine("hello", PASS), "h-1")
    assert arn.split(":")[4] == OTHER_ACCOUNT
    described = other.finished(arn)
    messages = queue.receive(2)
    assert statuses(messages, arn) == ["RUNNING", "SUCCEEDED"]
    assert_running(of(messages, arn, "RUNNING"), described)
    assert_describes(of(messages, arn, "SUCCEEDED"), described)
    # Not checked: the envelope's account and resources. moto forwards a
    # new event from the central bus's own account, without resources,
    # where AWS keeps the source's.


# --- Delivery faults ------------------------------------------------------------------


def test_with_drop_fraction_1_no_event_arrives(fake_aws: Any, main: Account, queue: Queue) -> None:
    fake_aws.app.configure(events={"drop_fraction": 1})
    main.finished(main.start(main.machine("hello", PASS), "h-1"))
    counts = wait_for_counts(fake_aws, emitted=2)
    assert (counts["dropped"], counts["delivered"]) == (2, 0)
    assert queue.quiet() == []
    emitted = fake_aws.post("/fakeaws/events", {})["emitted"]
    assert [(e["status"], e["copies"]) for e in emitted] == [("RUNNING", 0), ("SUCCEEDED", 0)]


def test_with_duplicate_fraction_1_each_event_arrives_twice(
    fake_aws: Any, main: Account, queue: Queue
) -> None:
    fake_aws.app.configure(events={"duplicate_fraction": 1})
    arn = main.start(main.machine("hello", PASS), "h-1")
    main.finished(arn)
    messages = queue.receive(4) + queue.quiet()
    assert sorted(statuses(messages, arn)) == ["RUNNING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
    counts = event_counts(fake_aws)
    assert (counts["emitted"], counts["duplicated"], counts["delivered"]) == (2, 2, 4)


def test_with_a_delay_every_event_arrives_eventually_and_is_counted(
    fake_aws: Any, main: Account, queue: Queue
) -> None:
    fake_aws.post("/fakeaws/config", {"events": {"delay_seconds": 1.5}})
    machine = main.machine("hello", PASS)
    arns = [main.start(machine, f"h-{i}") for i in range(4)]
    for arn in arns:
        main.finished(arn)
    messages = queue.receive(8)
    for arn in arns:
        assert sorted(statuses(messages, arn)) == ["RUNNING", "SUCCEEDED"]
    counts = wait_for_counts(fake_aws, delivered=8)
    assert (counts["emitted"], counts["dropped"], counts["duplicated"]) == (8, 0, 0)
    answer = fake_aws.post("/fakeaws/calls", {})
    assert answer["events"]["delivered"] == 8
    assert fake_aws.post("/fakeaws/events", {})["pending"] == 0


def test_the_same_seed_drops_and_duplicates_the_same_events(fake_aws: Any) -> None:
    def choices(seed: int) -> list[int]:
        events = StatusEvents(random.Random(seed))
        events.configure(drop_fraction=0.3, duplicate_fraction=0.3)
        # No rule on this account's bus (the endpoint was just reset): the
        # deliveries go nowhere.
        detail = {"executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:m:e"}
        for _ in range(50):
            events.emit({**detail, "status": "RUNNING", "redriveCount": 0}, time.time())
        return [e["copies"] for e in events.snapshot()["emitted"]]

    first = choices(7)
    assert first == choices(7)
    assert {0, 1, 2} <= set(first)


def test_events_turned_off_are_not_emitted_and_a_reset_turns_them_on(
    fake_aws: Any, main: Account, queue: Queue
) -> None:
    fake_aws.app.configure(events={"enabled": False})
    main.finished(main.start(main.machine("hello", PASS), "h-1"))
    assert queue.quiet() == []
    assert event_counts(fake_aws)["emitted"] == 0
    fake_aws.reset()
    assert fake_aws.post("/fakeaws/events", {})["settings"] == {
        "enabled": True,
        "drop_fraction": 0.0,
        "duplicate_fraction": 0.0,
        "delay_seconds": 0.0,
    }


# --- Several accounts ---------------------------------------------------------------------


def test_quotas_are_per_account_and_calls_are_counted_per_account_and_region(
    fake_aws: Any, main: Account, other: Account
) -> None:
    machines = {ACCOUNT: main.machine("hello", PASS), OTHER_ACCOUNT: other.machine("hello", PASS)}
    fake_aws.app.configure(quotas={"ListExecutions": [2, 0.01]})
    once = Config(retries={"total_max_attempts": 1})

    def list_three_times(account: Account, machine: str) -> list[str]:
        client = account.client("stepfunctions", config=once)
        codes = []
        for _ in range(3):
            try:
                client.list_executions(stateMachineArn=machine)
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        return codes

    assert list_three_times(main, machines[ACCOUNT]) == ["ok", "ok", "ThrottlingException"]
    # The first account's empty bucket is not the other's.
    assert list_three_times(other, machines[OTHER_ACCOUNT]) == ["ok", "ok", "ThrottlingException"]
    answer = fake_aws.post("/fakeaws/calls", {})
    assert answer["by_target"][f"{ACCOUNT}:{REGION}"]["ListExecutions"] == 3
    assert answer["by_target"][f"{OTHER_ACCOUNT}:{REGION}"]["ListExecutions"] == 3
    assert answer["throttled_by_target"] == {
        f"{ACCOUNT}:{REGION}": {"ListExecutions": 1},
        f"{OTHER_ACCOUNT}:{REGION}": {"ListExecutions": 1},
    }
    assert answer["calls"]["ListExecutions"] == 6
    assert answer["throttled"] == {"ListExecutions": 2}


def test_everything_fakeaws_adds_works_in_an_assumed_role_account(
    fake_aws: Any, other: Account
) -> None:
    sfn = other.sfn
    done = other.start(other.machine("hello", PASS), "h-1")
    other.finished(done)
    everything = sfn.get_execution_history(executionArn=done)["events"]
    ids: list[int] = []
    kwargs: dict[str, Any] = {"executionArn": done, "maxResults": 2, "reverseOrder": True}
    while True:
        page = sfn.get_execution_history(**kwargs)
        ids.extend(e["id"] for e in page["events"])
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert ids == [e["id"] for e in reversed(everything)]
    assert done in fake_aws.app.final_histories

    stopped = other.start(other.machine("nightly", LONG_WAIT), "n-1")
    sfn.stop_execution(executionArn=stopped, error="Oncall", cause="runaway")
    described = sfn.describe_execution(executionArn=stopped)
    assert (described["status"], described["error"], described["cause"]) == (
        "ABORTED",
        "Oncall",
        "runaway",
    )
    last = sfn.get_execution_history(executionArn=stopped, reverseOrder=True, maxResults=1)
    assert last["events"][0]["executionAbortedEventDetails"] == {
        "error": "Oncall",
        "cause": "runaway",
    }

    machine = other.machine("fails", FAIL)
    failed = other.start(machine, "f-1")
    other.finished(failed)
    sfn.redrive_execution(executionArn=failed)
    running = sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]
    assert [e["executionArn"] for e in running] == [failed]
    fake_aws.post(
        "/fakeaws/finish",
        {"executionArn": failed, "status": "SUCCEEDED", "events": [], "output": "{}"},
    )
    described = sfn.describe_execution(executionArn=failed)
    assert (described["status"], described["redriveCount"], described["output"]) == (
        "SUCCEEDED",
        1,
        "{}",
    )
    assert [c for c in fake_aws.post("/fakeaws/calls", {})["by_target"]] == [
        f"{OTHER_ACCOUNT}:{REGION}"
    ]


def test_an_end_before_the_start_answers_is_emitted_after_the_running_event(
    fake_aws: Any, main: Account, queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the RUNNING event until moto's thread has ended the execution.
    app = fake_aws.app
    real_emit: Callable[..., None] = app._emit

    def slow_emit(arn: str, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("as_status") == "RUNNING":
            wait_for(lambda: arn in app.ended_early, timeout=10, interval=0.01)
        real_emit(arn, *args, **kwargs)

    monkeypatch.setattr(app, "_emit", slow_emit)
    arn = main.start(main.machine("hello", PASS), "h-1")
    messages = queue.receive(2) + queue.quiet()
    assert statuses(messages, arn) == ["RUNNING", "SUCCEEDED"]
