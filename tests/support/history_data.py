"""Histories made directly as cached rows, for the history tests: one event of
each of the 62 types, and a 25,000-event execution."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from executions.history import DETAILS_KEY
from executions.models import Execution, HistoryEvent

ERROR = "States.TaskFailed"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:charge"
ACTIVITY = "arn:aws:states:us-east-1:123456789012:activity:review"
MAP_RUN = "arn:aws:states:us-east-1:123456789012:mapRun:orders/EachItem:4c5d"


def plausible_details(event_type: str, hostile: str = "") -> dict[str, Any] | None:
    """A details object like the one AWS sends with `event_type` (None for
    the types that carry none). `hostile` is appended to every string a
    person could have chosen (names, errors, causes, payloads)."""
    key = DETAILS_KEY[event_type]
    if not key:
        return None
    h = hostile
    payload = json.dumps({"order": 7, "note": f"payload{h}"})
    if key == "stateEnteredEventDetails":
        return {
            "name": f"State-{event_type}{h}",
            "input": payload,
            "inputDetails": {"truncated": False},
        }
    if key == "stateExitedEventDetails":
        return {
            "name": f"State-{event_type}{h}",
            "output": payload,
            "outputDetails": {"truncated": False},
            "assignedVariables": {"total": "42"},
            "assignedVariablesDetails": {"truncated": False},
        }
    failure = {"error": f"Err.{event_type}{h}", "cause": f"cause of {event_type}{h}"}
    task = {"resourceType": "lambda", "resource": "invoke"}
    by_key: dict[str, dict[str, Any]] = {
        "activityFailedEventDetails": failure,
        "activityScheduleFailedEventDetails": failure,
        "activityScheduledEventDetails": {
            "resource": ACTIVITY,
            "input": payload,
            "inputDetails": {"truncated": False},
            "timeoutInSeconds": 300,
            "heartbeatInSeconds": 60,
        },
        "activityStartedEventDetails": {"workerName": f"worker-7{h}"},
        "activitySucceededEventDetails": {"output": payload, "outputDetails": {"truncated": False}},
        "activityTimedOutEventDetails": failure,
        "taskFailedEventDetails": {**task, **failure},
        "taskScheduledEventDetails": {
            **task,
            "region": "us-east-1",
            "parameters": json.dumps({"FunctionName": LAMBDA, "Payload": {"x": h}}),
            "timeoutInSeconds": 900,
            "heartbeatInSeconds": 30,
            "taskCredentials": {"roleArn": "arn:aws:iam::123456789012:role/task"},
        },
        "taskStartFailedEventDetails": {**task, **failure},
        "taskStartedEventDetails": dict(task),
        "taskSubmitFailedEventDetails": {**task, **failure},
        "taskSubmittedEventDetails": {
            **task,
            "output": payload,
            "outputDetails": {"truncated": False},
        },
        "taskSucceededEventDetails": {
            **task,
            "output": payload,
            "outputDetails": {"truncated": False},
        },
        "taskTimedOutEventDetails": {**task, **failure},
        "executionFailedEventDetails": failure,
        "executionStartedEventDetails": {
            "input": payload,
            "inputDetails": {"truncated": False},
            "roleArn": "arn:aws:iam::123456789012:role/sfn",
            "stateMachineVersionArn": "arn:aws:states:us-east-1:123456789012:stateMachine:orders:3",
        },
        "executionSucceededEventDetails": {
            "output": payload,
            "outputDetails": {"truncated": False},
        },
        "executionAbortedEventDetails": failure,
        "executionTimedOutEventDetails": failure,
        "executionRedrivenEventDetails": {"redriveCount": 2},
        "mapStateStartedEventDetails": {"length": 12},
        "mapIterationStartedEventDetails": {"name": f"EachItem{h}", "index": 4},
        "mapIterationSucceededEventDetails": {"name": f"EachItem{h}", "index": 4},
        "mapIterationFailedEventDetails": {"name": f"EachItem{h}", "index": 4},
        "mapIterationAbortedEventDetails": {"name": f"EachItem{h}", "index": 4},
        "lambdaFunctionFailedEventDetails": failure,
        "lambdaFunctionScheduleFailedEventDetails": failure,
        "lambdaFunctionScheduledEventDetails": {
            "resource": LAMBDA,
            "input": payload,
            "inputDetails": {"truncated": False},
            "timeoutInSeconds": 60,
            "taskCredentials": {"roleArn": "arn:aws:iam::123456789012:role/task"},
        },
        "lambdaFunctionStartFailedEventDetails": failure,
        "lambdaFunctionSucceededEventDetails": {
            "output": payload,
            "outputDetails": {"truncated": False},
        },
        "lambdaFunctionTimedOutEventDetails": failure,
        "mapRunStartedEventDetails": {"mapRunArn": MAP_RUN},
        "mapRunFailedEventDetails": failure,
        "mapRunRedrivenEventDetails": {"mapRunArn": MAP_RUN, "redriveCount": 1},
        "evaluationFailedEventDetails": {
            **failure,
            "location": "Arguments",
            "state": f"State-EvaluationFailed{h}",
        },
    }
    return dict(by_key[key])


def every_type(execution: Execution, hostile: str = "") -> list[HistoryEvent]:
    """One event of each of the 62 types, ids 1..62, a second apart."""
    rows = []
    for i, event_type in enumerate(DETAILS_KEY, start=1):
        rows.append(
            HistoryEvent(
                execution=execution,
                event_id=i,
                previous_event_id=i - 1,
                timestamp=execution.start_date + dt.timedelta(seconds=i - 1),
                type=event_type,
                details_key=DETAILS_KEY[event_type],
                details=plausible_details(event_type, hostile),
            )
        )
    HistoryEvent.objects.bulk_create(rows)
    Execution.objects.filter(pk=execution.pk).update(last_event_id=len(rows))
    return rows


def big_history(
    execution: Execution, *, iterations: int = 3000, total: int = 25_000, big_every: int = 500
) -> int:
    """A 25,000-event execution: a Map whose iterations run a Task (a few fail
    and are retried, some fail for good), then a Wait/Pass/Choice loop up to
    `total` events. Every `big_every`-th state event carries a 200 KB input.
    Returns the number of events stored."""
    t0 = execution.start_date
    rows: list[HistoryEvent] = []
    big = json.dumps({"blob": "x" * 200_000})
    small = json.dumps({"order": 1})

    def add(event_type: str, prev: int, at: float, details: dict[str, Any] | None = None) -> int:
        event_id = len(rows) + 1
        if details is not None and "input" in details and event_id % big_every == 0:
            details = {**details, "input": big}
        rows.append(
            HistoryEvent(
                execution=execution,
                event_id=event_id,
                previous_event_id=prev,
                timestamp=t0 + dt.timedelta(seconds=at),
                type=event_type,
                details_key=DETAILS_KEY.get(event_type, ""),
                details=details,
            )
        )
        return event_id

    def entered(kind: str, name: str, prev: int, at: float) -> int:
        return add(f"{kind}StateEntered", prev, at, {"name": name, "input": small})

    def exited(kind: str, name: str, prev: int, at: float) -> int:
        return add(f"{kind}StateExited", prev, at, {"name": name, "output": small})

    last = add("ExecutionStarted", 0, 0, {"input": big, "roleArn": "arn:aws:iam::1:role/x"})
    last = exited("Pass", "Init", entered("Pass", "Init", last, 0.01), 0.02)
    map_in = entered("Map", "Fanout", last, 0.03)
    map_started = add("MapStateStarted", map_in, 0.04, {"length": iterations})
    end_of_map = 0.0
    for i in range(iterations):
        begin = 0.05 + (i // 40) * 2.0 + (i % 40) * 0.01
        it = add("MapIterationStarted", map_started, begin, {"name": "Fanout", "index": i})
        task = entered("Task", "Work", it, begin + 0.001)
        task_details = {"resourceType": "lambda", "resource": "invoke"}
        sched = add("TaskScheduled", task, begin + 0.002, {**task_details, "region": "us-east-1"})
        started = add("TaskStarted", sched, begin + 0.003, task_details)
        ok = i % 1000 != 999
        if ok:
            done = add("TaskSucceeded", started, begin + 1.5, {**task_details, "output": small})
            out = exited("Task", "Work", done, begin + 1.501)
            last_it = add(
                "MapIterationSucceeded", out, begin + 1.502, {"name": "Fanout", "index": i}
            )
        else:
            failed = add(
                "TaskFailed",
                started,
                begin + 1.5,
                {**task_details, "error": "Work.Failed", "cause": "item rejected"},
            )
            out = exited("Task", "Work", failed, begin + 1.501)
            last_it = add("MapIterationFailed", out, begin + 1.502, {"name": "Fanout", "index": i})
        end_of_map = max(end_of_map, begin + 1.502)
    add("MapStateSucceeded", last_it, end_of_map)
    last = exited("Map", "Fanout", last_it, end_of_map + 0.001)
    at = end_of_map + 0.01
    while len(rows) + 6 <= total - 3:
        tick = entered("Wait", "Tick", last, at)
        last = exited("Wait", "Tick", tick, at + 1)
        count = entered("Pass", "Count", last, at + 1.001)
        last = exited("Pass", "Count", count, at + 1.002)
        more = entered("Choice", "More", last, at + 1.003)
        last = exited("Choice", "More", more, at + 1.004)
        at += 1.01
    done = entered("Succeed", "Done", last, at)
    last = exited("Succeed", "Done", done, at)
    while len(rows) + 2 <= total - 3:
        last = exited("Pass", "Pad", entered("Pass", "Pad", last, at), at)
    add("ExecutionSucceeded", last, at + 0.001, {"output": small})
    for start in range(0, len(rows), 2000):
        HistoryEvent.objects.bulk_create(rows[start : start + 2000])
    Execution.objects.filter(pk=execution.pk).update(
        last_event_id=len(rows), stop_date=t0 + dt.timedelta(seconds=at + 0.001)
    )
    return len(rows)
