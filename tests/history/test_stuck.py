"""executions/history/stuck.py: why a running execution is stuck, from hand-built
histories and definitions (and one 25,000-event history, for the cost)."""

from __future__ import annotations

import datetime as dt
import html
import json
import time
from typing import Any

import pytest
import time_machine

from executions.history import DETAILS_KEY, progress, stuck, visits
from executions.models import Execution, HistoryEvent
from executions.sync import flows
from tests.conftest import REGION
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class History:
    """Events written one by one, each chained to the one it follows."""

    def __init__(self, ex: Execution) -> None:
        self.ex = ex
        self.rows: list[HistoryEvent] = []

    def add(self, event_type: str, prev: int | None, seconds: float, **details: Any) -> int:
        event_id = len(self.rows) + 1
        self.rows.append(
            HistoryEvent(
                execution=self.ex,
                event_id=event_id,
                previous_event_id=event_id - 1 if prev is None else prev,
                timestamp=at(seconds),
                type=event_type,
                details_key=DETAILS_KEY.get(event_type, ""),
                details=details or None,
            )
        )
        return event_id

    def save(self) -> Execution:
        HistoryEvent.objects.bulk_create(self.rows)
        Execution.objects.filter(pk=self.ex.pk).update(last_event_id=len(self.rows))
        self.ex.last_event_id = len(self.rows)
        return self.ex


def running(definition: dict[str, Any], name: str = "sm", **fields: Any) -> History:
    sm = state_machine_row(name, definition=json.dumps(definition))
    ex = execution_row(sm, status="RUNNING", started=T0, **fields)
    h = History(ex)
    h.add("ExecutionStarted", 0, 0, input="{}", roleArn="arn:aws:iam::1:role/x")
    return h


def analyse(ex: Execution, now: dt.datetime) -> stuck.Stuck:
    ex = Execution.objects.select_related("state_machine").get(pk=ex.pk)
    result = stuck.analyse(ex, progress.open_states(ex), now)
    assert result is not None
    return result


def only(result: stuck.Stuck, name: str) -> stuck.OpenStateReport:
    found = [r for r in result.states if r.name == name]
    assert len(found) == 1, [r.name for r in result.states]
    return found[0]


PAYMENT = {
    "StartAt": "Charge",
    "States": {
        "Charge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "TimeoutSeconds": 900,
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "MaxAttempts": 3,
                    "IntervalSeconds": 10,
                    "BackoffRate": 3.0,
                }
            ],
            "End": True,
        }
    },
}


def failing_attempts(h: History, entered: int, failures: int, start: float = 1.0) -> int:
    last = entered
    t = start
    for _ in range(failures):
        last = h.add("TaskScheduled", last, t, resource="getItem", timeoutInSeconds=900)
        last = h.add("TaskStarted", last, t + 0.1, resource="getItem")
        last = h.add(
            "TaskFailed",
            last,
            t + 0.5,
            error="DynamoDB.ResourceNotFoundException",
            cause="Requested resource not found",
        )
        t += 20
    return last


# --- Retries ---------------------------------------------------------------------------


def test_a_task_that_failed_twice_waits_for_attempt_3_of_4() -> None:
    h = running(PAYMENT)
    entered = h.add("TaskStateEntered", 1, 0.5, name="Charge", input="{}")
    last_failure = failing_attempts(h, entered, 2)
    ex = h.save()
    failed_at = h.rows[last_failure - 1].timestamp

    report = only(analyse(ex, failed_at + dt.timedelta(seconds=5)), "Charge")

    retry = report.retry
    assert retry is not None
    assert (retry.attempt, retry.max_attempts) == (3, 4)
    assert retry.waiting
    assert not retry.exhausted
    assert retry.failures == 2
    assert retry.last_error == "DynamoDB.ResourceNotFoundException"
    assert retry.last_failed_event_id == last_failure
    # The second retry waits IntervalSeconds x BackoffRate^1 = 30 s.
    assert retry.delay_seconds == 30
    assert retry.next_at == failed_at + dt.timedelta(seconds=30)
    # Between attempts no attempt runs: no time limit is ticking.
    assert report.timeout is None
    assert report.level == "warn"


