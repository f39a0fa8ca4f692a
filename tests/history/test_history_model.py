"""executions/history: event descriptions, the timeline, its layout, the text format."""

from __future__ import annotations

import ast
import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from executions import event_types, history
from executions.history import drawing as drawing_mod
from executions.history.events import describe, one_line, pretty, summary_text
from executions.history.timeline import Ev, Lane, Span
from executions.sync import flows
from tests.support.helpers import ORDER_PIPELINE, PAYMENT, wait_until_finished
from tests.support.history_data import plausible_details

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def _service_model() -> Any:
    return botocore.session.get_session().get_service_model("stepfunctions")


def _ev(
    event_id: int,
    prev: int,
    seconds: float,
    event_type: str,
    name: str | None = None,
    iteration: int | None = None,
    error: str | None = None,
    number: int | None = None,
) -> Ev:
    return Ev(
        event_id,
        prev,
        T0 + dt.timedelta(seconds=seconds),
        event_type,
        name,
        iteration,
        error,
        number,
    )


def _build(
    events: list[Ev], *, running: bool = False, end: float | None = None
) -> history.Timeline:
    stop = None if end is None else T0 + dt.timedelta(seconds=end)
    return history.build(
        events, start=T0, end=stop, running=running, now=T0 + dt.timedelta(seconds=100)
    )


def _rows(events: list[Ev], **kw: Any) -> list[tuple[int, str, str]]:
    drawing = history.layout(_build(events, **kw))
    return [(row.depth, row.kind, row.label) for row in drawing.rows]


def _span(lane: Lane, name: str) -> Span:
    (span,) = [s for s in lane.spans if s.name == name]
    return span


# --- The 62 event types -------------------------------------------------------------------


def test_the_details_mapping_covers_every_event_type_of_the_service_model() -> None:
    model = _service_model()
    enum = model.shape_for("HistoryEventType").enum
    members = set(model.shape_for("HistoryEvent").members)
    assert len(enum) == 62
    assert set(history.DETAILS_KEY) == set(enum)
    for event_type, key in history.DETAILS_KEY.items():
        if key:
            assert key in members, (event_type, key)
        else:
            # No member named after the type: AWS sends these without details.
            assert history.details_key_for(event_type) not in members, event_type
    # Every details member is used by some type.
    used = {key for key in history.DETAILS_KEY.values() if key}
    assert {m for m in members if m.endswith("EventDetails")} == used


def test_the_groups_of_event_types_are_what_the_dashboard_reads() -> None:
    """The one list's groups, checked against the 62 types by name. Before
    there was one list, the failure point's own list lacked TaskStateAborted
    and WaitStateAborted, which the history table's had."""
    enum = set(_service_model().shape_for("HistoryEventType").enum)
    assert set(event_types.EVENT_TYPES) == enum
    assert {
        "TaskStateAborted",
        "WaitStateAborted",
        "FailStateEntered",
        "EvaluationFailed",
        "MapRunFailed",
        "MapIterationAborted",
        "ExecutionTimedOut",
    } <= event_types.FAILURE_TYPES
    assert len(event_types.FAILURE_TYPES) == 26
    assert not {t for t in event_types.FAILURE_TYPES if "Succeeded" in t or "Started" in t}
    assert {
        "ExecutionSucceeded",
        "ExecutionFailed",
        "ExecutionAborted",
        "ExecutionTimedOut",
    } == event_types.TERMINAL_TYPES
    assert {
        "TaskScheduled",
        "LambdaFunctionScheduled",
        "ActivityScheduled",
    } == event_types.TASK_SCHEDULED_TYPES
    assert {
        "TaskStarted",
        "TaskSubmitted",
        "LambdaFunctionStarted",
        "ActivityStarted",
    } == event_types.TASK_ALIVE_TYPES
    assert {
        "TaskSucceeded",
        "LambdaFunctionSucceeded",
        "ActivitySucceeded",
    } == event_types.TASK_SUCCEEDED_TYPES
    assert {
        "TaskFailed",
        "TaskStartFailed",
        "TaskSubmitFailed",
        "TaskTimedOut",
        "LambdaFunctionFailed",
        "LambdaFunctionStartFailed",
        "LambdaFunctionScheduleFailed",
        "LambdaFunctionTimedOut",
        "ActivityFailed",
        "ActivityScheduleFailed",
        "ActivityTimedOut",
    } == event_types.TASK_FAILURE_TYPES
    assert event_types.TASK_FAILURE_TYPES <= event_types.FAILURE_TYPES
    assert {
        "MapIterationStarted",
        "MapIterationSucceeded",
        "MapIterationFailed",
        "MapIterationAborted",
    } == event_types.ITERATION_TYPES


