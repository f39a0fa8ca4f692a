"""/sync/: the health of the cache, for the person on call."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from executions import budget
from executions.models import (
    EventCount,
    EventQueue,
    Execution,
    StateMachine,
    SyncRun,
    UnreadableEvent,
)
from executions.sync import plan
from executions.times import human_seconds
from tests.support.factories import execution_row, state_machine_row

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
    (place,) = response.context["places"]
    assert place.last_run.ok is False
    assert place.last_ok_at is not None


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

    def down(region: str, operation: str, account: str = "default") -> tuple[float, float]:
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
    assert [(p.region, p.scheduled) for p in response.context["places"]] == [
        ("us-east-1", True),
        ("eu-west-1", False),
    ]
    assert "lookups only" in response.content.decode()


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


# --- Accounts and regions ---------------------------------------------------------------

PROD = "111111111111"
PROD_ROLE = f"arn:aws:iam::{PROD}:role/sfnui-reader"


def two_identities(settings: Any) -> None:
    """The default identity in us-east-1; "prod" (a role) in us-east-1 and eu-west-1."""
    settings.SFNUI_ACCOUNTS = [
        {"role_arn": "", "external_id": "", "regions": ["us-east-1"], "name": ""},
        {
            "role_arn": PROD_ROLE,
            "external_id": "",
            "regions": ["us-east-1", "eu-west-1"],
            "name": "prod",
        },
    ]


def text_of(response: Any) -> str:
    """The page's words, tags dropped, spaces collapsed."""
    body = response.content.decode()
    words = " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", body)).split())
    return re.sub(r" ([,.:;)])", r"\1", words)


def test_each_identity_and_region_has_its_discovery_plan_and_budget(
    viewer_client: Client, settings: Any
) -> None:
    two_identities(settings)
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "ListExecutions": (200, 0.001)}
    state_machine_row("home-orders")
    state_machine_row("prod-orders", account=PROD, busy_until=ago(seconds=-60))
    state_machine_row("prod-eu", account=PROD, region="eu-west-1")
    run("discover", region="us-east-1", account="default", minutes_ago=3)
    run("discover", region="eu-west-1", account=PROD, ok=False, minutes_ago=2, error="AccessDenied")
    run("list", region="eu-west-1", account=PROD, api_calls={"ListExecutions": 12})
    run("list", region="us-east-1", account="default", api_calls={"ListExecutions": 3})
    # Taken from prod's eu-west-1 bucket only.
    budget.acquire("eu-west-1", "ListExecutions", account=PROD)

    response = viewer_client.get(URL)
    assert response.status_code == 200
    places = response.context["places"]
    assert [(p.key, p.region, p.label, p.scheduled) for p in places] == [
        ("default", "us-east-1", "default identity", True),
        (PROD, "us-east-1", "prod", True),
        (PROD, "eu-west-1", "prod", True),
    ]
    default, prod_us, prod_eu = places
    assert default.last_run is not None
    assert default.last_run.ok
    assert prod_us.last_run is None
    assert prod_eu.last_run is not None
    assert not prod_eu.last_run.ok
    assert (default.listing.plan.busy, default.listing.plan.idle) == (0, 1)
    assert (prod_us.listing.plan.busy, prod_us.listing.plan.idle) == (1, 0)
    assert prod_eu.state_machines == 1

    usage = {(u.key, u.region): u for u in response.context["usage"]}
    assert list(usage) == [("default", "us-east-1"), (PROD, "us-east-1"), (PROD, "eu-west-1")]

    def listing(key: tuple[str, str]) -> Any:
        return next(u for u in usage[key].operations if u.operation == "ListExecutions")

    assert listing((PROD, "eu-west-1")).calls == [12, 12]
    assert listing(("default", "us-east-1")).calls == [3, 3]
    assert listing((PROD, "us-east-1")).calls == [0, 0]
    assert listing((PROD, "eu-west-1")).level < listing((PROD, "eu-west-1")).capacity
    assert listing(("default", "us-east-1")).level == listing(("default", "us-east-1")).capacity
    words = text_of(response)
    assert "prod · eu-west-1" in words
    assert "default identity · us-east-1" in words
    assert "AccessDenied" in words