def test_a_running_retry_counts_its_attempt_and_its_time_limit() -> None:
    h = running(PAYMENT)
    entered = h.add("TaskStateEntered", 1, 0.5, name="Charge", input="{}")
    last = failing_attempts(h, entered, 1)
    scheduled = h.add("TaskScheduled", last, 11, resource="getItem", timeoutInSeconds=900)
    h.add("TaskStarted", scheduled, 11.1, resource="getItem")
    ex = h.save()

    report = only(analyse(ex, at(11 + 800)), "Charge")

    assert report.retry is not None
    assert (report.retry.attempt, report.retry.max_attempts) == (2, 4)
    assert not report.retry.waiting
    assert report.retry.next_at is None
    clock = report.timeout
    assert clock is not None
    assert clock.since == at(11)  # this attempt's TaskScheduled
    assert clock.event_id == scheduled
    assert clock.limit_seconds == 900
    assert clock.deadline == at(911)
    assert clock.level == "warn"  # 800 of 900 s
    assert report.level == "warn"


def test_out_of_retries_says_so() -> None:
    h = running(PAYMENT)
    entered = h.add("TaskStateEntered", 1, 0.5, name="Charge", input="{}")
    failing_attempts(h, entered, 4)
    ex = h.save()

    retry = only(analyse(ex, at(100)), "Charge").retry

    assert retry is not None
    assert retry.exhausted
    assert not retry.waiting
    assert retry.next_at is None