def test_no_module_keeps_a_list_of_event_types_of_its_own() -> None:
    """Groups of event types live in executions/event_types.py alone: a
    tuple, list or set literal naming three or more types anywhere else in
    executions/ is a list that can drift from it."""
    known = set(event_types.EVENT_TYPES)
    found = []
    root = Path(event_types.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts or path.name == "event_types.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = [
                    e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in known
                ]
                if len(names) >= 3:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {names}")
    assert found == []


@pytest.mark.parametrize("event_type", sorted(history.DETAILS_KEY))
def test_every_event_type_has_a_one_line_summary(event_type: str) -> None:
    details = plausible_details(event_type)
    desc = describe(event_type, details)
    line = summary_text(desc)
    assert line or desc.payloads, event_type
    assert "\n" not in line
    assert desc.failed == (event_type in history.FAILURE_TYPES)
    if details and "error" in details:
        assert f"error: Err.{event_type}" in line
        assert f"cause: cause of {event_type}" in line
    if details and "name" in details and not event_type.startswith("Map"):
        assert f"name: State-{event_type}" in line
    for key in ("input", "output", "parameters"):
        if details and key in details:
            assert key in [p.label for p in desc.payloads]
            assert "payload" not in line  # payloads are folded, never in the one-liner


def test_summaries_say_what_an_on_call_engineer_looks_for() -> None:
    def line(event_type: str) -> str:
        return summary_text(describe(event_type, plausible_details(event_type)))

    assert line("ActivityStarted") == "worker: worker-7"
    assert line("TaskScheduled") == (
        "resource: lambda:invoke, region: us-east-1, timeout: 900 s, heartbeat: 30 s"
    )
    assert line("LambdaFunctionScheduled").startswith(
        "resource: arn:aws:lambda:us-east-1:123456789012:function:charge"
    )
    assert line("MapStateStarted") == "items: 12"
    assert line("MapIterationFailed") == "map: EachItem, index: 4"
    assert line("ExecutionRedriven") == "redrive: #2"
    assert line("ActivityScheduled").endswith("timeout: 300 s, heartbeat: 60 s")
    assert "location: Arguments" in line("EvaluationFailed")
    assert line("MapStateSucceeded") == "every iteration succeeded"
    token = describe(
        "TaskScheduled",
        {"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken", "region": "eu-west-1"},
    )
    assert "callback: waits for a task token" in summary_text(token)
    fields = {
        f.label: f.value
        for f in describe("TaskScheduled", plausible_details("TaskScheduled")).fields
    }
    assert fields["task credentials"] == "arn:aws:iam::123456789012:role/task"


def test_long_causes_are_cut_in_the_summary_but_kept_in_full_for_the_text_export() -> None:
    cause = "x" * 1000
    desc = describe("TaskFailed", {"error": "E", "cause": cause})
    assert len(summary_text(desc)) < 300
    assert summary_text(desc, cause_chars=None).endswith(cause)


def test_an_unknown_future_event_type_still_describes_itself() -> None:
    desc = describe("QuantumStateCollapsed", {"observer": "cat", "alive": True, "input": "{}"})
    assert {f.label: f.value for f in desc.fields} == {"observer": "cat", "alive": "yes"}
    assert [p.label for p in desc.payloads] == ["input"]
    assert history.details_key_for("QuantumStateCollapsed") == "quantumStateCollapsedEventDetails"
    bare = describe("QuantumStateCollapsed", None)
    assert summary_text(bare) == "quantum state collapsed"
    assert history.details_line("QuantumStateCollapsed", {"observer": "cat"}) == "observer: cat"


def test_control_characters_cannot_break_a_line() -> None:
    assert one_line("a\nb\r\tc\x00") == "a\\nb\\r\\tc\\u0000"
    line = history.details_line("TaskFailed", {"error": "E", "cause": "line 1\nline 2"})
    assert line == "error: E, cause: line 1\\nline 2"


def test_pretty_indents_json_and_cuts_big_payloads() -> None:
    assert pretty('{"a":[1,2]}') == ('{\n  "a": [\n    1,\n    2\n  ]\n}', False)
    assert pretty("not json {") == ("not json {", False)
    assert pretty('"just a string"') == ('"just a string"', False)
    text, cut = pretty('{"blob": "' + "y" * 300_000 + '"}', 2000)
    assert cut
    assert len(text) == 2000
    assert text.startswith('{\n  "blob": "yyy')


