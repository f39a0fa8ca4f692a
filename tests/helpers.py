"""Small helpers and the state machine definitions the tests run on moto."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


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
