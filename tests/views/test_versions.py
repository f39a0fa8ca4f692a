"""Versions and aliases on the state machine page, the list filtered by
version or alias, and what an execution ran on its page."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from executions.history import stuck
from executions.models import (
    Definition,
    Execution,
    StateMachine,
    StateMachineAlias,
    StateMachineVersion,
)
from executions.reads import versions
from executions.sync.versions import definition_for
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

LIST = reverse("execution_list")
V1_TEXT = {"StartAt": "Charge", "States": {"Charge": {"Type": "Pass", "End": True}}}
V2_TEXT = {"StartAt": "ChargeV2", "States": {"ChargeV2": {"Type": "Pass", "End": True}}}


def ago(**kw: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kw)


def detail(sm: StateMachine) -> str:
    return reverse("state_machine_detail", args=[sm.arn])


@pytest.fixture
def canary() -> dict[str, Any]:
    """checkout with v1 and v2 behind alias "live" 90/10, and a day of runs:
    v1 20 runs (1 failed), v2 10 runs (4 failed, 1 running), v1 also 5 runs
    two days ago (failed: outside the window), and 3 runs of no version."""
    sm = state_machine_row("checkout")
    v1 = StateMachineVersion.objects.create(
        arn=f"{sm.arn}:1",
        state_machine=sm,
        version=1,
        description="stable",
        creation_date=ago(days=3),
        definition=definition_for(json.dumps(V1_TEXT)),
    )
    v2 = StateMachineVersion.objects.create(
        arn=f"{sm.arn}:2",
        state_machine=sm,
        version=2,
        description="new payment provider",
        creation_date=ago(hours=30),
        definition=definition_for(json.dumps(V2_TEXT)),
    )
    alias = StateMachineAlias.objects.create(
        arn=f"{sm.arn}:live",
        state_machine=sm,
        name="live",
        description="production",
        routing=[
            {"stateMachineVersionArn": v1.arn, "weight": 90},
            {"stateMachineVersionArn": v2.arn, "weight": 10},
        ],
        update_date=ago(hours=2),
    )
    for i in range(20):
        execution_row(
            sm,
            name=f"v1-{i}",
            status="FAILED" if i == 0 else "SUCCEEDED",
            started=ago(hours=1, minutes=i),
            stop_date=ago(hours=1, minutes=i) + dt.timedelta(seconds=10 + i),
            state_machine_version_arn=v1.arn,
            state_machine_alias_arn=alias.arn,
            definition=v1.definition,
        )
    for i in range(10):
        status = "RUNNING" if i == 9 else ("FAILED" if i < 4 else "SUCCEEDED")
        started = ago(minutes=30 + i)
        execution_row(
            sm,
            name=f"v2-{i}",
            status=status,
            started=started,
            stop_date=None if status == "RUNNING" else started + dt.timedelta(seconds=100),
            state_machine_version_arn=v2.arn,
            state_machine_alias_arn=alias.arn,
            definition=v2.definition,
        )
    for i in range(5):
        execution_row(
            sm,
            name=f"old-{i}",
            status="FAILED",
            started=ago(hours=48, minutes=i),
            state_machine_version_arn=v1.arn,
        )
    for i in range(3):
        execution_row(sm, name=f"bare-{i}", started=ago(minutes=5 + i))
    return {"sm": sm, "v1": v1, "v2": v2, "alias": alias}


# --- Per-version stats -------------------------------------------------------------


def test_per_version_stats_count_the_window_only(canary: dict[str, Any]) -> None:
    stats = versions.stats_by_version([canary["v1"].arn, canary["v2"].arn], ago(hours=24))
    v1, v2 = stats[canary["v1"].arn], stats[canary["v2"].arn]
    assert (v1.runs, v1.closed, v1.failed) == (20, 20, 1)
    assert (v2.runs, v2.closed, v2.failed) == (10, 9, 4)
    assert v1.failure_rate == pytest.approx(1 / 20)
    assert v2.failure_rate == pytest.approx(4 / 9)
    # v1's durations are 10..29 s: percentile_cont(0.95) interpolates 28.05 s.
    assert v1.p95_seconds == pytest.approx(28.05, abs=0.01)
    assert v2.p95_seconds == pytest.approx(100.0, abs=0.01)


def test_a_version_without_runs_in_the_window_has_no_numbers(canary: dict[str, Any]) -> None:
    stats = versions.stats_by_version([canary["v1"].arn], ago(minutes=1))
    assert stats == {}


# --- The state machine page ---------------------------------------------------------


def test_the_page_shows_versions_with_their_numbers_and_aliases_with_weights(
    viewer_client: Client, canary: dict[str, Any]
) -> None:
    response = viewer_client.get(detail(canary["sm"]))
    assert response.status_code == 200
    page = response.content.decode()
    shown = response.context["versions"]
    assert [row.version.version for row in shown.versions] == [2, 1]
    v2_row = shown.versions[0]
    assert (v2_row.stats.runs, v2_row.stats.failed, v2_row.stats.closed) == (10, 4, 9)
    assert v2_row.routed_by == [("live", 10)]
    assert shown.until - shown.since == dt.timedelta(hours=24)
    assert 'id="versions-window"' in page
    assert "new payment provider" in page
    assert "44 %" in page  # v2's failure rate, 4/9
    assert "(4/9)" in page
    alias_row = shown.aliases[0]
    assert [(r.number, r.weight, r.offset) for r in alias_row.routes] == [(1, 90, 0), (2, 10, 90)]
    assert 'width="90"' in page
    assert 'x="90"' in page
    assert quote(canary["v2"].arn, safe="") in page
    assert "ChargeV2" in page  # the version's definition


def test_links_to_the_filtered_list_keep_the_time_zone(
    viewer_client: Client, canary: dict[str, Any]
) -> None:
    response = viewer_client.get(detail(canary["sm"]), {"tz": "Europe/Paris"})
    shown = response.context["versions"]
    assert "tz=Europe%2FParis" in shown.versions[0].url
    assert "version=" in shown.versions[0].url
    assert "alias=" in shown.aliases[0].url


def test_a_state_machine_without_versions_says_so(viewer_client: Client) -> None:
    sm = state_machine_row("plain")
    response = viewer_client.get(detail(sm))
    assert response.status_code == 200
    assert "No published version or alias" in response.content.decode()


def test_deleted_versions_and_aliases_are_labelled(
    viewer_client: Client, canary: dict[str, Any]
) -> None:
    StateMachineVersion.objects.filter(pk=canary["v1"].pk).update(status="DELETED")
    StateMachineAlias.objects.filter(pk=canary["alias"].pk).update(status="DELETED")
    response = viewer_client.get(detail(canary["sm"]))
    page = response.content.decode()
    assert page.count("sm-status-DELETED") >= 2
    # A deleted alias no longer routes anything.
    assert all(not row.routed_by for row in response.context["versions"].versions)


def test_hostile_descriptions_are_escaped(viewer_client: Client, canary: dict[str, Any]) -> None:
    StateMachineVersion.objects.filter(pk=canary["v2"].pk).update(
        description='<script>alert("x")</script>'
    )
    page = viewer_client.get(detail(canary["sm"])).content.decode()
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;" in page


def test_anonymous_people_are_sent_to_log_in(client: Client, canary: dict[str, Any]) -> None:
    response = client.get(detail(canary["sm"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- The list filtered by version or alias ---------------------------------------


def _names(response: Any) -> set[str]:
    return {ex.name for ex in response.context["page"].rows}


def test_the_list_filters_by_version(viewer_client: Client, canary: dict[str, Any]) -> None:
    response = viewer_client.get(LIST, {"version": canary["v2"].arn, "per_page": 100})
    assert response.status_code == 200
    assert _names(response) == {f"v2-{i}" for i in range(10)}
    page = response.content.decode()
    assert "checkout, version 2" in page
    # The filter form keeps it when another filter is applied.
    assert f'name="version" value="{canary["v2"].arn}"' in page


def test_the_list_filters_by_alias(viewer_client: Client, canary: dict[str, Any]) -> None:
    response = viewer_client.get(LIST, {"alias": canary["alias"].arn, "per_page": 100})
    assert response.status_code == 200
    assert _names(response) == {f"v1-{i}" for i in range(20)} | {f"v2-{i}" for i in range(10)}
    assert "checkout, alias live" in response.content.decode()


def test_the_api_filters_by_version_too(viewer_client: Client, canary: dict[str, Any]) -> None:
    response = viewer_client.get(reverse("api_execution_list"), {"version": canary["v1"].arn})
    assert response.status_code == 200
    names = {row["name"] for row in response.json()["executions"]}
    assert names == {f"v1-{i}" for i in range(20)} | {f"old-{i}" for i in range(5)}


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("version", "not-an-arn"),
        ("version", "arn:aws:states:us-east-1:123456789012:stateMachine:checkout"),
        ("version", "arn:aws:states:us-east-1:123456789012:stateMachine:checkout:live"),
        ("alias", "arn:aws:states:us-east-1:123456789012:stateMachine:checkout:3"),
        ("alias", "arn:aws:states:us-east-1:123456789012:execution:checkout:run-1"),
        ("alias", "x" * 3000),
    ],
)
def test_a_bad_version_or_alias_arn_is_a_400_that_says_why(
    viewer_client: Client, canary: dict[str, Any], parameter: str, value: str
) -> None:
    response = viewer_client.get(LIST, {parameter: value})
    assert response.status_code == 400
    assert f"Bad value for <code>{parameter}</code>" in response.content.decode()


# --- What an execution ran ------------------------------------------------------------


def test_the_detail_page_says_version_and_alias_with_weights_and_links(
    viewer_client: Client, canary: dict[str, Any]
) -> None:
    ex = Execution.objects.get(name="v2-1")
    response = viewer_client.get(reverse("execution_detail", args=[ex.arn]), {"tz": "Asia/Tokyo"})
    assert response.status_code == 200
    ran = response.context["ran"]
    assert (ran.version_number, ran.alias_name) == (2, "live")
    assert ran.weights == "version 1 90%, version 2 10%"
    assert "tz=Asia%2FTokyo" in ran.version_url
    page = response.content.decode()
    assert "version 2</a> via alias" in page
    assert "ChargeV2" in page
    assert "The definition this execution ran (its version&#x27;s)" in page


def test_an_execution_whose_definition_is_unknown_shows_todays_labelled(
    viewer_client: Client,
) -> None:
    sm = state_machine_row("orders")
    ex = execution_row(sm, name="before-sync")
    response = viewer_client.get(reverse("execution_detail", args=[ex.arn]))
    page = response.content.decode()
    assert "The state machine&#x27;s current definition" in page
    assert response.context["ran"].version_arn == ""


def test_the_definition_an_execution_ran_wins_over_todays(viewer_client: Client) -> None:
    sm = state_machine_row("orders", definition=json.dumps(V2_TEXT))
    old = definition_for(json.dumps(V1_TEXT))
    ex = execution_row(sm, name="ran-v1-text", definition=old)
    text, label = versions.definition_of(ex)
    assert json.loads(text) == V1_TEXT
    assert label == "the definition this execution ran"
    assert Definition.objects.count() == 1


def test_the_per_version_numbers_are_one_query_however_many_versions_and_runs(
    viewer_client: Client, canary: dict[str, Any]
) -> None:
    plain = state_machine_row("plain")
    viewer_client.get(detail(plain))
    with CaptureQueriesContext(connection) as without:
        viewer_client.get(detail(plain))
    with CaptureQueriesContext(connection) as with_versions:
        viewer_client.get(detail(canary["sm"]))
    # Both pages read versions and aliases; the numbers of all versions are one
    # more query on PostgreSQL (two elsewhere: counts, then durations to sort).
    extra = 1 if connection.vendor == "postgresql" else 2
    assert len(with_versions) - len(without) <= extra


def test_why_still_running_reads_the_definition_the_execution_ran() -> None:
    sm = state_machine_row("orders", definition=json.dumps(V2_TEXT))
    ran = {"TimeoutSeconds": 600, **V1_TEXT}
    ex = execution_row(
        sm,
        name="running-v1",
        status="RUNNING",
        started=ago(minutes=5),
        state_machine_version_arn=f"{sm.arn}:1",
        definition=definition_for(json.dumps(ran)),
    )
    why = stuck.analyse(ex, [], timezone.now())
    assert why is not None
    # The limit is the one it ran with (today's definition has none), and no
    # note says it was read from today's.
    assert why.execution_timeout is not None
    assert why.execution_timeout.limit_seconds == 600
    assert why.notes == []
    ex.definition = None
    ex.definition_id = None
    fallback = stuck.analyse(ex, [], timezone.now())
    assert fallback is not None
    assert fallback.execution_timeout is None
    assert any("current definition" in note for note in fallback.notes)