# --- The text format ----------------------------------------------------------------------


def test_a_text_block_is_the_header_then_an_indented_details_line() -> None:
    when = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    assert history.text_block(2, when, "PassStateEntered", {"name": "Validate", "input": "{}"}) == (
        "PassStateEntered [2] @ 2024-05-01T12:00:00.123Z:\n  name: Validate\n"
    )
    # No details, or only a payload: the header alone.
    assert history.text_block(28, when, "LambdaFunctionStarted", None) == (
        "LambdaFunctionStarted [28] @ 2024-05-01T12:00:00.123Z\n"
    )
    assert history.text_block(9, when, "ExecutionSucceeded", {"output": "{}"}) == (
        "ExecutionSucceeded [9] @ 2024-05-01T12:00:00.123Z\n"
    )


def test_timestamps_are_iso_utc_with_milliseconds() -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    assert history.iso_ms(dt.datetime(2024, 5, 1, 14, 0, 0, 5000, tzinfo=berlin)) == (
        "2024-05-01T12:00:00.005Z"
    )
    assert (
        history.iso_ms(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)) == "2024-05-01T12:00:00.000Z"
    )


# --- The timeline on real (moto) histories ---------------------------------------------------


@pytest.mark.django_db
def test_a_map_nests_its_iterations_and_a_parallel_its_branches(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("orders", ORDER_PIPELINE), "o-1", {"items": [1, 2, 3]})
    wait_until_finished(sfn, [arn])
    ex = flows.import_execution(arn)
    _, tl = history.timeline_of(ex, ex.stop_date or T0)

    assert [s.name for s in tl.root.spans] == [
        "Validate",
        "HasItems",
        "EachItem",
        "ShipAndBill",
        "Settle",
        "Done",
    ]
    each = _span(tl.root, "EachItem")
    assert each.length == 3
    assert sorted(lane.index for lane in each.lanes) == [0, 1, 2]
    for lane in each.lanes:
        assert lane.kind == "iteration"
        assert lane.outcome == "succeeded"
        assert [s.name for s in lane.spans] == ["Reserve"]
        assert lane.spans[0].outcome == "succeeded"
    parallel = _span(tl.root, "ShipAndBill")
    # Branches are numbered in the order they started (moto runs them concurrently).
    assert sorted([s.name for s in lane.spans] for lane in parallel.lanes) == [["Bill"], ["Ship"]]
    assert [lane.index for lane in parallel.lanes] == [1, 2]
    bill = next(lane.spans[0] for lane in parallel.lanes if lane.spans[0].name == "Bill")
    assert [(a.kind, a.outcome) for a in bill.attempts] == [("Lambda", "succeeded")]
    assert all(s.outcome == "succeeded" for s in tl.root.spans)
    reserve_event = each.lanes[0].spans[0].event_id
    assert tl.path(reserve_event) == "EachItem \u203a iteration 0 \u203a Reserve"

    rows = [(r.depth, r.kind, r.label) for r in history.layout(tl).rows]
    assert rows[2] == (0, "state", "EachItem")
    assert (1, "iteration", "iteration 2") in rows
    assert rows.count((2, "state", "Reserve")) == 3
    assert (1, "branch", "branch 1") in rows
    assert (2, "state", "Bill") in rows


@pytest.mark.django_db
def test_a_retried_task_shows_both_failed_attempts(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("payments", PAYMENT), "p-1")
    wait_until_finished(sfn, [arn])
    ex = flows.import_execution(arn)
    _, tl = history.timeline_of(ex, ex.stop_date or T0)

    charge = _span(tl.root, "Charge")
    assert [(a.kind, a.outcome) for a in charge.attempts] == [
        ("Task", "failed"),
        ("Task", "failed"),
    ]
    assert charge.attempts[0].error == "DynamoDB.ResourceNotFoundException"
    assert charge.outcome == "caught"  # the Catch moved on to Declined
    assert charge.attempts[0].end is not None
    assert charge.attempts[1].start > charge.attempts[0].end  # the retry interval
    declined = _span(tl.root, "Declined")
    assert declined.outcome == "failed"
    bar = next(r for r in history.layout(tl).rows if r.label == "Charge").bars[0]
    assert [s.cls for s in bar.segments] == ["failed", "failed"]
    assert "2 attempts" in bar.label