def test_freshness_follows_from_the_plan(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_LIST_INTERVAL = 5
    settings.SFNUI_LIST_IDLE_INTERVAL = 60
    settings.SFNUI_SYNC_TICK = 2
    state_machine_row("orders", busy_until=ago(seconds=-60))
    state_machine_row("reports")
    response = viewer_client.get(URL)
    (place,) = response.context["places"]
    assert not place.listing.plan.stretched
    words = text_of(response)
    assert "1 busy and 1 idle state machine" in words
    assert "busy ones are listed every 5 s, idle ones every 1 m." in words
    assert (
        "A change on a busy state machine shows within ~7 s, "
        "a new execution of an idle one within ~1 m 2 s."
    ) in words
    assert "cannot list" not in words


def test_a_budget_too_small_for_this_many_state_machines_stretches_the_plan(
    viewer_client: Client, settings: Any
) -> None:
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "ListExecutions": (10, 1)}
    settings.SFNUI_API_SHARE = 0.5
    settings.SFNUI_LIST_INTERVAL = 5
    settings.SFNUI_LIST_IDLE_INTERVAL = 60
    settings.SFNUI_SYNC_TICK = 2
    soon = ago(seconds=-600)
    StateMachine.objects.bulk_create(
        StateMachine(
            arn=f"arn:aws:states:us-east-1:123456789012:stateMachine:m-{i}",
            name=f"m-{i}",
            region="us-east-1",
            account="123456789012",
            busy_until=soon if i < 10 else None,
        )
        for i in range(400)
    )
    response = viewer_client.get(URL)
    (place,) = response.context["places"]
    listing = place.listing
    expected = plan.compute("default", "us-east-1", busy=10, idle=390, rate=0.5, events=False)
    assert listing.plan == expected
    assert listing.plan.stretched
    # 0.5 calls a second, 80 % of it for listings: 10 busy ones at 1.5 calls
    # every 5 s would take 3 calls a second alone, so both stretch.
    assert listing.busy_stretched
    assert listing.idle_stretched
    assert listing.plan.calls_per_second == pytest.approx(0.4)
    words = text_of(response)
    assert "10 busy and 390 idle state machines" in words
    assert "The ListExecutions budget cannot list 400 state machines that often." in words
    assert (
        f"Idle ones are listed every {human_seconds(expected.idle_interval)} instead of 1 m, "
        f"busy ones every {human_seconds(expected.busy_interval)} instead of 5 s."
    ) in words
    assert f"~{human_seconds(expected.busy_interval + 2)}" in words
    assert "Events would make them fresh without listing" in words
    assert "README, section “Events”" in words


# --- Events -------------------------------------------------------------------------------

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/sfnui-events"


def queue(seconds_ago: float | None = 5, **fields: Any) -> EventQueue:
    heartbeat = None if seconds_ago is None else ago(seconds=seconds_ago)
    return EventQueue.objects.create(url=QUEUE, heartbeat_at=heartbeat, **fields)


