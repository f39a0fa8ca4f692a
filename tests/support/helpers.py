"""Small helpers and the state machine definitions the tests run on moto."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from executions.models import Execution, HistoryEvent


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def wait_until_finished(sfn: Any, arns: list[str], timeout: float = 60.0) -> None:
    def finished() -> bool:
        return all(sfn.describe_execution(executionArn=a)["status"] != "RUNNING" for a in arns)

    wait_for(finished, timeout=timeout, interval=0.3)


PASS = {
    "StartAt": "Hello",
    "States": {"Hello": {"Type": "Pass", "Result": {"ok": True}, "End": True}},
}

FAIL = {
    "StartAt": "Check",
    "States": {
        "Check": {"Type": "Pass", "Next": "Boom"},
        "Boom": {"Type": "Fail", "Error": "Order.Invalid", "Cause": "the order has no items"},
    },
}

# Choice, Map over items, Parallel branches, a Lambda task, a Wait: the order
# pipeline of the demo, in small.
ORDER_PIPELINE = {
    "StartAt": "Validate",
    "States": {
        "Validate": {"Type": "Pass", "Next": "HasItems"},
        "HasItems": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.items[0]", "IsPresent": True, "Next": "EachItem"}],
            "Default": "Rejected",
        },
        "EachItem": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "Iterator": {
                "StartAt": "Reserve",
                "States": {"Reserve": {"Type": "Pass", "End": True}},
            },
            "ResultPath": "$.reserved",
            "Next": "ShipAndBill",
        },
        "ShipAndBill": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Ship", "States": {"Ship": {"Type": "Pass", "End": True}}},
                {
                    "StartAt": "Bill",
                    "States": {
                        "Bill": {
                            "Type": "Task",
                            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:bill",
                            "End": True,
                        }
                    },
                },
            ],
            "ResultPath": "$.shipped",
            "Next": "Settle",
        },
        "Settle": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail", "Error": "Order.Empty", "Cause": "no items"},
    },
}

# A task that really fails (a DynamoDB table that does not exist), retried,
# then caught: TaskFailed events, a retry, a Catch to a Fail state.
PAYMENT = {
    "StartAt": "Charge",
    "States": {
        "Charge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Parameters": {"TableName": "payments-missing", "Key": {"id": {"S": "1"}}},
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "MaxAttempts": 1,
                    "IntervalSeconds": 1,
                    "BackoffRate": 1.0,
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Declined"}],
            "Next": "Paid",
        },
        "Paid": {"Type": "Succeed"},
        "Declined": {"Type": "Fail", "Error": "Payment.Declined", "Cause": "the card was declined"},
    },
}

# Runs until stopped.
LONG_WAIT = {
    "StartAt": "Sleep",
    "States": {"Sleep": {"Type": "Wait", "Seconds": 3600, "End": True}},
}


def ticking(seconds: int) -> dict[str, Any]:
    """Adds a few events every second for `seconds` seconds: a growing history."""
    return {
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Result": {"n": 0}, "Next": "Tick"},
            "Tick": {"Type": "Wait", "Seconds": 1, "Next": "Count"},
            "Count": {
                "Type": "Pass",
                "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
                "Next": "More",
            },
            "More": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": seconds, "Next": "Tick"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }


def counting_loop(iterations: int) -> dict[str, Any]:
    """A finished history of about 4 x `iterations` events."""
    return {
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Result": {"n": 0}, "Next": "Count"},
            "Count": {
                "Type": "Pass",
                "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
                "Next": "More",
            },
            "More": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": iterations, "Next": "Count"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }


# --- What AWS says, and what the cache holds -----------------------------------------


def _utc(value: Any) -> Any:
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else value


def aws_execution(sfn: Any, arn: str) -> dict[str, Any]:
    d = sfn.describe_execution(executionArn=arn)
    return {
        "arn": d["executionArn"],
        "state_machine": d["stateMachineArn"],
        "name": d["name"],
        "status": d["status"],
        "start_date": _utc(d["startDate"]),
        "stop_date": _utc(d.get("stopDate")),
        "input": d.get("input"),
        "output": d.get("output"),
        "error": d.get("error"),
        "cause": d.get("cause"),
        "redrive_count": d.get("redriveCount", 0),
    }


def cached_execution(arn: str) -> dict[str, Any]:
    ex = Execution.objects.select_related("state_machine").get(arn=arn)
    return {
        "arn": ex.arn,
        "state_machine": ex.state_machine.arn,
        "name": ex.name,
        "status": ex.status,
        "start_date": ex.start_date,
        "stop_date": ex.stop_date,
        "input": ex.input,
        "output": ex.output,
        "error": ex.error,
        "cause": ex.cause,
        "redrive_count": ex.redrive_count,
    }


def aws_events(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return [{k: _utc(v) for k, v in event.items()} for event in events]


def cached_events(arn: str) -> list[dict[str, Any]]:
    out = []
    for e in HistoryEvent.objects.filter(execution__arn=arn).order_by("event_id"):
        event: dict[str, Any] = {
            "timestamp": e.timestamp,
            "type": e.type,
            "id": e.event_id,
            "previousEventId": e.previous_event_id,
        }
        if e.details_key:
            event[e.details_key] = e.details
        out.append(event)
    return out


def assert_cache_equals_aws(sfn: Any, arns: list[str]) -> None:
    for arn in arns:
        assert cached_execution(arn) == aws_execution(sfn, arn), arn
        assert cached_events(arn) == aws_events(sfn, arn), arn
