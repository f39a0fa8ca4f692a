"""/state-machines/ and /state-machines/<arn>/: counts, failure rate, activity chart."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from executions import activity
from executions.models import Execution, StateMachine
from tests.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

LIST = reverse("state_machine_list")
XSS = '<script>alert("x")</script>'


def detail(sm: StateMachine) -> str:
    return reverse("state_machine_detail", args=[sm.arn])


def ago(**kw: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kw)


@pytest.fixture
def etl() -> StateMachine:
    """3 running, 2 succeeded and 1 failed in the last day, 1 aborted 2 days ago."""
    sm = state_machine_row("etl", role_arn="arn:aws:iam::123456789012:role/etl")
    for i in range(3):
        execution_row(sm, name=f"run-{i}", status="RUNNING", started=ago(minutes=10 + i))
    execution_row(sm, name="ok-1", status="SUCCEEDED", started=ago(hours=2))
    execution_row(sm, name="ok-2", status="SUCCEEDED", started=ago(hours=5))
    execution_row(sm, name="bad-1", status="FAILED", started=ago(hours=1))
    execution_row(sm, name="old-1", status="ABORTED", started=ago(hours=48))
    return sm


def row_of(response: Any, sm: StateMachine) -> Any:
    return next(r for r in response.context["rows"] if r.state_machine.pk == sm.pk)


def test_the_list_counts_per_status_and_the_failure_rate(
    viewer_client: Client, etl: StateMachine
) -> None:
    quiet = state_machine_row("quiet")
    response = viewer_client.get(LIST)
    assert response.status_code == 200
    stats = row_of(response, etl).stats
    assert stats.counts == {
        "RUNNING": 3,
        "SUCCEEDED": 2,
        "FAILED": 1,
        "TIMED_OUT": 0,
        "ABORTED": 1,
        "PENDING_REDRIVE": 0,
    }
    assert (stats.running, stats.total) == (3, 7)
    # Ended in the last 24 h: 2 succeeded, 1 failed (the abort was 2 days ago).
    assert (stats.failed_24h, stats.closed_24h) == (1, 3)
    assert stats.failure_rate == pytest.approx(1 / 3)
    assert stats.last_start == Execution.objects.get(name="run-0").start_date
    empty = row_of(response, quiet).stats
    assert (empty.total, empty.failure_rate, empty.last_start) == (0, None, None)
    html = response.content.decode()
    assert "33 %" in html
    assert "never" in html


def test_the_list_links_to_the_filtered_executions(
    viewer_client: Client, etl: StateMachine
) -> None:
    html = viewer_client.get(LIST + "?tz=Europe/Berlin").content.decode()
    arn = quote(etl.arn, safe="")
    assert f"/executions/?state_machine={arn}&amp;status=RUNNING&amp;tz=Europe%2FBerlin" in html
    assert (
        f"/executions/?state_machine={arn}&amp;status=FAILED&amp;status=TIMED_OUT"
        "&amp;status=ABORTED&amp;tz=Europe%2FBerlin" in html
    )
    assert f"/executions/?state_machine={arn}&amp;tz=Europe%2FBerlin" in html
    assert f'href="{detail(etl)}?tz=Europe%2FBerlin"' in html


def test_the_list_query_count_does_not_grow_with_the_machines(viewer_client: Client) -> None:
    def queries() -> int:
        # With Redis the sync bar's answer is shared for a moment; measure the
        # request that has to work it out, both times.
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(LIST).status_code == 200
        return len(captured)

    one = state_machine_row("m-0")
    execution_row(one, status="RUNNING", started=ago(minutes=3))
    few = queries()
    for i in range(1, 15):
        sm = state_machine_row(f"m-{i}")
        for status in ("RUNNING", "SUCCEEDED", "FAILED"):
            execution_row(sm, status=status, started=ago(hours=i))
    assert queries() == few
    assert few <= 8


def test_deleted_state_machines_are_shown_as_such(viewer_client: Client) -> None:
    gone = state_machine_row("retired", status="DELETED")
    execution_row(gone, status="SUCCEEDED")
    html = viewer_client.get(LIST).content.decode()
    assert "retired" in html
    assert "sm-status-DELETED" in html
    page = viewer_client.get(detail(gone)).content.decode()
    assert "This state machine was deleted" in page


def test_a_name_filter(viewer_client: Client, etl: StateMachine) -> None:
    state_machine_row("web")
    response = viewer_client.get(LIST + "?q=ET")
    assert [r.state_machine.name for r in response.context["rows"]] == ["etl"]
    assert row_of(response, etl).stats.total == 7
    assert viewer_client.get(LIST + "?q=" + "x" * 81).status_code == 400


def test_no_state_machines_yet(viewer_client: Client) -> None:
    response = viewer_client.get(LIST)
    assert response.status_code == 200
    assert "No state machines yet" in response.content.decode()


def test_the_detail_page(viewer_client: Client, etl: StateMachine) -> None:
    for i in range(25):
        execution_row(etl, name=f"older-{i}", status="SUCCEEDED", started=ago(days=3, minutes=i))
    response = viewer_client.get(detail(etl))
    assert response.status_code == 200
    assert response.context["stats"].running == 3
    recent = response.context["recent"]
    assert len(recent) == 20
    assert [e.name for e in recent[:3]] == ["run-0", "run-1", "run-2"]
    html = response.content.decode()
    assert "etl" in html
    assert "arn:aws:iam::123456789012:role/etl" in html
    assert "console.aws.amazon.com/states/home?region=us-east-1#/statemachines/view/" in html
    # The definition, pretty-printed and folded.
    assert '<details class="definition">' in html
    assert "&quot;StartAt&quot;: &quot;A&quot;,\n" in html


def test_the_chart_stacks_statuses_per_hour_and_links_to_each_hour(
    viewer_client: Client, etl: StateMachine
) -> None:
    response = viewer_client.get(detail(etl))
    chart = response.context["chart"]
    assert len(chart.bars) == 24
    assert chart.total == 6  # the abort 2 days ago is outside the window
    assert {i.status: i.count for i in chart.legend} == {
        "RUNNING": 3,
        "SUCCEEDED": 2,
        "FAILED": 1,
    }
    html = response.content.decode()
    assert '<svg class="activity-chart"' in html
    assert 'class="seg seg-FAILED"' in html
    # The current hour's bar holds the three running ones, and links to that hour.
    last = chart.bars[-1]
    assert last.start <= timezone.now() < last.end
    running = Execution.objects.filter(status="RUNNING")
    in_last = sum(1 for e in running if e.start_date >= last.start)
    assert last.total >= in_last
    query = parse_qs(urlsplit(last.url).query)
    assert query["state_machine"] == [etl.arn]
    started_after = dt.datetime.fromisoformat(query["started_after"][0])
    started_before = dt.datetime.fromisoformat(query["started_before"][0])
    assert started_before - started_after == dt.timedelta(hours=1)
    assert started_after == last.start
    # Each coloured segment links to its status in that hour.
    failed = next(s for b in chart.bars for s in b.segments if s.status == "FAILED")
    assert parse_qs(urlsplit(failed.url).query)["status"] == ["FAILED"]
    assert failed.url.replace("&", "&amp;") in html
    # Heights: the tallest bar fills the plot, the scale tops at a round number.
    assert chart.top in (1, 2, 5, 10)
    assert all(0 <= s.y <= chart.plot_height for b in chart.bars for s in b.segments)


def test_the_chart_labels_hours_in_the_chosen_zone(
    viewer_client: Client, etl: StateMachine
) -> None:
    response = viewer_client.get(detail(etl) + "?tz=Asia/Kolkata")
    labels = [b.label for b in response.context["chart"].bars if b.label]
    assert labels
    assert all(re.fullmatch(r"\d\d:30", label) for label in labels)


def test_nice_ceiling() -> None:
    assert [activity.nice_ceiling(n) for n in (0, 1, 2, 3, 7, 11, 50, 51, 999)] == [
        0,
        1,
        2,
        5,
        10,
        20,
        50,
        100,
        1000,
    ]


def test_the_detail_query_count_is_bounded(
    viewer_client: Client, etl: StateMachine, django_assert_max_num_queries: Any
) -> None:
    for i in range(40):
        execution_row(etl, status="SUCCEEDED", started=ago(minutes=30 * i))
    # Session, user, the state machine, counts, chart, recent executions,
    # failing syncs, the user's permissions (2) and the sync bar (2).
    with django_assert_max_num_queries(11):
        assert viewer_client.get(detail(etl)).status_code == 200


def test_a_definition_that_is_not_json_is_shown_as_is(viewer_client: Client) -> None:
    sm = state_machine_row("odd", definition="not json {")
    assert "not json {" in viewer_client.get(detail(sm)).content.decode()


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/state-machines/not-an-arn/", "not a Step Functions state machine ARN"),
        (
            "/state-machines/arn:aws:states:us-east-1:123456789012:stateMachine:ghost/",
            "not among the synced state machines",
        ),
        (
            "/state-machines/arn:aws:states:us-east-1:123456789012:execution:etl:x/",
            "not a Step Functions state machine ARN",
        ),
    ],
)
def test_unknown_or_malformed_arns_are_404(viewer_client: Client, path: str, says: str) -> None:
    response = viewer_client.get(path)
    assert response.status_code == 404
    assert says in response.content.decode()


def test_anonymous_people_are_sent_to_sign_in(client: Client, etl: StateMachine) -> None:
    for url in (LIST, detail(etl)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_only_get(viewer_client: Client, etl: StateMachine) -> None:
    assert viewer_client.post(LIST).status_code == 405
    assert viewer_client.post(detail(etl)).status_code == 405


def test_hostile_names_and_definitions_are_escaped(viewer_client: Client) -> None:
    sm = state_machine_row(
        "hostile",
        definition=json.dumps({"Comment": "</pre>" + XSS, "StartAt": XSS, "States": {}}),
        list_error=XSS,
    )
    StateMachine.objects.filter(pk=sm.pk).update(name=XSS)
    ex = execution_row(sm, name="h-1", status="RUNNING")
    Execution.objects.filter(pk=ex.pk).update(name=XSS)
    for url in (LIST, detail(sm), LIST + "?" + urlencode({"q": XSS})):
        html = viewer_client.get(url).content.decode()
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html, url
