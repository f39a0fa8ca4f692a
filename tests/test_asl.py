"""executions/asl.py: the little of the Amazon States Language the dashboard
reads (definitions, reference paths, timestamps, Retry rules)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from executions import asl


@pytest.mark.parametrize(
    ("error_equals", "error", "matches"),
    [
        (["States.ALL"], "anything", True),
        (["States.TaskFailed"], "Lambda.Unknown", True),
        (["States.TaskFailed"], "States.Timeout", False),
        (["States.TaskFailed"], "States.HeartbeatTimeout", False),
        (["States.Timeout"], "States.HeartbeatTimeout", True),
        (["States.Timeout"], "States.Timeout", True),
        (["A", "B"], "B", True),
        (["A"], "a", False),
    ],
)
def test_retry_rules_match_errors_as_step_functions_does(
    error_equals: list[str], error: str, matches: bool
) -> None:
    assert asl.rule_matches(error_equals, error) is matches


def test_the_delay_grows_by_the_backoff_rate_up_to_max_delay() -> None:
    rule = {"IntervalSeconds": 3, "BackoffRate": 2.0, "MaxDelaySeconds": 20}
    assert [asl.retry_delay(rule, n) for n in (1, 2, 3, 4, 5)] == [3, 6, 12, 20, 20]
    # Defaults: 1 s, doubling.
    assert [asl.retry_delay({}, n) for n in (1, 2, 3)] == [1, 2, 4]


def test_states_nested_in_parallel_branches_are_found_in_the_definition() -> None:
    definition = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Ship",
                        "States": {"Ship": {"Type": "Wait", "Seconds": 30, "End": True}},
                    },
                    {
                        "StartAt": "Inner",
                        "States": {
                            "Inner": {
                                "Type": "Map",
                                "Iterator": {
                                    "StartAt": "Deep",
                                    "States": {
                                        "Deep": {
                                            "Type": "Task",
                                            "Resource": "x",
                                            "HeartbeatSeconds": 9,
                                            "End": True,
                                        }
                                    },
                                },
                                "End": True,
                            }
                        },
                    },
                ],
                "End": True,
            }
        },
    }
    index = asl.state_index(json.dumps(definition))
    assert set(index) == {"Both", "Ship", "Inner", "Deep"}
    assert index["Deep"]["HeartbeatSeconds"] == 9
    assert asl.nested_states(json.dumps(definition)) == {"Ship", "Inner", "Deep"}


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("$", {"a": 1}, (True, {"a": 1})),
        ("$.a.b", {"a": {"b": 5}}, (True, 5)),
        ("$.items[1]", {"items": [1, 2]}, (True, 2)),
        ("$['with space'].x", {"with space": {"x": "y"}}, (True, "y")),
        ('$["q"]', {"q": None}, (True, None)),
        ("$.missing", {"a": 1}, (False, None)),
        ("$.items[5]", {"items": [1]}, (False, None)),
        ("$$.Execution.Id", {}, (False, None)),  # the context object is not in the input
        ("a.b", {"a": {"b": 1}}, (False, None)),
        ("$.a..b", {"a": {"b": 1}}, (False, None)),
    ],
)
def test_reference_paths(path: str, document: Any, expected: tuple[bool, Any]) -> None:
    assert asl.resolve_path(path, document) == expected


def test_timestamps_need_their_zone() -> None:
    assert asl.parse_timestamp("2026-11-26T18:00:00Z") == dt.datetime(
        2026, 11, 26, 18, tzinfo=dt.UTC
    )
    assert asl.parse_timestamp("2026-11-26T19:00:00+01:00") == dt.datetime(
        2026, 11, 26, 18, tzinfo=dt.UTC
    )
    assert asl.parse_timestamp("2026-11-26T18:00:00") is None
    assert asl.parse_timestamp("soon") is None
    assert asl.parse_timestamp(1764180000) is None


def test_a_definition_that_is_not_json_has_no_states() -> None:
    assert asl.parsed("{nope") is None
    assert asl.parsed("[1, 2]") is None
    assert asl.state_index("{nope") == {}
    assert asl.state_index('{"States": {"A": "not a state", "B": {"Type": "Pass"}}}') == {
        "B": {"Type": "Pass"}
    }