# --- The timeline on hand-made histories -----------------------------------------------------

PIPELINE = [
    _ev(1, 0, 0, "ExecutionStarted"),
    _ev(2, 1, 0.1, "MapStateEntered", "Fan"),
    _ev(3, 2, 0.2, "MapStateStarted", number=2),
    _ev(4, 3, 0.3, "MapIterationStarted", "Fan", 0),
    _ev(5, 3, 0.3, "MapIterationStarted", "Fan", 1),
    _ev(6, 4, 0.4, "TaskStateEntered", "Work"),
    _ev(7, 5, 0.4, "TaskStateEntered", "Work"),
    _ev(8, 6, 0.5, "TaskScheduled"),
    _ev(9, 7, 0.5, "TaskScheduled"),
    _ev(10, 8, 0.6, "TaskStarted"),
    _ev(11, 10, 1.0, "TaskSucceeded"),
    _ev(12, 11, 1.1, "TaskStateExited", "Work"),
    _ev(13, 12, 1.2, "MapIterationSucceeded", "Fan", 0),
    _ev(14, 9, 1.5, "TaskFailed", error="Boom"),
    _ev(15, 14, 1.6, "MapIterationFailed", "Fan", 1),
    _ev(16, 15, 1.7, "MapStateFailed"),
    _ev(17, 16, 1.8, "ExecutionFailed", error="Boom"),
]


def test_events_in_any_order_give_the_same_timeline() -> None:
    shuffled = list(PIPELINE)
    random.Random(7).shuffle(shuffled)
    assert _rows(shuffled) == _rows(PIPELINE)
    # Duplicates (a page fetched twice) change nothing either.
    assert _rows(PIPELINE + PIPELINE[3:9]) == _rows(PIPELINE)


def test_a_failure_marks_the_attempt_the_iteration_and_the_map() -> None:
    tl = _build(PIPELINE)
    fan = _span(tl.root, "Fan")
    assert fan.outcome == "failed"
    assert [lane.outcome for lane in fan.lanes] == ["succeeded", "failed"]
    work = fan.iterations[1].spans[0]
    assert work.outcome == "failed"
    assert work.attempts[0].outcome == "failed"
    assert work.error == "Boom"
    assert tl.path(14) == "Fan \u203a iteration 1 \u203a Work"


def test_a_missing_entered_event_gives_a_partial_visit_not_someone_elses() -> None:
    # Iteration 0's TaskStateEntered is lost: its exit cannot close iteration
    # 1's open visit of the same name.
    tl = _build([e for e in PIPELINE if e.event_id != 6])
    orphan = _span(tl.root, "Work")
    assert (orphan.partial, orphan.outcome, orphan.event_id) == (True, "succeeded", 12)
    other = _span(tl.root, "Fan").iterations[1].spans[0]
    assert (other.name, other.outcome, other.error) == ("Work", "failed", "Boom")
    history.layout(tl)


def test_a_missing_iteration_start_leaves_its_states_in_the_outer_lane() -> None:
    tl = _build([e for e in PIPELINE if e.event_id != 4])
    fan = _span(tl.root, "Fan")
    assert [lane.index for lane in fan.lanes] == [1]
    assert [s.name for s in tl.root.spans] == ["Fan", "Work"]
    assert _span(tl.root, "Work").outcome == "succeeded"
    history.layout(tl)


def test_events_pointing_nowhere_are_tolerated() -> None:
    odd = [
        _ev(1, 5, 0, "PassStateEntered", "A"),  # points forward
        _ev(2, 2, 1, "PassStateExited", "A"),  # points at itself
        _ev(3, 999, 2, "TaskStateExited", "Ghost"),  # never entered
        _ev(4, 3, 2, "TaskSucceeded"),  # no task open
    ]
    tl = _build(odd)
    assert _span(tl.root, "A").closed
    assert _span(tl.root, "Ghost").partial
    history.layout(tl)


def test_a_running_execution_keeps_its_open_states_open_until_now() -> None:
    events = [
        _ev(1, 0, 0, "ExecutionStarted"),
        _ev(2, 1, 1, "WaitStateEntered", "Sleep"),
    ]
    tl = _build(events, running=True)
    sleep = _span(tl.root, "Sleep")
    assert sleep.end is None
    assert sleep.outcome == "running"
    assert tl.end == T0 + dt.timedelta(seconds=100)
    (row,) = history.layout(tl).rows
    bar = row.bars[0]
    assert bar.cls == "running"
    assert round(bar.x + bar.w) == 100
    assert bar.label.endswith("so far")