def test_each_retry_rule_counts_its_own_errors() -> None:
    rules = [
        {"ErrorEquals": ["Throttled"], "MaxAttempts": 5, "IntervalSeconds": 2},
        {"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1, "IntervalSeconds": 7},
    ]
    state = {"Type": "Task", "Retry": rules}

    def failure(event_id: int, error: str) -> visits.TaskEvent:
        return visits.TaskEvent(event_id, event_id - 1, at(event_id), "TaskFailed", error=error)

    visit = [failure(3, "Throttled"), failure(4, "Throttled"), failure(5, "Boom")]
    retry = stuck.retry_state(state, visit)
    assert retry is not None
    # Attempt 4: Boom is the first failure its rule (MaxAttempts 1) retries,
    # after two retries by the Throttled rule.
    assert (retry.attempt, retry.max_attempts) == (4, 4)
    assert retry.delay_seconds == 7
    assert retry.rule == 1

    timed_out = visits.TaskEvent(6, 5, at(6), "TaskTimedOut", error="States.Timeout")
    retry = stuck.retry_state(state, [*visit, timed_out])
    # States.TaskFailed does not take a timeout, and nothing else does.
    assert retry is not None
    assert retry.max_attempts is None
    assert retry.exhausted


def test_full_jitter_makes_the_next_attempt_a_latest_time() -> None:
    definition = json.loads(json.dumps(PAYMENT))
    definition["States"]["Charge"]["Retry"][0]["JitterStrategy"] = "FULL"
    h = running(definition)
    entered = h.add("TaskStateEntered", 1, 0.5, name="Charge", input="{}")
    failing_attempts(h, entered, 1)
    retry = only(analyse(h.save(), at(3)), "Charge").retry
    assert retry is not None
    assert retry.jitter
    assert retry.next_at == at(1.5 + 10)


# --- Callbacks and heartbeats ------------------------------------------------------------

APPROVAL = {
    "StartAt": "Approve",
    "States": {
        "Approve": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "HeartbeatSeconds": 300,
            "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}


def test_a_task_token_wait_shows_its_last_sign_of_life_against_its_heartbeat() -> None:
    h = running(APPROVAL)
    entered = h.add("TaskStateEntered", 1, 1, name="Approve", input="{}")
    scheduled = h.add(
        "TaskScheduled",
        entered,
        2,
        resource="sendMessage.waitForTaskToken",
        resourceType="sqs",
        heartbeatInSeconds=300,
    )
    started = h.add("TaskStarted", scheduled, 3, resource="sendMessage.waitForTaskToken")
    submitted = h.add("TaskSubmitted", started, 4, resource="sendMessage.waitForTaskToken")
    ex = h.save()

    report = only(analyse(ex, at(4 + 250)), "Approve")

    assert report.callback is not None
    assert report.callback.kind == "token"
    assert report.callback.last_sign_type == "TaskSubmitted"
    assert report.callback.last_sign_event_id == submitted
    beat = report.heartbeat
    assert beat is not None
    assert beat.since == at(4)
    assert beat.limit_seconds == 300
    assert beat.seconds == 250
    assert beat.level == "warn"
    # No TimeoutSeconds: only the execution's limit ends it.
    assert report.timeout is None
    assert report.unbounded

    late = only(analyse(ex, at(4 + 301)), "Approve")
    assert late.heartbeat is not None
    assert late.heartbeat.level == "bad"
    assert late.level == "bad"


def test_an_activity_names_its_worker() -> None:
    definition = {
        "StartAt": "Render",
        "States": {
            "Render": {
                "Type": "Task",
                "Resource": "arn:aws:states:us-east-1:123456789012:activity:render",
                "TimeoutSeconds": 60,
                "End": True,
            }
        },
    }
    h = running(definition)
    entered = h.add("TaskStateEntered", 1, 1, name="Render", input="{}")
    scheduled = h.add("ActivityScheduled", entered, 2, resource="arn:...:activity:render")
    h.add("ActivityStarted", scheduled, 5, workerName="render-worker-7")
    report = only(analyse(h.save(), at(30)), "Render")
    assert report.callback is not None
    assert report.callback.kind == "activity"
    assert report.callback.worker == "render-worker-7"
    assert report.timeout is not None
    assert report.timeout.since == at(2)
    assert report.timeout.limit_seconds == 60


# --- Wait states ------------------------------------------------------------------------


def test_a_wait_of_600_seconds_resumes_600_seconds_after_it_was_entered() -> None:
    definition = {
        "StartAt": "Sleep",
        "States": {"Sleep": {"Type": "Wait", "Seconds": 600, "End": True}},
    }
    h = running(definition)
    h.add("WaitStateEntered", 1, 7, name="Sleep", input="{}")
    report = only(analyse(h.save(), at(60)), "Sleep")
    assert report.resume is not None
    assert report.resume.at == at(7 + 600)
    assert report.resume.how == "Seconds 600"


@pytest.mark.parametrize(
    ("state", "state_input", "expected"),
    [
        ({"Timestamp": "2026-11-26T18:00:00Z"}, {}, dt.datetime(2026, 11, 26, 18, tzinfo=dt.UTC)),
        ({"SecondsPath": "$.delay"}, {"delay": 90}, at(5 + 90)),
        ({"SecondsPath": "$.job['wait for']"}, {"job": {"wait for": 30}}, at(5 + 30)),
        (
            {"TimestampPath": "$.until"},
            {"until": "2026-11-26T16:30:00+01:00"},
            dt.datetime(2026, 11, 26, 15, 30, tzinfo=dt.UTC),
        ),
        ({"InputPath": "$.inner", "SecondsPath": "$.s"}, {"inner": {"s": 12}}, at(5 + 12)),
    ],
)
def test_a_wait_from_a_timestamp_or_a_path_in_its_input(
    state: dict[str, Any], state_input: dict[str, Any], expected: dt.datetime
) -> None:
    definition = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "End": True, **state}}}
    h = running(definition)
    h.add("WaitStateEntered", 1, 5, name="Hold", input=json.dumps(state_input))
    report = only(analyse(h.save(), at(6)), "Hold")
    assert report.resume is not None
    assert report.resume.at == expected, report.resume