def test_events_off_say_polling_only(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = []
    response = viewer_client.get(URL)
    assert response.context["events"]["configured"] is False
    words = text_of(response)
    assert "Off: polling only." in words
    assert "README, section “Events”" in words
    assert "SFNUI_EVENTS_QUEUE_URL" in words


def test_a_fresh_consumer_and_what_it_did_in_the_last_five_minutes(
    viewer_client: Client, settings: Any
) -> None:
    # The page says how long ago things happened: the clock stands still, so
    # a page that takes its time still says "4 s ago".
    with time_machine.travel(timezone.now(), tick=False):
        _a_fresh_consumer(viewer_client, settings)


def _a_fresh_consumer(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    settings.SFNUI_EVENTS_HEARTBEAT = 60
    settings.SFNUI_RECONCILE_INTERVAL = 300
    row = queue(
        seconds_ago=4,
        consumer="worker-1:4242",
        depth=17,
        in_flight=3,
        depth_at=ago(seconds=8),
        oldest_age=42.0,
        last_applied_at=ago(seconds=4),
        last_error="could not delete 2 messages: " + XSS,
        last_error_at=ago(minutes=3),
    )
    minute = timezone.now().replace(second=0, microsecond=0)
    EventCount.objects.create(queue=row, minute=minute, applied=30, duplicate=2, stale=1)
    EventCount.objects.create(
        queue=row, minute=minute - dt.timedelta(minutes=2), applied=12, ignored=4, unreadable=1
    )
    EventCount.objects.create(queue=row, minute=minute - dt.timedelta(minutes=30), applied=999)
    state_machine_row("orders")

    response = viewer_client.get(URL)
    events = response.context["events"]
    assert events["configured"]
    assert events["flowing"]
    (q,) = events["queues"]
    assert not q.silent
    assert q.outcomes == [
        ("applied", 42),
        ("duplicate", 2),
        ("stale", 1),
        ("ignored", 4),
        ("unreadable", 1),
    ]
    # Events flowing: the listings reconcile.
    (place,) = response.context["places"]
    assert place.listing.plan.events
    assert place.listing.plan.busy_interval == 300
    body = response.content.decode()
    assert "<script>alert" not in body
    words = text_of(response)
    assert "heard from 4.0 s ago" in words or "heard from 4 s ago" in words
    assert "worker-1:4242" in words
    assert "42 applied · 2 duplicate · 1 stale · 4 ignored · 1 unreadable" in words
    assert "17 waiting, 3 in flight (read 8" in words
    assert "42 s old" in words
    assert "could not delete 2 messages" in words
    assert "Events stopped" not in words
    assert "Events are flowing" in words
    assert "In the last hour, listings found nothing that the events had missed." in words


def test_a_stale_consumer_is_a_warning(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE, QUEUE + "-2"]
    settings.SFNUI_EVENTS_HEARTBEAT = 60
    queue(seconds_ago=600)
    response = viewer_client.get(URL)
    events = response.context["events"]
    assert not events["flowing"]
    assert [q.silent for q in events["queues"]] == [True, True]
    words = text_of(response)
    assert "Events stopped: no consumer has been heard from within 1 m" in words
    assert "not heard from since" in words
    assert "the sync polls as if events were off" in words
    assert "No consumer has read this queue yet" in words  # the second one
    # The bar on top says it too.
    assert 'id="events-stopped"' in response.content.decode()


def test_unreadable_messages_are_capped_escaped_and_counted(
    viewer_client: Client, settings: Any
) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    row = queue()
    hostile = XSS + "</code></td></tr></table>" + "x" * 5000 + "THE-END"
    UnreadableEvent.objects.bulk_create(
        UnreadableEvent(
            queue=row,
            message_id=f"m-{i}",
            received_at=ago(minutes=i),
            receive_count=5 if i == 0 else 1,
            body=hostile,
            error="unreadable: not JSON " + XSS,
        )
        for i in range(25)
    )
    response = viewer_client.get(URL)
    events = response.context["events"]
    assert [m.message_id for m in events["unreadable"]] == [f"m-{i}" for i in range(20)]
    assert events["unreadable_total"] == 25
    body = response.content.decode()
    assert "<script>alert" not in body
    assert "&lt;/code&gt;&lt;/td&gt;" in body
    assert "THE-END" not in body  # an excerpt, not the whole body
    words = text_of(response)
    assert "the newest 20 of 25" in words
    assert f"… ({len(hostile)} characters)" in words


def test_changes_the_events_missed_in_the_last_hour(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    queue()
    sm = state_machine_row("orders")
    early = "arn:aws:states:us-east-1:123456789012:execution:orders:early"
    latest = "arn:aws:states:us-east-1:123456789012:execution:orders:" + "<b>late</b>"
    run("list", state_machine=sm, minutes_ago=40, missed_events=3, missed_example=early)
    run("list", state_machine=sm, minutes_ago=5, missed_events=2, missed_example=latest)
    run("list", state_machine=sm, minutes_ago=2)
    run("list", state_machine=sm, minutes_ago=90, missed_events=50, missed_example=early)
    response = viewer_client.get(URL)
    missed = response.context["missed"]
    assert missed["count"] == 5
    assert missed["example"] == latest
    body = response.content.decode()
    assert "<b>late</b>" not in body
    words = text_of(response)
    assert "In the last hour, listings found 5 changes that the events should have brought" in words
    assert (
        reverse(
            "execution_detail",
            args=["arn:aws:states:us-east-1:123456789012:execution:orders:early"],
        )
        not in body
    )


def test_a_missed_example_links_to_its_execution(viewer_client: Client, settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    queue()
    example = "arn:aws:states:us-east-1:123456789012:execution:orders:run-9"
    run("list", minutes_ago=5, missed_events=1, missed_example=example)
    body = viewer_client.get(URL).content.decode()
    assert f'href="{reverse("execution_detail", args=[example])}"' in body


def test_with_events_on_the_query_count_does_not_grow_with_the_data(
    viewer_client: Client, settings: Any
) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]

    def queries() -> int:
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(URL).status_code == 200
        return len(captured)

    row = queue()
    run("discover")
    base = queries()
    minute = timezone.now().replace(second=0, microsecond=0)
    for i in range(10):
        sm = state_machine_row(f"m-{i}", account=f"{i:012d}", region="eu-west-1")
        run("list", state_machine=sm, missed_events=i, missed_example=f"x-{i}", account=f"{i:012d}")
        EventCount.objects.create(queue=row, minute=minute - dt.timedelta(minutes=i), applied=i)
        UnreadableEvent.objects.create(
            queue=row, message_id=f"m-{i}", received_at=ago(minutes=i), body="{", error="bad"
        )
    assert queries() == base
    # As without events (see above), plus the bar's heartbeats, the queues,
    # their counts, the messages kept aside and their number.
    assert base <= 19 + 6 * len(settings.SFNUI_REGIONS)
