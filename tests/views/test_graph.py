"""/executions/<arn>/graph/: the graph of a run, full size, and the card the
detail page loads (?part=card)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from executions.models import Definition, Execution
from executions.sync import flows
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, PAYMENT, wait_until_finished

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
HOSTILE = '<script>alert("x")</script>&'
TWO_STEPS = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Next": "Second"},
        "Second": {"Type": "Pass", "End": True},
        "Spare": {"Type": "Pass", "End": True},
    },
}


def url(ex: Execution | str, query: str = "") -> str:
    arn = ex if isinstance(ex, str) else ex.arn
    return f"/executions/{arn}/graph/" + (f"?{query}" if query else "")


def _row(definition: dict[str, Any] | str = TWO_STEPS, status: str = "SUCCEEDED") -> Execution:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    sm = state_machine_row("graphs", definition=text)
    ex = execution_row(sm, name="g-1", status=status, started=T0)
    items: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
        ("PassStateEntered", "stateEnteredEventDetails", {"name": "First", "input": "{}"}),
        ("PassStateExited", "stateExitedEventDetails", {"name": "First", "output": "{}"}),
        ("PassStateEntered", "stateEnteredEventDetails", {"name": "Second", "input": "{}"}),
    ]
    if status == "SUCCEEDED":
        items += [
            ("PassStateExited", "stateExitedEventDetails", {"name": "Second", "output": "{}"}),
            ("ExecutionSucceeded", "executionSucceededEventDetails", {"output": "{}"}),
        ]
    events(ex, items)
    return ex


def _svg(html: str) -> ET.Element:
    start = html.index("<svg")
    end = html.index("</svg>", start) + len("</svg>")
    return ET.fromstring(html[start:end])  # noqa: S314 - our own page, under test


def test_it_needs_a_sign_in(client: Any) -> None:
    ex = _row()
    response = client.get(url(ex))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get(url(ex, "part=card")).status_code == 302


def test_it_draws_the_run_on_the_graph(viewer_client: Any) -> None:
    ex = _row()
    response = viewer_client.get(url(ex))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html
    root = _svg(html)
    classes = {
        (g.findtext("{http://www.w3.org/2000/svg}title") or "").split(" (")[0]: g.get("class")
        for g in root.iter("{http://www.w3.org/2000/svg}g")
    }
    assert "visited o-succeeded" in (classes["First"] or "")
    assert "unreached" in (classes["Spare"] or "")
    assert "2 of 3 states visited" in html
    # Each visited state links to its first entered event in the history.
    assert f'href="/executions/{ex.arn}/history/?event=2#event-2"' in html
    assert f'href="/executions/{ex.arn}/history/?event=4#event-4"' in html
    assert "the state machine&#x27;s current definition" in html or (
        "the state machine's current definition" in html
    )


def test_the_card_alone_for_htmx(viewer_client: Any) -> None:
    ex = _row(status="RUNNING")
    response = viewer_client.get(url(ex, "part=card"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert 'id="graph"' in html
    assert "<svg" in html
    # A running execution: now in Second, and the card redraws itself.
    assert "now in <strong>Second</strong>" in html
    assert 'hx-trigger="every 10s"' in html
    assert "HX-Request" in response["Vary"]


def test_a_finished_run_s_card_does_not_poll(viewer_client: Any) -> None:
    html = viewer_client.get(url(_row(), "part=card")).content.decode()
    assert "hx-trigger" not in html


def test_the_definition_it_ran_wins_over_today_s(viewer_client: Any) -> None:
    ex = _row()
    ran = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Second"},
            "Second": {"Type": "Pass", "Next": "Old"},
            "Old": {"Type": "Succeed"},
        },
    }
    text = json.dumps(ran)
    ex.definition = Definition.objects.create(
        sha256=hashlib.sha256(text.encode()).hexdigest(), text=text
    )
    ex.save(update_fields=["definition"])
    html = viewer_client.get(url(ex)).content.decode()
    assert "Old (Succeed)" in html
    assert "Spare" not in html
    assert "the definition this execution ran" in html


def test_without_a_history_the_graph_is_not_painted(viewer_client: Any) -> None:
    sm = state_machine_row("graphs", definition=json.dumps(TWO_STEPS))
    ex = execution_row(sm, name="no-history", started=T0)
    html = viewer_client.get(url(ex)).content.decode()
    assert 'id="graph-unpainted"' in html
    assert "its history is not in the cache yet" in html
    assert "unreached" not in html
    assert "painted" not in _svg(html).get("class", "")


def test_the_zone_is_kept_in_the_links(viewer_client: Any) -> None:
    ex = _row()
    html = viewer_client.get(url(ex, "tz=Europe/Berlin")).content.decode()
    assert f"/executions/{ex.arn}/history/?event=2&amp;tz=Europe%2FBerlin#event-2" in html
    assert f"/executions/compare/?a={quote(ex.arn, safe='')}&amp;tz=Europe%2FBerlin" in html


def test_fit_to_the_width(viewer_client: Any) -> None:
    ex = _row()
    html = viewer_client.get(url(ex)).content.decode()
    assert 'class="graph-scroll full"' in html
    assert f'href="/executions/{ex.arn}/graph/?fit=1"' in html
    html = viewer_client.get(url(ex, "fit=1")).content.decode()
    assert 'class="graph-scroll full fit"' in html
    assert "actual size" in html
    assert viewer_client.get(url(ex, "fit=yes")).status_code == 400


@pytest.mark.parametrize("part", ["bogus", "CARD", "<script>"])
def test_a_bad_part_is_a_400(viewer_client: Any, part: str) -> None:
    response = viewer_client.get(url(_row(), f"part={part}"))
    assert response.status_code == 400
    assert b"part=card" in response.content
    assert b"<script>" not in response.content


def test_not_an_arn_is_a_404_that_says_so(viewer_client: Any) -> None:
    response = viewer_client.get("/executions/not-an-arn/graph/")
    assert response.status_code == 404
    assert b"is not a Step Functions execution ARN" in response.content


def test_an_arn_aws_does_not_know_is_a_404(viewer_client: Any, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:nope:gone"
    response = viewer_client.get(url(arn))
    assert response.status_code == 404


def test_post_is_refused(viewer_client: Any) -> None:
    assert viewer_client.post(url(_row())).status_code == 405


@pytest.mark.parametrize("definition", ["", "not json", '{"StartAt": "A"}', '{"States": {"A": 3}}'])
def test_no_graph_says_why_without_failing(viewer_client: Any, definition: str) -> None:
    response = viewer_client.get(url(_row(definition)))
    assert response.status_code == 200
    assert b"No graph:" in response.content
    assert b"<svg" not in response.content


def test_hostile_state_names_are_escaped_on_the_page(viewer_client: Any) -> None:
    definition = {"StartAt": HOSTILE, "States": {HOSTILE: {"Type": "Pass", "End": True}}}
    sm = state_machine_row("hostile", definition=json.dumps(definition))
    ex = execution_row(sm, name="h-1", started=T0)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("PassStateEntered", "stateEnteredEventDetails", {"name": HOSTILE, "input": "{}"}),
        ],
    )
    html = viewer_client.get(url(ex)).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in html
    _svg(html)


def test_the_detail_page_loads_the_card_and_offers_a_comparison(viewer_client: Any) -> None:
    ex = _row()
    html = viewer_client.get(f"/executions/{ex.arn}/").content.decode()
    assert f'hx-get="/executions/{ex.arn}/graph/?part=card"' in html
    assert 'hx-trigger="load"' in html
    assert f'href="/executions/compare/?a={ex.arn}"' in html.replace("%3A", ":")
    assert "sfnui/graph.css" in html


def test_a_real_run_with_a_caught_failure(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("payments", PAYMENT), "p-1")
    wait_until_finished(sfn, [arn])
    flows.import_execution(arn)
    html = viewer_client.get(url(arn)).content.decode()
    assert "failed in <strong>Declined</strong>" in html
    assert 'class="edge k-catch taken"' in html


def test_a_running_real_run_says_where_it_is(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "n-1")
    flows.import_execution(arn)
    html = viewer_client.get(url(arn, "part=card")).content.decode()
    assert "now in <strong>Sleep</strong>" in html
    assert "o-running" in html