def test_a_wait_path_missing_from_the_input_says_why() -> None:
    definition = {
        "StartAt": "Hold",
        "States": {"Hold": {"Type": "Wait", "SecondsPath": "$.nope", "End": True}},
    }
    h = running(definition)
    h.add("WaitStateEntered", 1, 5, name="Hold", input='{"delay": 3}')
    resume = only(analyse(h.save(), at(6)), "Hold").resume
    assert resume is not None
    assert resume.at is None
    assert resume.problem == "the path is not in the state's input"


# --- Map states and nesting ---------------------------------------------------------------

FANOUT = {
    "StartAt": "EachItem",
    "States": {
        "EachItem": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 4,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Reserve",
                "States": {
                    "Reserve": {
                        "Type": "Task",
                        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:reserve",
                        "TimeoutSeconds": 120,
                        "End": True,
                    }
                },
            },
            "End": True,
        }
    },
}


def test_a_map_of_10_iterations_with_6_done_shows_its_progress_and_oldest_running() -> None:
    h = running(FANOUT)
    map_in = h.add("MapStateEntered", 1, 1, name="EachItem", input="{}")
    map_started = h.add("MapStateStarted", map_in, 1.1, length=10)
    stuck_iteration = None
    for i in range(10):
        it = h.add("MapIterationStarted", map_started, 2 + i, name="EachItem", index=i)
        task = h.add("TaskStateEntered", it, 2.1 + i, name="Reserve", input="{}")
        sched = h.add("TaskScheduled", task, 2.2 + i, resource="reserve", timeoutInSeconds=120)
        started = h.add("TaskStarted", sched, 2.3 + i, resource="reserve")
        if i in (2, 5, 8, 9):
            if i == 2:
                stuck_iteration = it
            continue
        done = h.add("TaskSucceeded", started, 3 + i, output="{}")
        out = h.add("TaskStateExited", done, 3.1 + i, name="Reserve", output="{}")
        h.add("MapIterationSucceeded", out, 3.2 + i, name="EachItem", index=i)
    ex = h.save()

    result = analyse(ex, at(60))
    m = only(result, "EachItem").map
    assert m is not None
    assert (m.total, m.started, m.succeeded, m.failed, m.running, m.done) == (10, 10, 6, 0, 4, 6)
    assert m.not_started == 0
    assert m.started_event_id == map_started
    assert m.oldest_running_index == 2
    assert m.oldest_running_event_id == stuck_iteration
    # The task inside the Map's ItemProcessor gets its TimeoutSeconds.
    reserve = only(result, "Reserve")
    assert reserve.visits_open == 4
    assert reserve.timeout is not None
    assert reserve.timeout.limit_seconds == 120


