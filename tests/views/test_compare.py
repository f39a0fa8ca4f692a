"""/executions/compare/?a=&b=: two runs of one state machine side by side, and the
reads behind it (reads/compare.py: the payload diff, where paths part)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from executions import graph
from executions.models import Execution
from executions.reads import compare
from executions.sync import flows
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import ORDER_PIPELINE, wait_until_finished

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
HOSTILE = '<script>alert("x")</script>'


def url(a: str | None = None, b: str | None = None, **extra: str) -> str:
    params = {k: v for k, v in (("a", a), ("b", b)) if v is not None} | extra
    return "/executions/compare/?" + urlencode(params)


# --- The payload diff ------------------------------------------------------------------------


def test_a_json_diff_names_each_change_by_path() -> None:
    a = {"order": {"id": 1, "items": [1, 2, 3], "gone": True}, "same": "x", "odd key": 1}
    b = {"order": {"id": 2, "items": [1, 5], "new": None}, "same": "x", "odd key": "1"}
    d = compare.diff(json.dumps(a), json.dumps(b))
    assert d.json
    assert not d.identical
    found = {(c.path, c.kind, c.a, c.b) for c in d.changes}
    assert found == {
        ("$.order.id", "changed", "1", "2"),
        ("$.order.items[1]", "changed", "2", "5"),
        ("$.order.items[2]", "removed", "3", ""),
        ("$.order.gone", "removed", "true", ""),
        ("$.order.new", "added", "", "null"),
        ('$["odd key"]', "changed", "1", '"1"'),
    }
    assert d.counted == 6
    assert d.hidden == 0


def test_types_that_compare_equal_in_python_are_still_a_change() -> None:
    d = compare.diff('{"a": 1, "b": true, "c": 1.0}', '{"a": true, "b": 1, "c": 1}')
    assert {c.path for c in d.changes} == {"$.a", "$.b", "$.c"}


def test_the_same_json_written_differently_is_identical() -> None:
    d = compare.diff('{"a": 1, "b": [1, 2]}', '{ "b": [1,2], "a": 1 }')
    assert d.identical
    assert "written differently" in d.note
    assert compare.diff("{}", "{}").identical


def test_text_that_is_not_json_is_diffed_by_line() -> None:
    d = compare.diff("one\ntwo\nthree", "one\n2\nthree")
    assert not d.json
    assert "-two" in d.lines
    assert "+2" in d.lines
    assert "as text" in d.note


def test_a_missing_payload_says_which() -> None:
    d = compare.diff(None, "{}")
    assert not d.identical
    assert d.note.startswith("A has none")
    assert compare.diff(None, None).identical


def test_large_payloads_give_a_bounded_diff_that_says_so() -> None:
    # Two 256 KiB payloads that differ everywhere.
    a = json.dumps({f"k{i:05d}": "a" * 20 for i in range(9000)})
    b = json.dumps({f"k{i:05d}": "b" * 20 for i in range(9000)})
    assert len(a) > 256 * 1024
    d = compare.diff(a, b)
    assert d.counted == 9000
    assert len(d.changes) == compare.MAX_CHANGES
    assert d.truncated
    assert d.hidden == 9000 - compare.MAX_CHANGES
    long_value = json.dumps({"v": "x" * 100_000})
    d = compare.diff(long_value, json.dumps({"v": "y"}))
    assert len(d.changes[0].a) == compare.VALUE_CHARS
    text_a = "\n".join(f"line {i}" for i in range(20_000))
    text_b = "\n".join(f"LINE {i}" for i in range(20_000))
    d = compare.diff(text_a, text_b)
    assert len(d.lines) == compare.MAX_DIFF_LINES
    assert d.truncated


# --- Where paths part ------------------------------------------------------------------------


def steps(*names: str, outcome: str = graph.SUCCEEDED) -> list[compare.Step]:
    return [compare.Step(n, outcome, i + 2, 1.0) for i, n in enumerate(names)]


def test_divergence_by_state_outcome_and_length() -> None:
    same = steps("A", "B", "C")
    assert compare.divergence(same, steps("A", "B", "C")) is None
    d = compare.divergence(same, steps("A", "X", "C"))
    assert d is not None
    assert (d.kind, d.index, d.after, d.a and d.a.name, d.b and d.b.name) == (
        "state",
        1,
        "A",
        "B",
        "X",
    )
    d = compare.divergence(steps("A"), steps("B"))
    assert d is not None
    assert (d.kind, d.after) == ("state", "")
    failed = [*steps("A", "B"), compare.Step("C", graph.FAILED, 9, 1.0)]
    d = compare.divergence(same, failed)
    assert d is not None
    assert (d.kind, d.index) == ("outcome", 2)
    d = compare.divergence(same, steps("A"))
    assert d is not None
    assert (d.kind, d.index, d.after, d.b) == ("length", 1, "A", None)
    assert d.a is not None
    assert d.a.name == "B"


# --- The page --------------------------------------------------------------------------------


def _pair(
    a_input: str = '{"order": 1}', b_input: str = '{"order": 2}'
) -> tuple[Execution, Execution]:
    sm = state_machine_row("pipeline", definition=json.dumps(ORDER_PIPELINE))
    a = execution_row(sm, name="a-1", status="SUCCEEDED", started=T0, input=a_input)
    b = execution_row(sm, name="b-1", status="FAILED", started=T0, input=b_input)
    return a, b


@pytest.mark.django_db
def test_it_needs_a_sign_in(client: Any) -> None:
    a, b = _pair()
    response = client.get(url(a.arn, b.arn))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", b"a=: This field is required."),
        ("a=", b"a=: This field is required."),
        ("a=not-an-arn", b"is not a Step Functions execution ARN"),
        ("a=" + "x" * 3000, b"at most 2048 characters"),
    ],
)
def test_bad_queries_are_a_400_that_says_why(viewer_client: Any, query: str, says: bytes) -> None:
    response = viewer_client.get("/executions/compare/?" + query)
    assert response.status_code == 400
    assert says in response.content


@pytest.mark.django_db
def test_a_bad_b_is_a_400_and_hostile_values_are_escaped(viewer_client: Any) -> None:
    a, _ = _pair()
    response = viewer_client.get(url(a.arn, HOSTILE))
    assert response.status_code == 400
    assert b"<script>alert" not in response.content
    assert b"b=" in response.content


@pytest.mark.django_db
def test_unknown_executions_are_a_404(viewer_client: Any) -> None:
    a, _ = _pair()
    unknown = "arn:aws:states:us-east-1:123456789012:execution:pipeline:nope"
    response = viewer_client.get(url(a.arn, unknown))
    assert response.status_code == 404
    assert b"has not been synced" in response.content
    assert viewer_client.get(url(unknown, a.arn)).status_code == 404


@pytest.mark.django_db
def test_the_same_execution_twice_is_a_400(viewer_client: Any) -> None:
    a, _ = _pair()
    response = viewer_client.get(url(a.arn, a.arn))
    assert response.status_code == 400
    assert b"the same execution" in response.content


@pytest.mark.django_db
def test_two_state_machines_are_a_400(viewer_client: Any) -> None:
    a, _ = _pair()
    other = execution_row(state_machine_row("other"), name="o-1")
    response = viewer_client.get(url(a.arn, other.arn))
    assert response.status_code == 400
    assert b"only two executions of one state machine can be compared" in response.content


@pytest.mark.django_db
def test_post_is_refused(viewer_client: Any) -> None:
    a, b = _pair()
    assert viewer_client.post(url(a.arn, b.arn)).status_code == 405


@pytest.mark.django_db
def test_a_alone_offers_recent_runs_of_the_same_state_machine(viewer_client: Any) -> None:
    a, b = _pair()
    execution_row(state_machine_row("other"), name="elsewhere")
    html = viewer_client.get(url(a.arn, tz="Europe/Berlin")).content.decode()
    assert 'Compare <span class="exec-name">a-1</span> with' in html
    assert "b-1" in html
    assert "elsewhere" not in html
    link = (
        f"/executions/compare/?a={quote(a.arn, safe='')}&amp;b={quote(b.arn, safe='')}"
        "&amp;tz=Europe%2FBerlin"
    )
    assert link in html


@pytest.mark.django_db
def test_the_pick_list_filters_by_status(viewer_client: Any) -> None:
    a, _ = _pair()
    sm = a.state_machine
    execution_row(sm, name="c-running", status="RUNNING")
    html = viewer_client.get(url(a.arn, status="FAILED")).content.decode()
    assert "b-1" in html
    assert "c-running" not in html
    html = viewer_client.get(url(a.arn)).content.decode()
    assert "c-running" in html
    assert f"/executions/compare/?a={quote(a.arn, safe='')}&amp;status=RUNNING" in html
    response = viewer_client.get(url(a.arn, status="BROKEN"))
    assert response.status_code == 400
    assert b"status=" in response.content


@pytest.mark.django_db
def test_the_page_shows_the_divergence_times_and_diffs(viewer_client: Any) -> None:
    a, b = _pair()
    base: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
        ("PassStateEntered", "stateEnteredEventDetails", {"name": "Validate"}),
        ("PassStateExited", "stateExitedEventDetails", {"name": "Validate"}),
        ("ChoiceStateEntered", "stateEnteredEventDetails", {"name": "HasItems"}),
        ("ChoiceStateExited", "stateExitedEventDetails", {"name": "HasItems"}),
    ]
    events(a, [*base, ("WaitStateEntered", "stateEnteredEventDetails", {"name": "Settle"})])
    events(
        b,
        [*base, ("FailStateEntered", "stateEnteredEventDetails", {"name": "Rejected"})],
        step=2.0,
    )
    html = viewer_client.get(url(a.arn, b.arn, tz="Europe/Berlin")).content.decode()
    assert "First divergence:" in html
    assert "after <strong>HasItems</strong> (step 2), A went to" in html
    assert f"/executions/{a.arn}/history/?event=6&amp;tz=Europe%2FBerlin#event-6" in html
    assert "<strong>Rejected</strong>" in html
    assert html.count("<svg") == 2
    # Time in each state: B spent 2 s in Validate, A 1 s.
    assert '<td class="num slower">+1 s</td>' in html
    # The inputs differ at $.order.
    assert '<td class="path">$.order</td><td class="what">changed</td>' in html
    assert "1 difference</strong>" in html


@pytest.mark.django_db
def test_hostile_state_names_are_escaped(viewer_client: Any) -> None:
    a, b = _pair()
    for ex, state in ((a, HOSTILE), (b, HOSTILE + "2")):
        events(
            ex,
            [
                ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
                ("PassStateEntered", "stateEnteredEventDetails", {"name": state}),
            ],
        )
    response = viewer_client.get(url(a.arn, b.arn))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert" not in html
    assert "at the start, A went to" in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;2" in html


@pytest.mark.django_db
def test_large_payloads_keep_the_page_small(viewer_client: Any) -> None:
    a_input = json.dumps({f"k{i:05d}": "a" * 20 for i in range(9000)})
    b_input = json.dumps({f"k{i:05d}": "b" * 20 for i in range(9000)})
    a, b = _pair(a_input, b_input)
    response = viewer_client.get(url(a.arn, b.arn))
    assert response.status_code == 200
    html = response.content.decode()
    assert "9000 differences</strong>" in html
    assert f"{9000 - compare.MAX_CHANGES} more are not shown" in html
    assert len(response.content) < 200 * 1024


@pytest.mark.django_db
def test_two_real_runs_part_at_the_choice(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    sm = make_state_machine("orders", ORDER_PIPELINE)
    ok = start(sm, "with-items", {"items": [1, 2]})
    empty = start(sm, "empty", {"items": []})
    wait_until_finished(sfn, [ok, empty])
    flows.import_execution(ok)
    flows.import_execution(empty)
    html = viewer_client.get(url(empty, ok)).content.decode()
    assert "after <strong>HasItems</strong> (step 2), A went to" in html
    assert "<strong>Rejected</strong>" in html
    assert "<strong>EachItem</strong>" in html
    assert '<td class="path">$.items[0]</td><td class="what">added</td>' in html
    result = compare.compare(
        Execution.objects.get(arn=empty), Execution.objects.get(arn=ok), dt.datetime.now(dt.UTC)
    )
    assert {t.name for t in result.times if t.a is None} >= {"EachItem", "Reserve", "Done"}


def test_the_first_address_still_opens_the_comparison(viewer_client: Any) -> None:
    response = viewer_client.get("/compare/?a=x&b=y&tz=UTC")
    assert response.status_code == 301
    assert response["Location"] == "/executions/compare/?a=x&b=y&tz=UTC"
    assert viewer_client.post("/compare/").status_code == 405
