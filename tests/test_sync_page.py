"""/sync/: the health of the cache, for the person on call."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from executions import budget
from executions.models import Execution, SyncRun
from tests.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

URL = reverse("sync_health")
XSS = '<script>alert("x")</script>'


def ago(**kw: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kw)


def run(kind: str = "list", ok: bool = True, minutes_ago: float = 1, **fields: Any) -> SyncRun:
    started = ago(minutes=minutes_ago)
    return SyncRun.objects.create(
        kind=kind,
        region=fields.pop("region", "us-east-1"),
        started_at=started,
        finished_at=started + dt.timedelta(seconds=2),
        ok=ok,
        **fields,
    )


def test_it_works_before_anything_was_synced(viewer_client: Client) -> None:
    response = viewer_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing has been synced yet" in html
    assert "celery -A sfnui worker" in html
    assert "never run" in html  # the configured region's discovery
    assert response.context["backlog"] == {"due": 0, "scheduled": 0, "oldest_due": None}


def test_failing_runs_show_their_errors_as_escaped_text(viewer_client: Client) -> None:
    sm = state_machine_row("etl", list_error="AWS error: " + XSS)
    type(sm).objects.filter(pk=sm.pk).update(name=XSS)
    run("discover", ok=True, minutes_ago=30)
    run(
        "discover",
        ok=False,
        minutes_ago=2,
        error="AWS unreachable in ListStateMachines: ConnectTimeoutError " + XSS,
    )
    run("list", ok=False, minutes_ago=1, state_machine=sm, error="internal error: " + XSS * 30)
    run("executions", ok=False, minutes_ago=3, throttled=True, error="throttled: slow down")
    response = viewer_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "AWS unreachable in ListStateMachines" in html
    assert "Traceback" not in html
    assert [r.kind for r in response.context["failing_runs"]] == ["list", "discover", "executions"]
    (region,) = response.context["regions"]
    assert region.last_run.ok is False
    assert region.last_ok_at is not None


def test_the_backlog_and_executions_that_fail_to_sync(viewer_client: Client) -> None:
    for minutes in (1, 5, 9):
        execution_row(status="RUNNING", sync_due_at=ago(minutes=minutes))
    execution_row(status="RUNNING", sync_due_at=timezone.now() + dt.timedelta(minutes=1))
    execution_row(status="SUCCEEDED", sync_due_at=None)
    broken = execution_row(
        status="RUNNING",
        sync_due_at=timezone.now() + dt.timedelta(seconds=40),
        sync_error="AWS does not know this execution (yet): " + XSS,
        sync_failures=4,
    )
    response = viewer_client.get(URL)
    backlog = response.context["backlog"]
    assert (backlog["due"], backlog["scheduled"]) == (3, 5)
    oldest = Execution.objects.filter(sync_due_at__isnull=False).order_by("sync_due_at").first()
    assert oldest is not None
    assert backlog["oldest_due"] == oldest.sync_due_at
    assert response.context["sync_error_count"] == 1
    assert [e.pk for e in response.context["sync_errors"]] == [broken.pk]
    html = response.content.decode()
    assert "<script>alert" not in html
    assert reverse("execution_detail", args=[broken.arn]) in html


def test_api_calls_against_the_budget(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "DescribeExecution": (300, 15)}
    settings.SFNUI_API_SHARE = 0.5
    run("executions", minutes_ago=2, api_calls={"DescribeExecution": 30, "GetExecutionHistory": 7})
    run("executions", minutes_ago=30, api_calls={"DescribeExecution": 100})
    run("executions", minutes_ago=90, api_calls={"DescribeExecution": 1000})  # outside both
    response = viewer_client.get(URL)
    (region,) = response.context["usage"]
    describe = next(u for u in region.operations if u.operation == "DescribeExecution")
    assert describe.calls == [30, 130]
    # 15 calls/s at a 50 % share: 7.5/s, over 5 minutes and over an hour.
    assert describe.budgets == [7.5 * 300, 7.5 * 3600]
    assert describe.per_window[0][2] == pytest.approx(30 / 2250)
    # The bucket has not been touched: full.
    assert describe.level == pytest.approx(150)
    assert describe.capacity == pytest.approx(150)
    history = next(u for u in region.operations if u.operation == "GetExecutionHistory")
    assert history.calls == [7, 7]
    assert response.context["runs_last_hour"] == {"ok": 2}
    assert "<meter" in response.content.decode()


def test_the_page_survives_a_budget_store_that_is_down(
    viewer_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = []

    def down(region: str, operation: str) -> tuple[float, float]:
        tried.append(operation)
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(budget, "level", down)
    response = viewer_client.get(URL)
    assert response.status_code == 200
    assert "cannot be read" in response.content.decode()
    assert len(tried) == 1  # one failure is enough: no waiting on every bucket


def test_state_machines_failing_to_list_come_first(viewer_client: Client) -> None:
    state_machine_row("aaa-fine", listed_at=ago(seconds=5), list_due_at=ago(seconds=-5))
    state_machine_row("zzz-broken", listed_at=ago(hours=1), list_error="AWS error: AccessDenied")
    response = viewer_client.get(URL)
    assert [sm.name for sm in response.context["machines"]] == ["zzz-broken", "aaa-fine"]
    assert "AccessDenied" in response.content.decode()


def test_regions_outside_the_configuration_are_shown_for_lookups(
    viewer_client: Client, settings: Any
) -> None:
    settings.SFNUI_REGIONS = ["us-east-1"]
    sm = state_machine_row("far")
    type(sm).objects.filter(pk=sm.pk).update(region="eu-west-1")
    response = viewer_client.get(URL)
    assert [(r.region, r.configured) for r in response.context["regions"]] == [
        ("us-east-1", True),
        ("eu-west-1", False),
    ]


def test_the_query_count_does_not_grow_with_the_data(viewer_client: Client, settings: Any) -> None:
    def queries() -> int:
        cache.clear()  # the sync bar's answer is shared for a moment with Redis: not here
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(URL).status_code == 200
        return len(captured)

    run("discover")
    base = queries()
    for i in range(10):
        sm = state_machine_row(f"m-{i}")
        run("list", ok=bool(i % 2), state_machine=sm, error="" if i % 2 else "boom")
        execution_row(sm, status="RUNNING", sync_due_at=ago(minutes=i), sync_error="x" * i)
    assert queries() == base
    # Session and user (2), status (2), regions, discovery (2), state machines,
    # failing runs, backlog, sync errors (2), API usage, and one read per
    # budget bucket (6 operations per configured region).
    assert base <= 14 + 6 * len(settings.SFNUI_REGIONS)


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_only_get(viewer_client: Client) -> None:
    assert viewer_client.post(URL).status_code == 405