def test_interleaved_iterations_keep_their_own_retries() -> None:
    definition = json.loads(json.dumps(FANOUT))
    definition["States"]["EachItem"]["ItemProcessor"]["States"]["Reserve"]["Retry"] = [
        {"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 5}
    ]
    h = running(definition)
    map_in = h.add("MapStateEntered", 1, 1, name="EachItem", input="{}")
    map_started = h.add("MapStateStarted", map_in, 1.1, length=3)
    it0 = h.add("MapIterationStarted", map_started, 2, name="EachItem", index=0)
    it1 = h.add("MapIterationStarted", map_started, 2, name="EachItem", index=1)
    it2 = h.add("MapIterationStarted", map_started, 2, name="EachItem", index=2)
    t0 = h.add("TaskStateEntered", it0, 2.1, name="Reserve", input="{}")
    t1 = h.add("TaskStateEntered", it1, 2.2, name="Reserve", input="{}")
    t2 = h.add("TaskStateEntered", it2, 2.3, name="Reserve", input="{}")
    s0 = h.add("TaskScheduled", t0, 2.4, resource="reserve", timeoutInSeconds=120)
    s1 = h.add("TaskScheduled", t1, 2.4, resource="reserve", timeoutInSeconds=120)
    s2 = h.add("TaskScheduled", t2, 2.4, resource="reserve", timeoutInSeconds=120)
    f0 = h.add("TaskFailed", s0, 3, error="Boom")
    f1 = h.add("TaskFailed", s1, 3, error="Boom")
    done = h.add("TaskSucceeded", s2, 3, output="{}")
    out = h.add("TaskStateExited", done, 3, name="Reserve", output="{}")
    h.add("MapIterationSucceeded", out, 3, name="EachItem", index=2)
    retry0 = h.add("TaskScheduled", f0, 8, resource="reserve", timeoutInSeconds=120)
    retry1 = h.add("TaskScheduled", f1, 8, resource="reserve", timeoutInSeconds=120)
    f1b = h.add("TaskFailed", retry1, 9, error="Boom")
    ex = h.save()

    reserve = visits.open_visits(ex)["Reserve"]
    assert [v.entered_id for v in reserve] == [t0, t1]  # iteration 2 is done
    assert [e.event_id for e in reserve[0].events] == [s0, f0, retry0]
    assert [e.event_id for e in reserve[1].events] == [s1, f1, retry1, f1b]

    report = only(analyse(ex, at(10)), "Reserve")
    # The oldest open visit (iteration 0), with its own failures only.
    assert report.event_id == t0
    assert report.entered_at == at(2.1)
    assert report.visits_open == 2
    assert report.retry is not None
    assert (report.retry.failures, report.retry.attempt, report.retry.max_attempts) == (1, 2, 3)
    assert not report.retry.waiting
    assert report.timeout is not None
    assert report.timeout.since == at(8)


def test_a_stuck_old_iteration_is_found_behind_newer_ones_that_finished() -> None:
    definition = {
        "StartAt": "EachItem",
        "States": {
            "EachItem": {
                "Type": "Map",
                "Iterator": {
                    "StartAt": "Hold",
                    "States": {"Hold": {"Type": "Wait", "SecondsPath": "$.s", "End": True}},
                },
                "End": True,
            }
        },
    }
    h = running(definition)
    map_in = h.add("MapStateEntered", 1, 1, name="EachItem", input="{}")
    map_started = h.add("MapStateStarted", map_in, 1.1, length=2)
    it0 = h.add("MapIterationStarted", map_started, 2, name="EachItem", index=0)
    stuck_wait = h.add("WaitStateEntered", it0, 2, name="Hold", input='{"s": 3600}')
    it1 = h.add("MapIterationStarted", map_started, 5, name="EachItem", index=1)
    quick = h.add("WaitStateEntered", it1, 5, name="Hold", input='{"s": 1}')
    out = h.add("WaitStateExited", quick, 6, name="Hold", output="{}")
    h.add("MapIterationSucceeded", out, 6, name="EachItem", index=1)
    ex = h.save()
    # progress.open_states names the state by its latest entry, which is over.
    assert [s.event_id for s in progress.open_states(ex) if s.name == "Hold"] == [quick]

    report = only(analyse(ex, at(60)), "Hold")
    assert report.event_id == stuck_wait
    assert report.resume is not None
    assert report.resume.at == at(2 + 3600)


def test_a_distributed_map_points_at_its_map_run() -> None:
    definition = {
        "StartAt": "Big",
        "States": {
            "Big": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Work",
                    "States": {"Work": {"Type": "Pass", "End": True}},
                },
                "End": True,
            }
        },
    }
    h = running(definition)
    map_in = h.add("MapStateEntered", 1, 1, name="Big", input="{}")
    map_started = h.add("MapStateStarted", map_in, 1.1, length=0)
    run = h.add(
        "MapRunStarted", map_started, 1.2, mapRunArn="arn:aws:states:us-east-1:1:mapRun:sm/Big:abc"
    )
    m = only(analyse(h.save(), at(5)), "Big").map
    assert m is not None
    assert m.map_run_arn.endswith("mapRun:sm/Big:abc")
    assert m.map_run_event_id == run


