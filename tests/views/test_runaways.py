"""/runaways/: running executions by state machine and state, and the outliers."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from executions.models import Execution, StateMachine
from executions.reads import runaways
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

URL = reverse("runaways")
NOW = timezone.now()

# Two states, each an hour long: where a running one is tells them apart.
TWO_WAITS = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Next": "Hold"},
        "Hold": {"Type": "Wait", "Seconds": 3600, "End": True},
    },
}


def entered(ex: Execution, *states: str) -> None:
    """A history that entered these states, in order; the last one is still open."""
    items: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})
    ]
    for i, name in enumerate(states):
        items.append(("TaskStateEntered", "stateEnteredEventDetails", {"name": name}))
        if i < len(states) - 1:
            items.append(("TaskStateExited", "stateExitedEventDetails", {"name": name}))
    events(ex, items)


def succeeded(
    sm: StateMachine, n: int, *, seconds: float = 60.0, step: float = 1.0, events_: int = 20
) -> None:
    """n succeeded executions in the last day, lasting seconds, seconds + step, ..."""
    for i in range(n):
        started = NOW - dt.timedelta(hours=2, minutes=i)
        execution_row(
            sm,
            f"{sm.name}-ok-{i}",
            "SUCCEEDED",
            started,
            stop_date=started + dt.timedelta(seconds=seconds + step * i),
            last_event_id=events_ + i,
        )


def running(
    sm: StateMachine, name: str, age: dt.timedelta, state: str = "Work", **fields: Any
) -> Execution:
    ex = execution_row(sm, name, "RUNNING", NOW - age, **fields)
    entered(ex, state)
    if "last_event_id" in fields:
        Execution.objects.filter(pk=ex.pk).update(last_event_id=fields["last_event_id"])
        ex.last_event_id = fields["last_event_id"]
    return ex


# --- On synced moto data ------------------------------------------------------------


def test_running_executions_are_grouped_by_state_machine_and_the_state_they_are_in(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    viewer_client: Client,
) -> None:
    nightly = make_state_machine("nightly-etl", LONG_WAIT)
    reports = make_state_machine("reports", TWO_WAITS)
    hello = make_state_machine("hello", PASS)
    for i in range(3):
        start(nightly, f"etl-{i}")
    start(reports, "report-1")
    wait_until_finished(sfn, [start(hello, "hello-1")])
    call_command("sync", stdout=StringIO(), stderr=StringIO())

    report = runaways.report()

    groups = {
        m.state_machine.name: [(g.state, g.running) for g in m.groups] for m in report.machines
    }
    assert groups == {"nightly-etl": [("Sleep", 3)], "reports": [("Hold", 1)]}
    assert report.running == 4
    response = viewer_client.get(URL)
    assert response.status_code == 200
    body = html.unescape(response.content.decode())
    assert "nightly-etl" in body
    assert "Sleep" in body
    assert "Hold" in body
    # Each state machine links to the list filtered to its running executions.
    assert (
        f"/executions/?state_machine={nightly}&status=RUNNING&status=PENDING_REDRIVE"
        in body.replace("%3A", ":")
    )
    # Not enough succeeded executions to say what is usual: no flags.
    assert "No duration baseline" in body
    assert not report.flagged


# --- Outliers ---------------------------------------------------------------------------


def test_it_flags_executions_running_longer_than_the_p95_of_succeeded_ones() -> None:
    sm = state_machine_row("orders")
    succeeded(sm, 20, seconds=60, step=1)  # 60 s .. 79 s: p95 is 78.05 s
    slow = running(sm, "stuck-1", dt.timedelta(minutes=10), "Charge")
    running(sm, "fresh-1", dt.timedelta(seconds=10), "Charge")
    running(sm, "fresh-2", dt.timedelta(seconds=20), "Ship")

    report = runaways.report(now=NOW)

    (machine,) = report.machines
    assert machine.baseline.samples == 20
    assert machine.baseline.seconds == pytest.approx(78.05)
    assert machine.flagged
    groups = {g.state: (g.running, g.long, g.eventful) for g in machine.groups}
    assert groups == {"Charge": (2, 1, 0), "Ship": (1, 0, 0)}
    # The flagged group first.
    assert machine.groups[0].state == "Charge"
    assert [o.execution.name for o in report.outliers] == ["stuck-1"]
    assert report.outliers[0].long
    assert not report.outliers[0].eventful
    assert report.outliers[0].state == "Charge"
    assert report.outliers[0].execution.pk == slow.pk


def test_it_flags_executions_with_more_events_than_usual() -> None:
    sm = state_machine_row("orders")
    succeeded(sm, 20, seconds=3600, events_=20)  # 20 .. 39 events: p95 is 38.05
    looping = running(sm, "looping", dt.timedelta(seconds=30), "Retry", last_event_id=500)
    running(sm, "normal", dt.timedelta(seconds=30), "Retry", last_event_id=25)

    report = runaways.report(now=NOW)

    (machine,) = report.machines
    assert machine.baseline.events == pytest.approx(38.05)
    assert [(g.state, g.running, g.long, g.eventful, g.max_events) for g in machine.groups] == [
        ("Retry", 2, 0, 1, 500)
    ]
    assert [(o.execution.pk, o.eventful, o.long) for o in report.outliers] == [
        (looping.pk, True, False)
    ]


def test_events_of_histories_not_fully_synced_make_no_baseline() -> None:
    sm = state_machine_row("orders")
    for i in range(10):
        started = NOW - dt.timedelta(hours=1, minutes=i)
        execution_row(sm, f"ok-{i}", "SUCCEEDED", started, last_event_id=3, history_complete=False)
    running(sm, "r", dt.timedelta(seconds=5), last_event_id=400)
    (machine,) = runaways.report(now=NOW).machines
    assert machine.baseline.samples == 10
    assert machine.baseline.event_samples == 0
    assert not machine.baseline.has_events
    assert not machine.flagged


def test_fewer_succeeded_executions_than_the_minimum_make_no_baseline() -> None:
    sm = state_machine_row("orders")
    succeeded(sm, runaways.MIN_SAMPLE - 1, seconds=1)
    running(sm, "ancient", dt.timedelta(days=3))
    (machine,) = runaways.report(now=NOW).machines
    assert not machine.baseline.has_duration
    assert machine.long == 0
    assert not machine.flagged


def test_the_baseline_is_the_newest_succeeded_executions_of_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runaways, "SAMPLE", 10)
    sm = state_machine_row("orders")
    # The newest ten take 10 s; older ones took an hour, and one outside the
    # window took a day: neither counts.
    for i in range(10):
        started = NOW - dt.timedelta(hours=1, minutes=i)
        execution_row(
            sm, f"new-{i}", "SUCCEEDED", started, stop_date=started + dt.timedelta(seconds=10)
        )
    for i in range(10):
        started = NOW - dt.timedelta(days=2, minutes=i)
        execution_row(
            sm, f"old-{i}", "SUCCEEDED", started, stop_date=started + dt.timedelta(hours=1)
        )
    started = NOW - dt.timedelta(days=8)
    execution_row(sm, "ancient", "SUCCEEDED", started, stop_date=started + dt.timedelta(days=1))
    execution_row(sm, "failed", "FAILED", NOW - dt.timedelta(minutes=1), stop_date=NOW)

    (baseline,) = runaways.baselines_for([sm.pk], NOW).values()
    assert baseline.samples == 10
    assert baseline.seconds == pytest.approx(10.0)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="percentile_cont is PostgreSQL's")
def test_percentile_cont_and_the_sampled_fallback_agree() -> None:
    machines = []
    for k in range(3):
        sm = state_machine_row(f"sm-{k}")
        machines.append(sm.pk)
        for i in range(7 + k * 5):
            started = NOW - dt.timedelta(hours=3, minutes=i)
            execution_row(
                sm,
                f"ok-{k}-{i}",
                "SUCCEEDED",
                started,
                stop_date=started + dt.timedelta(seconds=(i * 37) % 101 + 0.5),
                last_event_id=(i * 13) % 29 + 4,
                history_complete=i % 4 != 0,
            )
    since = NOW - runaways.WINDOW
    fast = runaways._baselines_postgresql(machines, since)
    sampled = runaways._baselines_sampled(machines, since)
    assert fast.keys() == sampled.keys() == set(machines)
    for pk in machines:
        a, b = fast[pk], sampled[pk]
        assert (a.samples, a.event_samples) == (b.samples, b.event_samples)
        assert a.seconds == pytest.approx(b.seconds)
        assert a.events == pytest.approx(b.events)


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert runaways.percentile([], 0.95) is None
    assert runaways.percentile([5.0], 0.95) == 5.0
    assert runaways.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert runaways.percentile([10.0, 0.0, 20.0], 0.95) == pytest.approx(19.0)


# --- Start rate -------------------------------------------------------------------------


def starts(
    sm: StateMachine,
    *,
    every: dt.timedelta,
    since: dt.timedelta,
    until: dt.timedelta = dt.timedelta(0),
    prefix: str = "s",
) -> int:
    n = 0
    at = NOW - since
    while at < NOW - until:
        execution_row(sm, f"{prefix}-{n}", "SUCCEEDED", at)
        at += every
        n += 1
    return n


def test_it_flags_a_start_rate_far_above_the_trailing_baseline() -> None:
    burst = state_machine_row("burst")
    steady = state_machine_row("steady")
    # Every 4 hours for a week, then 40 in the last hour.
    starts(
        burst, every=dt.timedelta(hours=4), since=dt.timedelta(days=7), until=dt.timedelta(hours=1)
    )
    starts(burst, every=dt.timedelta(seconds=90), since=dt.timedelta(hours=1), prefix="now")
    # Twice an hour all week, and twice in the last hour.
    starts(steady, every=dt.timedelta(minutes=30), since=dt.timedelta(days=7))
    running(burst, "b-run", dt.timedelta(seconds=5))
    running(steady, "s-run", dt.timedelta(seconds=5))

    report = runaways.report(now=NOW)
    machines = {m.state_machine.name: m for m in report.machines}

    assert machines["burst"].rate.last_hour == 41  # 40 and the running one
    assert machines["burst"].rate.per_hour == pytest.approx(42 / 167, rel=0.02)
    assert machines["burst"].rate.flagged
    assert machines["steady"].rate.per_hour == pytest.approx(2.0, rel=0.02)
    assert not machines["steady"].rate.flagged
    assert next(m.state_machine.name for m in report.machines) == "burst"


def test_the_start_rate_baseline_covers_only_what_the_cache_has_seen() -> None:
    # The dashboard has synced for two hours: ten an hour before, twelve now.
    sm = state_machine_row("young")
    starts(
        sm, every=dt.timedelta(minutes=6), since=dt.timedelta(hours=2), until=dt.timedelta(hours=1)
    )
    starts(sm, every=dt.timedelta(minutes=5), since=dt.timedelta(hours=1), prefix="now")
    running(sm, "r", dt.timedelta(seconds=1))
    (machine,) = runaways.report(now=NOW).machines
    assert machine.rate.per_hour == pytest.approx(10.0, rel=0.05)
    assert not machine.rate.flagged


def test_a_brand_new_state_machine_has_no_rate_to_compare_with() -> None:
    sm = state_machine_row("brand-new")
    starts(sm, every=dt.timedelta(seconds=30), since=dt.timedelta(minutes=30))
    running(sm, "r", dt.timedelta(seconds=1))
    (machine,) = runaways.report(now=NOW).machines
    assert machine.rate.last_hour == 61
    assert machine.rate.per_hour is None
    assert not machine.rate.flagged


# --- The page -------------------------------------------------------------------------------


def flagged_world(n_machines: int, per_machine: int) -> None:
    for k in range(n_machines):
        sm = state_machine_row(f"machine-{k}")
        succeeded(sm, 6, seconds=30)
        for i in range(per_machine):
            running(sm, f"m{k}-r{i}", dt.timedelta(minutes=5 + i), ["A", "B", "C"][i % 3])


def test_the_query_count_does_not_grow_with_state_machines_or_executions(
    viewer_client: Client,
) -> None:
    flagged_world(2, 3)
    viewer_client.get(URL)  # the session, warm
    # With Redis the sync bar's answer is shared for a moment: measure the
    # request that works it out, both times.
    cache.clear()
    with CaptureQueriesContext(connection) as small:
        assert viewer_client.get(URL).status_code == 200
    for k in range(2, 8):
        sm = state_machine_row(f"machine-{k}")
        succeeded(sm, 6, seconds=30)
        for i in range(12):
            running(sm, f"m{k}-r{i}", dt.timedelta(minutes=5 + i), ["A", "B", "C", "D"][i % 4])
    cache.clear()
    with CaptureQueriesContext(connection) as large:
        response = viewer_client.get(URL)
    assert len(response.context["report"].machines) == 8
    assert len(response.context["report"].outliers) == 2 * 3 + 6 * 12
    assert len(large.captured_queries) == len(small.captured_queries)
    # session, user, the six of the report, the user's permissions for the
    # stop buttons (2), the sync bar (2).
    assert len(large.captured_queries) <= 12


def test_the_page_shows_flags_and_links_the_list_to_them(operator_client: Client) -> None:
    sm = state_machine_row("orders")
    succeeded(sm, 20, seconds=60)
    running(sm, "stuck-1", dt.timedelta(minutes=10), "Charge")
    body = html.unescape(operator_client.get(URL + "?tz=Europe/Berlin").content.decode())
    assert "1 longer than usual" in body
    assert "1 flagged" in body
    # The flag links to the list of exactly those: running, started before now - p95.
    assert "started_before=" in body
    assert "tz=Europe%2FBerlin" in body
    # An operator can go to the bulk stop's dry run for the group and the machine.
    assert "Stop these 1…" in body
    assert "in_state=Charge" in body
    assert "Stop all 1 running…" in body
    assert 'name="execution"' in body  # outliers can be picked


def test_a_viewer_sees_no_stop_buttons(viewer_client: Client) -> None:
    sm = state_machine_row("orders")
    succeeded(sm, 20, seconds=60)
    running(sm, "stuck-1", dt.timedelta(minutes=10), "Charge")
    body = viewer_client.get(URL).content.decode()
    assert "stuck-1" in body
    assert "Stop these" not in body
    assert "Stop all" not in body
    assert 'name="execution"' not in body


def test_htmx_gets_the_results_alone(viewer_client: Client) -> None:
    running(state_machine_row("orders"), "r", dt.timedelta(seconds=5))
    response = viewer_client.get(URL, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="runaways"')
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_nothing_running_says_so(viewer_client: Client) -> None:
    execution_row(status="SUCCEEDED")
    response = viewer_client.get(URL)
    assert response.status_code == 200
    assert "Nothing is running" in response.content.decode()


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_answers_only_get(viewer_client: Client) -> None:
    assert viewer_client.post(URL).status_code == 405