def test_an_abort_closes_what_was_open_as_aborted() -> None:
    events = [
        _ev(1, 0, 0, "ExecutionStarted"),
        _ev(2, 1, 1, "TaskStateEntered", "Call"),
        _ev(3, 2, 1, "ActivityScheduled"),
        _ev(4, 3, 2, "ActivityStarted"),
        _ev(5, 4, 9, "ExecutionAborted", error="Oncall"),
    ]
    call = _span(_build(events).root, "Call")
    assert call.outcome == "aborted"
    assert [(a.kind, a.outcome) for a in call.attempts] == [("Activity", "aborted")]


def test_a_parallel_branch_aborted_by_its_sibling_is_grey_not_red() -> None:
    events = [
        _ev(1, 0, 0, "ExecutionStarted"),
        _ev(2, 1, 0, "ParallelStateEntered", "Both"),
        _ev(3, 2, 0, "ParallelStateStarted"),
        _ev(4, 3, 0, "WaitStateEntered", "Slow"),
        _ev(5, 3, 0, "FailStateEntered", "Oops"),
        _ev(6, 4, 1, "WaitStateAborted"),
        _ev(7, 6, 1, "ParallelStateFailed"),
        _ev(8, 7, 1, "ExecutionFailed", error="Oops"),
    ]
    both = _span(_build(events).root, "Both")
    assert [[(s.name, s.outcome) for s in lane.spans] for lane in both.lanes] == [
        [("Slow", "aborted")],
        [("Oops", "failed")],
    ]
    assert both.outcome == "failed"


def test_a_redrive_starts_again_after_the_failure() -> None:
    events = [
        _ev(1, 0, 0, "ExecutionStarted"),
        _ev(2, 1, 1, "TaskStateEntered", "Call"),
        _ev(3, 2, 1, "LambdaFunctionScheduled"),
        _ev(4, 3, 1, "LambdaFunctionStarted"),
        _ev(5, 4, 2, "LambdaFunctionFailed", error="Boom"),
        _ev(6, 5, 2, "ExecutionFailed", error="Boom"),
        _ev(7, 6, 50, "ExecutionRedriven", number=1),
        _ev(8, 7, 50, "TaskStateEntered", "Call"),
        _ev(9, 8, 50, "LambdaFunctionScheduled"),
        _ev(10, 9, 50, "LambdaFunctionStarted"),
        _ev(11, 10, 51, "LambdaFunctionSucceeded"),
        _ev(12, 11, 51, "TaskStateExited", "Call"),
        _ev(13, 12, 51, "ExecutionSucceeded"),
    ]
    tl = _build(events, end=51)
    assert [(s.name, s.outcome) for s in tl.root.spans] == [
        ("Call", "failed"),
        ("Call", "succeeded"),
    ]
    assert tl.redrives == [(T0 + dt.timedelta(seconds=50), 1, 7)]
    drawing = history.layout(tl)
    assert [m.label for m in drawing.markers] == ["redrive #1 at +50.000 s"]
    (row,) = drawing.rows
    assert [b.cls for b in row.bars] == ["failed", "succeeded"]  # one row, two visits


def test_evaluation_failures_and_unknown_types_are_tolerated() -> None:
    events = [
        _ev(1, 0, 0, "ExecutionStarted"),
        _ev(2, 1, 1, "PassStateEntered", "Shape"),
        _ev(3, 2, 1, "EvaluationFailed", "Shape", error="States.QueryEvaluationError"),
        _ev(4, 3, 2, "QuantumStateCollapsed"),
        _ev(5, 4, 2, "ExecutionFailed"),
    ]
    tl = _build(events)
    shape = _span(tl.root, "Shape")
    assert (shape.outcome, shape.error) == ("failed", "States.QueryEvaluationError")
    assert tl.path(4) == "Shape"


# --- Layout at scale ------------------------------------------------------------------------