# --- The execution ----------------------------------------------------------------------


def test_an_execution_at_21000_events_is_warned_about_the_25000_event_limit() -> None:
    h = running(
        {"StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 5, "End": True}}}
    )
    ex = h.save()
    Execution.objects.filter(pk=ex.pk).update(last_event_id=21_000)
    budget = analyse(ex, at(2100)).events
    assert budget.used == 21_000
    assert budget.percent == 84.0
    assert budget.percent_label == "84 %"
    assert budget.warn
    # 10 events a second so far: the last 4,000 take 400 s more.
    assert budget.reaches_limit_at == at(2100 + 400)

    Execution.objects.filter(pk=ex.pk).update(last_event_id=19_000)
    assert not analyse(ex, at(2100)).events.warn
    Execution.objects.filter(pk=ex.pk).update(last_event_id=8)
    assert analyse(ex, at(2100)).events.percent_label == "under 0.1 %"


def test_the_execution_time_limit_is_a_clock_too() -> None:
    h = running(
        {
            "TimeoutSeconds": 3600,
            "StartAt": "S",
            "States": {"S": {"Type": "Wait", "Seconds": 5, "End": True}},
        }
    )
    clock = analyse(h.save(), at(3000)).execution_timeout
    assert clock is not None
    assert clock.deadline == at(3600)
    assert clock.level == "warn"


def test_a_finished_execution_has_no_panel() -> None:
    ex = execution_row(status="SUCCEEDED", started=T0)
    assert stuck.analyse(ex, [], at(10)) is None


def test_a_definition_that_is_missing_or_broken_is_said_not_guessed() -> None:
    h = running(PAYMENT)
    h.add("TaskStateEntered", 1, 1, name="Charge", input="{}")
    ex = h.save()
    type(ex.state_machine).objects.filter(pk=ex.state_machine_id).update(definition="{nope")
    result = analyse(ex, at(5))
    assert "could not be read" in result.definition_problem
    report = only(result, "Charge")
    assert not report.in_definition
    assert report.type == "Task"  # from the event type


# --- Cost --------------------------------------------------------------------------------


def big_running_history(ex: Execution, total: int = 25_000) -> None:
    """A running execution near the limit: a Map whose 4,000 iterations each
    ran a retried Task (most done, a few still running or waiting to retry),
    then more iterations up to `total` events, and a Wait at the top level."""
    h = History(ex)
    h.add("ExecutionStarted", 0, 0, input="{}")
    map_in = h.add("MapStateEntered", 1, 1, name="EachItem", input="{}")
    map_started = h.add("MapStateStarted", map_in, 1.1, length=5000)
    i = 0
    while len(h.rows) < total - 10:
        t = 2 + i * 0.1
        it = h.add("MapIterationStarted", map_started, t, name="EachItem", index=i)
        task = h.add("TaskStateEntered", it, t, name="Reserve", input="{}")
        sched = h.add("TaskScheduled", task, t, resource="reserve", timeoutInSeconds=120)
        failed = h.add("TaskFailed", sched, t, error="Boom", cause="x" * 200)
        sched = h.add("TaskScheduled", failed, t + 1, resource="reserve", timeoutInSeconds=120)
        if i % 997 == 5:  # still running
            i += 1
            continue
        done = h.add("TaskSucceeded", sched, t + 2, output=json.dumps({"blob": "y" * 500}))
        out = h.add("TaskStateExited", done, t + 2, name="Reserve", output="{}")
        h.add("MapIterationSucceeded", out, t + 2, name="EachItem", index=i)
        i += 1
    HistoryEvent.objects.bulk_create(h.rows, batch_size=2000)
    Execution.objects.filter(pk=ex.pk).update(last_event_id=len(h.rows))


def test_on_a_25000_event_history_it_reads_little(django_assert_max_num_queries: Any) -> None:
    sm = state_machine_row("big", definition=json.dumps(FANOUT))
    ex = execution_row(sm, status="RUNNING", started=T0)
    big_running_history(ex)
    ex = Execution.objects.select_related("state_machine").get(pk=ex.pk)
    open_states = progress.open_states(ex)
    assert {s.name for s in open_states} == {"EachItem", "Reserve"}

    began = time.perf_counter()
    # The open Task / Wait visits (their chains, then their events); for the
    # Map, its start, its iterations counted by type, its oldest running one.
    with django_assert_max_num_queries(5):
        result = stuck.analyse(ex, open_states, at(3000))
    took = time.perf_counter() - began
    assert result is not None
    m = only(result, "EachItem").map
    assert m is not None
    still_running = [i for i in range(m.started) if i % 997 == 5]
    assert m.running == len(still_running) == 4
    assert m.succeeded == m.started - 4
    assert m.oldest_running_index == 5
    assert result.events.used > 24_900
    assert result.events.warn
    # Measured at about 0.05 s on SQLite; generous for a busy machine.
    print(f"stuck.analyse on {result.events.used} events: {took * 1000:.0f} ms")
    assert took < 2.0, took


# --- The panel on the detail page, on executions run by moto ------------------------------

# PAYMENT of tests/support/helpers.py, with retries slow enough to watch: the first
# retry after 1 s, the next one a minute later.
SLOW_RETRIES = {
    "StartAt": "Charge",
    "States": {
        "Charge": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Parameters": {"TableName": "payments-missing", "Key": {"id": {"S": "1"}}},
            "TimeoutSeconds": 900,
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "MaxAttempts": 3,
                    "IntervalSeconds": 1,
                    "BackoffRate": 60.0,
                }
            ],
            "End": True,
        }
    },
}
SLEEP_600: dict[str, Any] = {
    "StartAt": "Sleep",
    "States": {"Sleep": {"Type": "Wait", "Seconds": 600, "End": True}},
}


