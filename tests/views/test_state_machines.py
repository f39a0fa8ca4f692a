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

from executions.models import Execution, StateMachine
from executions.reads import activity
from executions.sync import plan
from tests.support.factories import execution_row, state_machine_row

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
    # failing syncs, the user's permissions (2), whether they may start (the
    # Start button), the sync bar (2), and its versions and aliases (2; the
    # per-version numbers are a third when it has versions).
    with django_assert_max_num_queries(14):
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


# --- Accounts and regions; how often it is listed ----------------------------------------

PROD = "210987654321"


@pytest.fixture
def named_prod(settings: Any) -> None:
    settings.SFNUI_ACCOUNTS = [
        {"role_arn": "", "external_id": "", "regions": ["us-east-1"], "name": ""},
        {
            "role_arn": f"arn:aws:iam::{PROD}:role/reader",
            "external_id": "",
            "regions": ["us-east-1", "eu-west-1"],
            "name": "prod",
        },
    ]


def test_the_list_shows_and_filters_accounts_and_regions(
    viewer_client: Client, named_prod: None
) -> None:
    home = state_machine_row("orders")
    prod_us = state_machine_row("orders", account=PROD)
    prod_eu = state_machine_row("billing", account=PROD, region="eu-west-1")

    def shown(**params: Any) -> list[int]:
        response = viewer_client.get(LIST, params)
        assert response.status_code == 200
        return [r.state_machine.pk for r in response.context["rows"]]

    response = viewer_client.get(LIST)
    assert response.context["several"]
    html = response.content.decode()
    assert f'<span class="place" title="account {PROD}">prod</span> · eu-west-1' in html
    assert '<span class="place" title="account 123456789012">123456789012</span>' in html
    assert f'<option value="{PROD}">prod ({PROD})</option>' in html
    assert set(shown(account=PROD)) == {prod_us.pk, prod_eu.pk}
    assert shown(region="eu-west-1") == [prod_eu.pk]
    assert shown(account="123456789012", region="us-east-1") == [home.pk]
    assert shown(account=PROD, q="ord") == [prod_us.pk]
    assert shown(account="999999999999") == []
    assert "No state machine in the chosen account or region" in (
        viewer_client.get(LIST, {"account": "999999999999"}).content.decode()
    )
    # The counts follow the filter.
    execution_row(prod_eu, status="FAILED")
    response = viewer_client.get(LIST, {"region": "eu-west-1"})
    assert row_of(response, prod_eu).stats.total == 1


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"account": "prod"}, "is not an AWS account id"),
        ({"region": "EU_WEST_1"}, "is not an AWS region name"),
        ({"region": "xx-nowhere-9"}, "AWS has no region"),
    ],
)
def test_a_bad_account_or_region_is_a_400(
    viewer_client: Client, params: dict[str, str], says: str
) -> None:
    state_machine_row("orders")
    response = viewer_client.get(LIST, params)
    assert response.status_code == 400
    assert says in response.content.decode().replace("&#x27;", "'")


def test_one_account_in_one_region_needs_no_column(viewer_client: Client) -> None:
    state_machine_row("orders")
    response = viewer_client.get(LIST)
    assert not response.context["several"]
    assert 'class="place"' not in response.content.decode()
    assert 'name="account"' not in response.content.decode()


def test_the_detail_page_says_how_often_a_busy_one_is_listed(
    viewer_client: Client, settings: Any, named_prod: None
) -> None:
    settings.SFNUI_LIST_INTERVAL = 5
    settings.SFNUI_LIST_IDLE_INTERVAL = 60
    settings.SFNUI_SYNC_TICK = 2
    plan.forget()
    sm = state_machine_row(
        "orders",
        account=PROD,
        region="eu-west-1",
        list_interval=5,
        busy_until=timezone.now() + dt.timedelta(minutes=8),
    )
    state_machine_row("reports", account=PROD, region="eu-west-1")
    response = viewer_client.get(detail(sm))
    assert response.context["busy"]
    listing = response.context["listing"]
    assert (listing.plan.account, listing.plan.region) == (PROD, "eu-west-1")
    assert (listing.plan.busy, listing.plan.idle) == (1, 1)
    html = response.content.decode()
    assert f'<dd id="sm-account">prod <span class="mono muted">({PROD})</span></dd>' in html
    assert '<dd id="sm-region">eu-west-1</dd>' in html
    words = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "every 5 s now, as a busy state machine" in words
    assert "A change on a busy state machine shows within ~7 s" in words


def test_the_detail_page_says_an_idle_one_and_a_stretched_plan(
    viewer_client: Client, settings: Any
) -> None:
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "ListExecutions": (10, 0.2)}
    settings.SFNUI_API_SHARE = 0.5
    plan.forget()
    sm = state_machine_row("idle-one", list_interval=600)
    for i in range(30):
        state_machine_row(f"m-{i}")
    response = viewer_client.get(detail(sm))
    assert not response.context["busy"]
    assert response.context["listing"].plan.stretched
    html = response.content.decode()
    assert "as an <strong>idle</strong> state machine" in html
    assert '<details class="plan" open>' in html
    assert "cannot list 31 state machines that often" in html


def test_a_state_machine_no_identity_lists_says_so(viewer_client: Client) -> None:
    sm = state_machine_row("looked-up", region="eu-west-1")  # SFNUI_REGIONS: us-east-1 only
    response = viewer_client.get(detail(sm))
    assert response.context["listing"] is None
    assert "not listed on a schedule" in response.content.decode()
    gone = state_machine_row("gone", status="DELETED")
    assert "not listed: deleted" in viewer_client.get(detail(gone)).content.decode()