def _fan_out(iterations: int, loops: int) -> list[Ev]:
    events = [_ev(1, 0, 0, "ExecutionStarted")]

    def add(prev: int, seconds: float, event_type: str, *args: Any, **kw: Any) -> int:
        events.append(_ev(len(events) + 1, prev, seconds, event_type, *args, **kw))
        return len(events)

    entered = add(1, 0.01, "MapStateEntered", "Fan")
    started = add(entered, 0.02, "MapStateStarted", number=iterations)
    last = started
    for i in range(iterations):
        at = 0.05 + (i // 50) * 2 + (i % 50) * 0.01
        it = add(started, at, "MapIterationStarted", "Fan", i)
        task = add(it, at, "TaskStateEntered", "Work")
        sched = add(task, at, "TaskScheduled")
        fail = i % 500 == 499
        done = add(
            sched, at + 1.5, "TaskFailed" if fail else "TaskSucceeded", error="E" if fail else None
        )
        out = add(done, at + 1.5, "TaskStateExited", "Work")
        last = add(
            out, at + 1.5, "MapIterationFailed" if fail else "MapIterationSucceeded", "Fan", i
        )
    end = (iterations // 50) * 2 + 2.0
    last = add(last, end, "MapStateExited", "Fan")
    for n in range(loops):
        tick = add(last, end + n, "WaitStateEntered", "Tick")
        last = add(tick, end + n + 0.99, "WaitStateExited", "Tick")
        more = add(last, end + n + 0.99, "ChoiceStateEntered", "More")
        last = add(more, end + n + 0.995, "ChoiceStateExited", "More")
    add(last, end + loops, "ExecutionSucceeded")
    return events


def test_thousands_of_iterations_collapse_into_summary_lanes() -> None:
    events = _fan_out(3000, 10)
    drawing = history.layout(_build(events))
    assert drawing.bars <= drawing_mod.MAX_BARS
    assert len(drawing.rows) <= drawing_mod.MAX_ROWS
    labels = [(r.kind, r.label, r.note) for r in drawing.rows]
    groups = [label for label in labels if label[0] == "group"]
    assert len(groups) == drawing_mod.MAX_GROUPS
    assert groups[0][1:] == ("iterations 0\u2013374", "375 succeeded")
    assert groups[1][1:] == ("iterations 375\u2013749", "374 succeeded, 1 failed")
    # The failed iterations are drawn one by one, before the summaries.
    assert [label[1] for label in labels if label[0] == "iteration"] == [
        "iteration 499",
        "iteration 999",
        "iteration 1499",
        "iteration 1999",
        "iteration 2499",
    ]
    summaries = [r for r in drawing.rows if r.kind == "group"]
    assert {b.cls for b in summaries[0].bars} == {"cluster"}
    assert "cluster-failed" in {b.cls for b in summaries[1].bars}


def test_bars_thinner_than_a_pixel_merge_into_clusters() -> None:
    events = _fan_out(2, 2000)  # a loop visiting Tick and More 2000 times each
    drawing = history.layout(_build(events))
    tick = next(r for r in drawing.rows if r.label == "Tick")
    assert tick.note == "\u00d72000"
    assert len(tick.bars) < 50
    assert (
        sum(int(b.label.lstrip("\u00d7").split(",")[0]) for b in tick.bars if b.cls == "cluster")
        > 1900
    )
    assert drawing.merged >= 3900


def test_twenty_five_thousand_events_build_in_one_pass() -> None:
    events = _fan_out(3500, 1)
    assert len(events) > 21_000
    tl = _build(events)
    assert tl.events == len(events)
    assert tl.spans == 3500 + 1 + 2
    assert len(tl.span_of) > 20_000
    history.layout(tl)


def test_time_labels() -> None:
    assert history.offset_label(12.3456) == "+12.346 s"
    assert history.offset_label(245.5) == "+4:05.500"
    assert history.offset_label(3 * 3600 + 62.25) == "+3:01:02.250"
    assert history.short_duration(0.0004) == "<1 ms"
    assert history.short_duration(0.25) == "250 ms"
    assert history.short_duration(1.5) == "1.50 s"
    assert history.short_duration(3725) == "1 h 2 m"
    ticks = drawing_mod.ticks(600)
    assert [t.label for t in ticks] == ["0", "+2 m", "+4 m", "+6 m", "+8 m", "+10 m"]
    assert ticks[-1].x == 100.0


def test_an_execution_with_no_events_has_an_empty_timeline() -> None:
    tl = _build([])
    assert tl.spans == 0
    assert history.layout(tl).rows == []


def test_the_text_export_reads_every_type() -> None:
    for event_type in history.DETAILS_KEY:
        block = history.text_block(1, T0, event_type, plausible_details(event_type))
        head, _, rest = block.partition("\n")
        assert head.startswith(f"{event_type} [1] @ 2024-05-01T12:00:00.000Z")
        if head.endswith(":"):
            assert rest.startswith("  ")
            assert rest.count("\n") == 1
        else:
            assert rest == ""