def aws_failures(sfn: Any, arn: str) -> list[dict[str, Any]]:
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e for e in history if e["type"] == "TaskFailed"]


def detail(client: Any, arn: str, query: str = "", **headers: Any) -> str:
    response = client.get(f"/executions/{arn}/" + (f"?{query}" if query else ""), **headers)
    assert response.status_code == 200, response.content[:300]
    return str(response.content.decode())


def test_the_panel_shows_the_attempt_of_a_retrying_task_synced_from_aws(
    viewer_client: Any, make_state_machine: Any, start: Any, sfn: Any
) -> None:
    from tests.support.helpers import wait_for

    arn = start(make_state_machine("payments", SLOW_RETRIES), "pay-1")
    wait_for(lambda: len(aws_failures(sfn, arn)) == 2, timeout=30)
    flows.discover_state_machines(REGION)
    flows.import_execution(arn)
    second = aws_failures(sfn, arn)[-1]
    failed_event = second["id"]
    next_at = second["timestamp"].astimezone(dt.UTC) + dt.timedelta(seconds=60)

    body = detail(viewer_client, arn)
    assert 'id="stuck"' in body
    assert "Retrying:" in body
    assert '<strong class="attempt">attempt 3 of 4</strong>' in body
    assert f'<strong class="next-attempt">{next_at:%Y-%m-%d %H:%M:%S} UTC</strong>' in body
    assert "DynamoDB.ResourceNotFoundException" in body
    assert f"history/?event={failed_event}#event-{failed_event}" in body
    # The summary to copy for the incident channel says so too, in UTC.
    assert (
        "- Retrying `Charge`: attempt 2 failed with `DynamoDB.ResourceNotFoundException`; "
        f"attempt 3 of 4 at {next_at:%Y-%m-%d %H:%M:%S} UTC"
    ) in html.unescape(body)
    # The zone of the page applies.
    berlin = next_at.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert f"{berlin:%Y-%m-%d %H:%M:%S} CET" in detail(viewer_client, arn, "tz=Europe/Berlin")


