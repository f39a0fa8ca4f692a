"""executions/graph.py: the layered layout of a definition and its SVG, and
reads/compare.run_of painting real histories (moto in execute mode) on it."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from executions import graph
from executions.reads import compare, versions
from executions.sync import flows
from tests.support.helpers import FAIL, ORDER_PIPELINE, PAYMENT, wait_until_finished

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "</svg><script>alert(1)</script>\"'&<b>"

EVERY_EDGE = {
    "StartAt": "Fetch",
    "States": {
        "Fetch": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Retry": [
                {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 2},
                {"ErrorEquals": ["X"]},
            ],
            "Catch": [{"ErrorEquals": ["Oops", "States.Timeout"], "Next": "Broken"}],
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.kind", "StringEquals": "many", "Next": "Each"},
                {
                    "And": [
                        {"Variable": "$.a", "IsPresent": True},
                        {"Variable": "$.b", "IsNull": False},
                    ],
                    "Next": "Both",
                },
            ],
            "Default": "Later",
        },
        "Later": {"Type": "Wait", "Seconds": 5, "Next": "Fetch"},
        "Each": {
            "Type": "Map",
            "ItemProcessor": {
                "StartAt": "One",
                "States": {
                    "One": {"Type": "Pass", "Next": "Two"},
                    "Two": {"Type": "Pass", "End": True},
                },
            },
            "Next": "Done",
        },
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                {"StartAt": "Right", "States": {"Right": {"Type": "Succeed"}}},
            ],
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
        "Broken": {"Type": "Fail", "Error": "E"},
    },
}


def chain(n: int, *, branchy: bool = True) -> dict[str, Any]:
    """n states: a chain with Choices that skip ahead and Catches that jump
    back (loops), as a large real definition has."""
    states: dict[str, Any] = {}
    for i in range(n):
        name = f"Step {i:03d}"
        last = i == n - 1
        state: dict[str, Any] = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke"}
        if branchy and i % 9 == 4 and not last:
            state = {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.go",
                        "BooleanEquals": True,
                        "Next": f"Step {min(n - 1, i + 3):03d}",
                    }
                ],
                "Default": f"Step {i + 1:03d}",
            }
        elif last:
            state["End"] = True
        else:
            state["Next"] = f"Step {i + 1:03d}"
        if branchy and i % 11 == 7:
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": f"Step {max(0, i - 5):03d}"}]
        states[name] = state
    return {"StartAt": "Step 000", "States": states}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, under test


def boxes_overlap(a: graph.Shape, b: graph.Shape) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


# --- Layout ---------------------------------------------------------------------------------


def test_the_same_definition_always_gives_the_same_svg() -> None:
    text = json.dumps(EVERY_EDGE)
    first = graph.render(graph.layout(text))
    graph.layout.cache_clear()
    assert graph.render(graph.layout(text)) == first
    # The same states written in another key order: another text, still drawn.
    other = json.dumps(EVERY_EDGE, sort_keys=True)
    assert graph.layout(other).states == graph.layout(text).states


def test_every_kind_of_edge_is_drawn_with_its_label() -> None:
    drawn = graph.layout(json.dumps(EVERY_EDGE))
    kinds = {(line.src, line.dst): line for line in drawn.lines}
    assert kinds[("", "Fetch")].kind == "start"
    assert kinds[("Fetch", "Route")].kind == "next"
    assert kinds[("Route", "Each")].kind == "choice"
    assert kinds[("Route", "Each")].label == "$.kind StringEquals many"
    assert kinds[("Route", "Both")].label == "And (2 rules)"
    assert kinds[("Route", "Later")].kind == "default"
    assert kinds[("Route", "Later")].label == "Default"
    assert kinds[("Fetch", "Broken")].kind == "catch"
    assert kinds[("Fetch", "Broken")].label == "Oops, States.Timeout"
    assert kinds[("Done", "")].kind == "end"
    assert kinds[("Broken", "")].kind == "end"
    # The loop back from Later to Fetch is drawn upwards, into Fetch.
    back = kinds[("Later", "Fetch")]
    fetch = next(s for s in drawn.shapes if s.name == "Fetch")
    assert back.points[0][1] > back.points[-1][1]
    assert back.points[-1][1] == pytest.approx(fetch.y + fetch.h)
    svg = graph.render(drawn)
    assert 'class="edge k-catch"' in svg
    assert 'class="edge k-default"' in svg
    assert 'class="edge k-choice"' in svg
    assert ">Oops, States.Timeout<" in svg
    # Retry: a loop marker with the attempts its rules allow (2 + the default 3).
    assert next(s for s in drawn.shapes if s.name == "Fetch").retries == 5
    assert "\u21bb5" in svg


def test_map_and_parallel_are_boxes_with_their_states_inside() -> None:
    drawn = graph.layout(json.dumps(EVERY_EDGE))
    shape = {s.name: s for s in drawn.shapes if s.kind in ("state", "box")}
    assert shape["Each"].kind == "box"
    assert shape["Both"].kind == "box"
    for outer, inner in (("Each", "One"), ("Each", "Two"), ("Both", "Left"), ("Both", "Right")):
        o, i = shape[outer], shape[inner]
        assert o.x < i.x < i.x + i.w < o.x + o.w, (outer, inner)
        assert o.y < i.y < i.y + i.h < o.y + o.h, (outer, inner)
        assert i.depth == o.depth + 1
    branches = [s for s in drawn.shapes if s.kind == "branch"]
    assert len(branches) == 2
    assert not boxes_overlap(branches[0], branches[1])
    # Each nested machine has its own Start and End.
    assert sum(1 for s in drawn.shapes if s.kind == "start") == 4
    # Inner edges stay inside their box.
    one_two = next(line for line in drawn.lines if (line.src, line.dst) == ("One", "Two"))
    each = shape["Each"]
    assert all(each.x <= x <= each.x + each.w for x, _ in one_two.points)


def test_a_hundred_states_are_laid_out_without_overlap_and_in_rank_order() -> None:
    definition = chain(100)
    drawn = graph.layout(json.dumps(definition))
    assert drawn.problem == ""
    states = [s for s in drawn.shapes if s.kind == "state"]
    assert len(states) == 100 == drawn.states
    for i, a in enumerate(states):
        for b in states[i + 1 :]:
            assert not boxes_overlap(a, b), (a.name, b.name)
    # A forward Next always goes down the page.
    y = {s.name: s.y for s in states}
    for name, state in definition["States"].items():
        if "Next" in state:
            assert y[state["Next"]] > y[name]
    svg = graph.render(drawn)
    root = parse(svg)
    assert root.get("viewBox") == f"0 0 {drawn.width:g} {drawn.height:g}".replace(".0 ", " ")
    assert len(root.findall(f".//{SVG}g[@class='node t-Task']")) > 80


def test_long_names_are_cut_with_the_whole_name_in_the_title() -> None:
    long = "A" * 20 + "-very-long-state-name-that-does-not-fit-in-a-box"
    drawn = graph.layout(
        json.dumps({"StartAt": long, "States": {long: {"Type": "Pass", "End": True}}})
    )
    root = parse(graph.render(drawn))
    node = root.find(f".//{SVG}g[@class='node t-Pass']")
    assert node is not None
    text = node.find(f"{SVG}text")
    title = node.find(f"{SVG}title")
    assert text is not None
    assert title is not None
    assert text.text
    assert text.text.endswith("\u2026")
    assert len(text.text) < len(long)
    assert title.text
    assert long in title.text


def test_hostile_names_labels_and_types_are_escaped() -> None:
    definition = {
        "StartAt": HOSTILE,
        "States": {
            HOSTILE: {
                "Type": "Choice",
                "Choices": [{"Variable": HOSTILE, "StringEquals": HOSTILE, "Next": "x" + HOSTILE}],
                "Default": "x" + HOSTILE,
            },
            "x" + HOSTILE: {
                "Type": 'Task" onload="alert(1)',
                "Catch": [{"ErrorEquals": [HOSTILE], "Next": HOSTILE}],
                "End": True,
            },
        },
    }
    drawn = graph.layout(json.dumps(definition))
    facts = {HOSTILE: graph.StateFacts(1, graph.FAILED, 3, 1.0)}
    svg = graph.render(
        drawn,
        graph.Paint(facts, frozenset({("", HOSTILE)}), {HOSTILE: '/h?a=1&b="2"'}),
        label=HOSTILE,
    )
    root = parse(svg)  # well-formed: nothing broke out of its element
    assert "<script" not in svg
    assert 'onload="' not in svg
    assert root.tag == f"{SVG}svg"
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(HOSTILE in t for t in titles)
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert links == ['/h?a=1&b="2"']
    classes = " ".join(e.get("class") or "" for e in root.iter())
    assert "onload" not in classes.replace("t-Taskonloadalert1", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '{"StartAt": "A"}',
        '{"StartAt": "A", "States": []}',
        '{"StartAt": "Nowhere", "States": {"A": {"Type": "Pass", "Next": "Missing"}}}',
        '{"StartAt": "A", "States": {"A": {"Type": "Map", "Iterator": 5, "Next": "A"}}}',
        '{"StartAt": "A", "States": {"A": {"Type": "Parallel", "Branches": [1, {"States": 2}]}}}',
        '{"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": "x", "Default": 3}}}',
        '{"StartAt": "A", "States": {"A": {"Type": "Task", "Retry": [{"MaxAttempts": "x"}], '
        '"Catch": [{"Next": "A"}], "Next": "A"}}}',
    ],
)
def test_a_broken_definition_is_drawn_as_far_as_it_goes_or_says_why(text: str) -> None:
    drawn = graph.layout(text)
    if drawn.problem:
        assert drawn.shapes == ()
        assert graph.render(drawn) == ""
    else:
        parse(graph.render(drawn))


def test_a_definition_too_large_or_too_deep_says_so() -> None:
    huge = chain(graph.MAX_STATES + 1, branchy=False)
    assert "more than" in graph.layout(json.dumps(huge)).problem
    deep: dict[str, Any] = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    for _ in range(graph.MAX_DEPTH + 3):
        deep = {
            "StartAt": "P",
            "States": {"P": {"Type": "Parallel", "Branches": [deep], "End": True}},
        }
    drawn = graph.layout(json.dumps(deep))
    assert drawn.problem == ""
    assert any(s.closed for s in drawn.shapes)
    assert max(s.depth for s in drawn.shapes) <= graph.MAX_DEPTH


# --- Painting a real run ---------------------------------------------------------------------


def _run(arn: str) -> compare.Run:
    return compare.run_of(flows.import_execution(arn), timezone.now())


def _classes(svg: str, name: str) -> str:
    root = parse(svg)
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if title is not None and (title.text or "").startswith(f"{name} ("):
            return g.get("class") or ""
    raise AssertionError(f"no node {name}")


@pytest.mark.django_db
def test_a_succeeded_run_paints_its_path_and_leaves_the_rest_unreached(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("orders", ORDER_PIPELINE), "o-1", {"items": [1, 2]})
    wait_until_finished(sfn, [arn])
    run = _run(arn)
    assert [s.name for s in run.path] == [
        "Validate",
        "HasItems",
        "EachItem",
        "ShipAndBill",
        "Settle",
        "Done",
    ]
    assert run.states["Reserve"].visits == 2  # one per item
    assert run.states["Settle"].seconds >= 0.9
    assert "Rejected" not in run.states
    assert {("", "Validate"), ("HasItems", "EachItem"), ("", "Reserve"), ("Done", "")} <= run.edges
    assert ("HasItems", "Rejected") not in run.edges
    definition, _ = versions.definition_of(run.execution)
    svg = graph.render(graph.layout(definition), run.paint(lambda i: f"/h?event={i}#event-{i}"))
    assert "visited o-succeeded" in _classes(svg, "Validate")
    assert "unreached" in _classes(svg, "Rejected")
    assert "box" in _classes(svg, "EachItem")
    # Each visited state links to its first entered event.
    first = run.states["HasItems"].first_event_id
    assert f'href="/h?event={first}#event-{first}"' in svg
    root = parse(svg)
    taken = [p for p in root.iter(f"{SVG}path") if "taken" in (p.get("class") or "").split()]
    assert len(taken) >= 8


@pytest.mark.django_db
def test_a_failed_run_shows_where_it_failed_and_the_catch_it_took(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("payments", PAYMENT), "p-1")
    wait_until_finished(sfn, [arn])
    run = _run(arn)
    assert run.states["Charge"].outcome == graph.CAUGHT
    assert run.states["Declined"].outcome == graph.FAILED
    assert ("Charge", "Declined") in run.edges
    assert "Paid" not in run.states
    definition, _ = versions.definition_of(run.execution)
    svg = graph.render(graph.layout(definition), run.paint(str))
    assert "o-caught" in _classes(svg, "Charge")
    assert "o-failed" in _classes(svg, "Declined")
    assert "unreached" in _classes(svg, "Paid")
    catch = re.search(r'<path class="edge k-catch taken"', svg)
    assert catch is not None


@pytest.mark.django_db
def test_a_fail_state_run(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("fails", FAIL), "f-1")
    wait_until_finished(sfn, [arn])
    run = _run(arn)
    assert [(s.name, s.outcome) for s in run.path] == [
        ("Check", graph.SUCCEEDED),
        ("Boom", graph.FAILED),
    ]
    assert ("Boom", "") in run.edges


def test_edges_to_one_state_share_a_trunk_lit_only_below_a_taken_edge_s_join() -> None:
    # Three Tasks, each caught to one Fail state at the bottom.
    states: dict[str, Any] = {}
    for i in range(6):
        state: dict[str, Any] = {"Type": "Task", "Resource": "x", "Next": f"T{i + 1}"}
        if i in (0, 2, 4):
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Broken"}]
        states[f"T{i}"] = state
    states["T6"] = {"Type": "Pass", "Next": "Broken"}
    states["Broken"] = {"Type": "Fail"}
    drawn = graph.layout(json.dumps({"StartAt": "T0", "States": states}))
    pieces = [line for line in drawn.lines if line.sources]
    own = {line.src: line for line in drawn.lines if line.kind == "catch" and not line.sources}
    assert len(pieces) == 3
    assert [p.sources for p in pieces] == [("T0",), ("T0", "T2"), ("T0", "T2", "T4")]
    assert [p.arrow for p in pieces] == [False, False, True]
    assert not any(own[s].arrow for s in ("T0", "T2", "T4"))
    # Each own piece ends where its trunk piece begins.
    for piece, source in zip(pieces, ("T0", "T2", "T4"), strict=True):
        assert own[source].points[-1] == piece.points[0]
    svg = graph.render(
        drawn,
        graph.Paint(
            {f"T{i}": graph.StateFacts(1, graph.SUCCEEDED) for i in range(3)},
            frozenset({("", "T0"), ("T0", "T1"), ("T1", "T2"), ("T2", "Broken")}),
        ),
    )
    paths = [p for p in parse(svg).iter(f"{SVG}path") if "k-catch" in (p.get("class") or "")]
    taken = ["taken" in (p.get("class") or "").split() for p in paths]
    # T0's own piece: not taken; T2's: taken; T4's: not; the trunk below T2's join only.
    assert taken.count(True) == 3
    assert len(svg) < 20_000
