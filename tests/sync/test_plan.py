"""plan.py and the listing that follows it: each state machine listed as often
as its activity warrants, within its account's ListExecutions budget; ends
learned from the closed statuses' listings; with events flowing, listings
are reconciliation and count what the events missed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from executions import aws
from executions.models import EventQueue, Execution, StateMachine, SyncRun
from executions.sync import flows, plan, rows, schedule
from tests.support import factories
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_plans() -> None:
    plan.forget()


def test_a_small_account_gets_the_configured_intervals(settings: Any) -> None:
    settings.SFNUI_LIST_INTERVAL = 5
    settings.SFNUI_LIST_IDLE_INTERVAL = 60
    p = plan.compute("default", "us-east-1", busy=3, idle=30, rate=2.5, events=False)
    assert (p.busy_interval, p.idle_interval) == (5, 60)
    assert not p.stretched
    assert p.calls_per_second <= 2.5 * plan.LISTING_SHARE


def test_a_big_account_stretches_the_idle_ones_first_and_stays_in_the_budget(
    settings: Any,
) -> None:
    settings.SFNUI_LIST_INTERVAL = 5
    settings.SFNUI_LIST_IDLE_INTERVAL = 60
    p = plan.compute("default", "us-east-1", busy=5, idle=995, rate=2.5, events=False)
    assert p.busy_interval == 5
    assert p.idle_interval > 60
    assert p.stretched
    assert p.calls_per_second == pytest.approx(2.5 * plan.LISTING_SHARE)


def test_when_busy_ones_alone_are_too_many_both_stretch_and_idle_ones_keep_a_share(
    settings: Any,
) -> None:
    settings.SFNUI_LIST_INTERVAL = 5
    p = plan.compute("default", "us-east-1", busy=400, idle=600, rate=2.5, events=False)
    assert p.busy_interval > 5
    assert p.calls_per_second == pytest.approx(2.5 * plan.LISTING_SHARE)
    idle_share = p.idle * plan.IDLE_COST / p.idle_interval
    assert idle_share == pytest.approx(2.5 * plan.LISTING_SHARE * plan.IDLE_FLOOR)


def test_with_events_flowing_every_listing_is_reconciliation(settings: Any) -> None:
    settings.SFNUI_RECONCILE_INTERVAL = 300
    p = plan.compute("default", "us-east-1", busy=5, idle=20, rate=2.5, events=True)
    assert (p.busy_interval, p.idle_interval) == (300, 300)
    assert p.freshness(busy=True) == 300 + settings.SFNUI_SYNC_TICK


def test_events_flow_only_while_the_consumer_is_heard_from(settings: Any) -> None:
    url = "http://127.0.0.1:5000/123456789012/sfnui-events"
    assert not plan.events_flowing()
    settings.SFNUI_EVENTS_QUEUE_URL = [url]
    assert not plan.events_flowing()  # configured, but no consumer yet
    EventQueue.objects.create(url=url, heartbeat_at=timezone.now())
    assert plan.events_flowing()
    EventQueue.objects.filter(url=url).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.SFNUI_EVENTS_HEARTBEAT + 1)
    )
    assert not plan.events_flowing()


def test_the_plan_counts_busy_and_idle_state_machines_of_one_account_and_region(
    settings: Any,
) -> None:
    settings.SFNUI_API_QUOTAS = {"ListExecutions": (200, 5)}
    settings.SFNUI_API_SHARE = 0.5
    soon = timezone.now() + dt.timedelta(minutes=5)
    for i in range(3):
        factories.state_machine_row(f"busy-{i}", busy_until=soon)
    for i in range(7):
        factories.state_machine_row(f"idle-{i}")
    factories.state_machine_row("gone", status="DELETED", busy_until=soon)
    p = plan.plan("default", "us-east-1")
    assert (p.busy, p.idle, p.rate) == (3, 7, 2.5)


def test_a_tick_hands_out_the_latest_listings_for_their_interval_within_the_budget(
    settings: Any,
) -> None:
    settings.SFNUI_API_QUOTAS = {"ListExecutions": (6, 0.001)}  # 3 tokens (share 0.5)
    settings.SFNUI_API_SHARE = 0.5
    settings.SFNUI_LIST_INTERVAL = 5
    now = timezone.now()
    # A wave of idle ones a minute late on an interval of 490 s, a busy one
    # 10 s late on 5 s, and an idle one so late that it must not wait longer.
    wave = [
        factories.state_machine_row(
            f"idle-{i}", list_due_at=now - dt.timedelta(seconds=60 + i), list_interval=490
        )
        for i in range(5)
    ]
    busy = factories.state_machine_row(
        "busy",
        list_due_at=now - dt.timedelta(seconds=10),
        list_interval=5,
        busy_until=now + dt.timedelta(minutes=5),
    )
    starved = factories.state_machine_row(
        "starved", list_due_at=now - dt.timedelta(hours=1), list_interval=490
    )
    # Just discovered, never listed: counted as idle (at start, a whole
    # account's first listings must not hold back the busy ones).
    for i in range(20):
        factories.state_machine_row(
            f"new-{i}", list_due_at=now - dt.timedelta(seconds=15), list_interval=0
        )
    work = schedule.claim_due_work()
    # 3 tokens pay for 2 listings (1.5 calls each on average).
    assert work.state_machines == [starved.pk, busy.pk]
    again = schedule.claim_due_work()
    assert again.state_machines == [wave[4].pk, wave[3].pk]


def test_a_listing_schedules_the_next_one_by_activity(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    settings: Any,
) -> None:
    settings.SFNUI_LIST_INTERVAL = 5
    settings.SFNUI_LIST_IDLE_INTERVAL = 60
    active = make_state_machine("active", LONG_WAIT)
    make_state_machine("quiet", PASS)
    start(active, "active-1")
    flows.discover_state_machines("us-east-1")
    for sm in StateMachine.objects.all():
        flows.list_state_machine(sm)
    active_sm = StateMachine.objects.get(name="active")
    quiet_sm = StateMachine.objects.get(name="quiet")
    assert active_sm.busy_until is not None
    assert active_sm.busy_until > timezone.now()
    assert active_sm.list_interval == 5
    assert quiet_sm.busy_until is None
    assert quiet_sm.list_interval == 60


def _one_a_page(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """ListExecutions one execution a page (so that the newest-first listing
    stops at the watermark, as a busy state machine's does with 1,000), and
    the status filter of each listing made."""
    statuses: list[str | None] = []
    real = aws.list_executions

    def one_a_page(*a: Any, **k: Any) -> Any:
        statuses.append(k.get("status"))
        return real(*a, **{**k, "page_size": 1})

    monkeypatch.setattr(aws, "list_executions", one_a_page)
    return statuses


def test_ends_come_from_the_closed_listing_without_describe(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flows, "LISTING_MARGIN", dt.timedelta(0))
    sm_arn = make_state_machine("nightly", LONG_WAIT)
    arns = [start(sm_arn, f"nightly-{i}") for i in range(5)]
    flows.discover_state_machines("us-east-1")
    sm = StateMachine.objects.get()
    flows.list_state_machine(sm)
    # The two oldest end: the newest-first listing does not reach them.
    for arn in arns[:2]:
        sfn.stop_execution(executionArn=arn, error="Manual", cause="runaway")
    wait_until_finished(sfn, arns[:2])
    statuses = _one_a_page(monkeypatch)
    # Pages of one: let the closed listing read as many as 1,000-item pages hold.
    monkeypatch.setattr(flows, "CLOSED_MAX_PAGES", 10)
    sm.refresh_from_db()
    with aws.count_calls() as calls:
        stats = flows.list_state_machine(sm)
    assert stats.ends_listed == 2
    assert statuses == [None, "RUNNING", None]
    assert calls["DescribeExecution"] == 0
    for arn in arns[:2]:
        ex = Execution.objects.get(arn=arn)
        assert ex.status == "ABORTED"
        assert ex.stop_date is not None
        # Output, error and cause: DescribeExecution, at the budget's pace.
        assert ex.needs_describe
        assert ex.sync_due_at is not None
    assert set(Execution.objects.filter(arn__in=arns[2:]).values_list("status", flat=True)) == {
        "RUNNING"
    }


def test_with_many_newer_executions_each_closed_status_is_listed_on_its_own(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flows, "LISTING_MARGIN", dt.timedelta(0))
    monkeypatch.setattr(flows, "CLOSED_SCAN_ALL", 2)
    sm_arn = make_state_machine("nightly", LONG_WAIT)
    arns = [start(sm_arn, f"nightly-{i}") for i in range(4)]
    flows.discover_state_machines("us-east-1")
    sm = StateMachine.objects.get()
    flows.list_state_machine(sm)
    sfn.stop_execution(executionArn=arns[0])
    wait_until_finished(sfn, arns[:1])
    statuses = _one_a_page(monkeypatch)
    sm.refresh_from_db()
    stats = flows.list_state_machine(sm)
    assert stats.ends_listed == 1
    # New ones, the running set, then the closed statuses until it was found.
    assert statuses == [None, "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
    assert Execution.objects.get(arn=arns[0]).status == "ABORTED"


def test_reconciliation_counts_what_the_events_missed(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    settings: Any,
) -> None:
    url = "http://127.0.0.1:5000/123456789012/sfnui-events"
    settings.SFNUI_EVENTS_QUEUE_URL = [url]
    EventQueue.objects.create(url=url, heartbeat_at=timezone.now())
    arn = start(make_state_machine("hello", PASS), "hello-1")
    wait_until_finished(sfn, [arn])
    flows.discover_state_machines("us-east-1")
    sm = StateMachine.objects.get()
    # Found within the grace: the events may still be on their way.
    assert flows.list_state_machine(sm).missed_events == 0
    Execution.objects.all().delete()
    StateMachine.objects.filter(pk=sm.pk).update(list_watermark=None)
    sm.refresh_from_db()
    later = timezone.now() + rows.EVENTS_GRACE + dt.timedelta(seconds=5)
    with time_machine.travel(later):
        EventQueue.objects.filter(url=url).update(heartbeat_at=timezone.now())
        stats = flows.list_state_machine(sm)
    assert stats.missed_events == 1
    run = SyncRun.objects.filter(kind="list").order_by("-started_at").first()
    assert run is not None
    assert (run.missed_events, run.missed_example) == (1, arn)