def test_the_panel_shows_when_a_wait_resumes_and_refreshes_with_the_live_part(
    viewer_client: Any, make_state_machine: Any, start: Any
) -> None:
    arn = start(make_state_machine("nightly", SLEEP_600), "n-1")
    flows.discover_state_machines(REGION)
    ex = flows.import_execution(arn)
    entered = HistoryEvent.objects.get(execution=ex, type="WaitStateEntered")
    resume = entered.timestamp + dt.timedelta(seconds=600)

    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        body = detail(viewer_client, arn, **headers)
        assert 'id="stuck"' in body
        assert f'<strong class="resume-at">{resume:%Y-%m-%d %H:%M:%S} UTC</strong>' in body
        assert "Seconds 600" in body
        assert f"history/?event={entered.event_id}#event-{entered.event_id}" in body
        assert "of 25,000 events" in body


def test_the_panel_counts_map_iterations_synced_from_aws(
    viewer_client: Any, make_state_machine: Any, start: Any, sfn: Any
) -> None:
    from tests.support.helpers import wait_for

    definition = {
        "StartAt": "EachItem",
        "States": {
            "EachItem": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 2,
                "Iterator": {"StartAt": "Hold", "States": {"Hold": SLEEP_600["States"]["Sleep"]}},
                "End": True,
            }
        },
    }
    arn = start(make_state_machine("fanout", definition), "f-1", {"items": [1, 2, 3]})

    def both_waiting() -> bool:
        history = sfn.get_execution_history(executionArn=arn)["events"]
        return sum(e["type"] == "WaitStateEntered" for e in history) == 2

    wait_for(both_waiting)
    flows.discover_state_machines(REGION)
    flows.import_execution(arn)
    body = detail(viewer_client, arn)
    assert '<span class="map-done">0 of 3 done</span>' in body
    assert "2 running, 1 not started yet" in body
    assert "Oldest running: iteration 0" in body


def test_a_finished_execution_has_no_panel_on_its_page(viewer_client: Any) -> None:
    ex = execution_row(status="SUCCEEDED")
    assert 'id="stuck"' not in detail(viewer_client, ex.arn)


def test_the_live_refresh_of_a_25000_event_execution_stays_cheap(
    viewer_client: Any, django_assert_max_num_queries: Any
) -> None:
    sm = state_machine_row("big", definition=json.dumps(FANOUT))
    ex = execution_row(sm, status="RUNNING", started=T0)
    big_running_history(ex)
    # Fresh data: no "sync it sooner" update in the count.
    Execution.objects.filter(pk=ex.pk).update(synced_at=at(3000))
    # session, user, execution, open states (3), the panel (open visits: 2;
    # Map: start, iteration counts, oldest running iteration).
    with (
        django_assert_max_num_queries(11),
        time_machine.travel(at(3000), tick=False),
    ):
        began = time.perf_counter()
        body = detail(viewer_client, ex.arn, HTTP_HX_REQUEST="true")
        took = time.perf_counter() - began
    print(f"live refresh of a 25,000-event execution: {took * 1000:.0f} ms")
    assert "Iterations:" in body
    # The oldest of the stuck iterations' tasks, long past its 2-minute limit.
    assert "4 visits open (Map iterations or branches): the oldest is shown" in body
    assert "Past its time limit:" in body
    assert "AWS fails the execution when its history reaches 25,000 events" in body
    assert len(body) < 50_000
