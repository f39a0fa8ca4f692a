"""/failures/: failed, timed-out and aborted executions of a window, grouped by
state machine, failing state and error; and the list filtered to one group."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from executions.models import Execution, StateMachine
from executions.reads import failures
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

URL = reverse("failures")
NOW = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def failed(
    sm: StateMachine,
    ago: dt.timedelta,
    *,
    state: str = "Charge",
    error: str | None = "Payment.Declined",
    status: str = "FAILED",
    ran: dt.timedelta = dt.timedelta(seconds=30),
    name: str | None = None,
) -> Execution:
    """An execution that ended `ago` before NOW, after running `ran`."""
    stop = NOW - ago
    return execution_row(
        sm,
        name,
        status,
        stop - ran,
        stop_date=stop,
        error=error,
        cause="boom" if error else None,
        failed_state=state,
    )


def groups(response: Any) -> list[tuple[str, str, str, int]]:
    return [
        (g.state_machine.name, g.failed_state, g.error, g.count)
        for g in response.context["report"].groups
    ]


def group_of(response: Any, sm: str, state: str, error: str) -> failures.Group:
    return next(
        g
        for g in response.context["report"].groups
        if (g.state_machine.name, g.failed_state, g.error) == (sm, state, error)
    )


def list_names(client: Any, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, response.content.decode()[:2000]
    return sorted(ex.name for ex in response.context["page"].rows)


# --- Access ----------------------------------------------------------------------------


def test_anonymous_people_are_sent_to_the_login_page(client: Any) -> None:
    response = client.get(URL, {"window": "1h"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote("/failures/?window=1h")


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_it_only_answers_get(viewer_client: Any, method: str) -> None:
    assert getattr(viewer_client, method)(URL).status_code == 405


def test_the_navigation_links_to_it(viewer_client: Any) -> None:
    body = viewer_client.get(reverse("execution_list")).content.decode()
    assert f'href="{URL}">Failures</a>' in body


# --- Grouping --------------------------------------------------------------------------


def test_it_groups_failures_by_state_machine_failing_state_and_error(viewer_client: Any) -> None:
    orders, mail = state_machine_row("orders"), state_machine_row("mail")
    for minutes in (10, 20, 30):
        failed(orders, dt.timedelta(minutes=minutes))
    failed(orders, dt.timedelta(minutes=40), error="Lambda.ServiceException")
    failed(
        orders, dt.timedelta(minutes=50), state="Ship", error="States.Timeout", status="TIMED_OUT"
    )
    failed(mail, dt.timedelta(minutes=5), state="", error=None, status="ABORTED")
    failed(mail, dt.timedelta(minutes=6), state="", error="", status="ABORTED")
    # Not failures, or not in the last 24 hours.
    execution_row(orders, "fine", "SUCCEEDED", NOW - dt.timedelta(minutes=3))
    execution_row(orders, "running", "RUNNING", NOW - dt.timedelta(minutes=3))
    failed(orders, dt.timedelta(hours=30))

    response = viewer_client.get(URL)

    assert response.status_code == 200
    assert sorted(groups(response)) == [
        ("mail", "", "", 2),
        ("orders", "Charge", "Lambda.ServiceException", 1),
        ("orders", "Charge", "Payment.Declined", 3),
        ("orders", "Ship", "States.Timeout", 1),
    ]
    report = response.context["report"]
    assert (report.total, report.group_count) == (7, 4)
    body = response.content.decode()
    assert "<code>Payment.Declined</code>" in body
    assert "no error" in body
    assert "not known" in body


def test_the_newest_incident_stands_first(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    failed(sm, dt.timedelta(hours=5), error="Old.Many")
    failed(sm, dt.timedelta(hours=4), error="Old.Many")
    failed(sm, dt.timedelta(hours=3), error="Old.Many")
    failed(sm, dt.timedelta(minutes=2), error="Fresh.One")
    failed(sm, dt.timedelta(hours=1), error="Middle")

    errors = [g.error for g in viewer_client.get(URL).context["report"].groups]

    assert errors == ["Fresh.One", "Middle", "Old.Many"]


def test_a_group_has_its_first_and_last_seen_and_its_count_per_hour(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    for ago in (
        dt.timedelta(minutes=5),
        dt.timedelta(minutes=15),
        dt.timedelta(hours=3, minutes=30),
    ):
        failed(sm, ago)

    response = viewer_client.get(URL, {"window": "24h"})
    group = group_of(response, "orders", "Charge", "Payment.Declined")

    assert group.first_seen == NOW - dt.timedelta(hours=3, minutes=30)
    assert group.last_seen == NOW - dt.timedelta(minutes=5)
    buckets = response.context["report"].buckets
    assert buckets.size == dt.timedelta(hours=1)
    # 24 h from 12:00 yesterday: the hour buckets of 08:00 and 11:00 today.
    assert sum(group.per_bucket) == 3
    assert group.per_bucket[buckets.index(NOW - dt.timedelta(minutes=5))] == 2
    assert group.per_bucket[buckets.index(NOW - dt.timedelta(hours=3, minutes=30))] == 1
    assert len(group.bars) == 2
    assert response.context["report"].bucket_label == "hour"
    body = response.content.decode()
    assert "<title>2 from 2026-11-20 11:00 UTC</title></rect>" in body
    assert "<title>1 from 2026-11-20 08:00 UTC</title></rect>" in body


def test_the_share_is_of_the_state_machines_runs_in_the_window(viewer_client: Any) -> None:
    sm, other = state_machine_row("orders"), state_machine_row("mail")
    for i in range(6):
        execution_row(sm, f"ok-{i}", "SUCCEEDED", NOW - dt.timedelta(hours=2, minutes=i))
    failed(sm, dt.timedelta(hours=1))
    # Started before the window, failed in it: one of its runs in the window too.
    failed(sm, dt.timedelta(hours=1), ran=dt.timedelta(hours=30))
    for i in range(50):
        execution_row(other, f"other-{i}", "SUCCEEDED", NOW - dt.timedelta(hours=2))
    # Runs before the window do not count.
    execution_row(sm, "yesterday", "SUCCEEDED", NOW - dt.timedelta(hours=40))

    response = viewer_client.get(URL)
    group = group_of(response, "orders", "Charge", "Payment.Declined")

    assert (group.count, group.runs) == (2, 8)
    assert group.share == pytest.approx(0.25)
    assert "25 %" in response.content.decode()


def test_a_group_is_new_unless_it_failed_before_the_window(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    failed(sm, dt.timedelta(minutes=10), error="Known.Before")
    failed(sm, dt.timedelta(days=20), error="Known.Before")
    failed(sm, dt.timedelta(minutes=10), error="Brand.New")
    # The same error in another state is another group: it does not make this one old.
    failed(sm, dt.timedelta(days=2), state="Ship", error="Brand.New")

    response = viewer_client.get(URL, {"window": "1h"})
    known = group_of(response, "orders", "Charge", "Known.Before")
    new = group_of(response, "orders", "Charge", "Brand.New")

    assert not known.new
    assert known.seen_before == NOW - dt.timedelta(days=20)
    assert new.new
    assert new.seen_before is None
    body = response.content.decode()
    assert body.count('class="new-badge"') == 1


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("15m", ["5m"]),
        ("1h", ["5m", "30m"]),
        ("24h", ["5m", "30m", "5h"]),
        ("7d", ["5m", "30m", "5h", "3d"]),
    ],
)
def test_each_window_holds_the_failures_that_ended_in_it(
    viewer_client: Any, window: str, expected: list[str]
) -> None:
    sm = state_machine_row("orders")
    ages = {
        "5m": dt.timedelta(minutes=5),
        "30m": dt.timedelta(minutes=30),
        "5h": dt.timedelta(hours=5),
        "3d": dt.timedelta(days=3),
        "9d": dt.timedelta(days=9),
    }
    for label, ago in ages.items():
        failed(sm, ago, error=f"E.{label}")

    response = viewer_client.get(URL, {"window": window})

    assert response.status_code == 200
    assert sorted(g.error for g in response.context["report"].groups) == sorted(
        f"E.{label}" for label in expected
    )
    assert response.context["window"] == window


def test_a_range_holds_the_failures_that_ended_in_it(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    failed(sm, dt.timedelta(days=10), error="Before")
    failed(sm, dt.timedelta(days=5), error="Inside")
    failed(sm, dt.timedelta(days=2), error="After")

    response = viewer_client.get(
        URL, {"since": "2026-11-14T00:00:00Z", "until": "2026-11-17T00:00:00Z"}
    )

    assert response.status_code == 200
    assert [g.error for g in response.context["report"].groups] == ["Inside"]
    assert response.context["window"] == ""
    # A range of days is drawn per hour; a longer one per day.
    assert response.context["report"].bucket_label == "hour"
    longer = viewer_client.get(URL, {"since": "2026-11-01T00:00:00Z"})
    assert [g.error for g in longer.context["report"].groups] == ["After", "Inside", "Before"]
    assert longer.context["report"].bucket_label == "day"


def test_an_empty_window_says_so(viewer_client: Any) -> None:
    failed(state_machine_row("orders"), dt.timedelta(hours=3))

    response = viewer_client.get(URL, {"window": "1h"})

    assert response.status_code == 200
    assert response.context["report"].groups == []
    assert "No failures in this window." in response.content.decode()


def test_it_shows_at_most_max_groups_and_says_how_many_more(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failures, "MAX_GROUPS", 2)
    sm = state_machine_row("orders")
    for i in range(4):
        failed(sm, dt.timedelta(minutes=i + 1), error=f"E{i}")

    response = viewer_client.get(URL)

    assert [g.error for g in response.context["report"].groups] == ["E0", "E1"]
    assert "And 2 more groups with older failures" in response.content.decode()


def test_the_page_costs_the_same_queries_whatever_the_number_of_groups(
    viewer_client: Any,
) -> None:
    def queries_for(groups: int) -> int:
        Execution.objects.all().delete()
        sm = state_machine_row(f"orders-{groups}")
        for i in range(groups):
            failed(sm, dt.timedelta(minutes=5), error=f"E{i}")
            failed(sm, dt.timedelta(days=3), error=f"E{i}")
        with CaptureQueriesContext(connection) as captured:
            response = viewer_client.get(URL)
        assert len(response.context["report"].groups) == groups
        return len(captured.captured_queries)

    viewer_client.get(URL)  # warm what the first request of a session reads once
    assert queries_for(2) == queries_for(12)


# --- Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"window": "2h"}, "is not a window; use one of 15m, 1h, 24h, 7d"),
        ({"since": "yesterday"}, "is not an ISO 8601 time"),
        ({"until": "2026-11-19T00:00:00Z"}, "a range needs its start (since)"),
        (
            {"since": "2026-11-19T00:00:00Z", "until": "2026-11-18T00:00:00Z"},
            "must be later than since",
        ),
        ({"since": "2026-10-01T00:00:00Z"}, "a range spans at most 31 days"),
        ({"since": "2026-11-21T00:00:00Z"}, "is in the future"),
        ({"window": "1h", "since": "2026-11-19T00:00:00Z"}, "a window or a range"),
        ({"since": "9999-12-31T23:00:00-04:00"}, "is not an ISO 8601 time"),
    ],
)
def test_a_bad_window_is_a_400_that_says_why(
    viewer_client: Any, query: dict[str, str], words: str
) -> None:
    response = viewer_client.get(URL, query)

    assert response.status_code == 400
    assert words in response.content.decode().replace("&#x27;", "'")


# --- Zones -----------------------------------------------------------------------------


def test_tz_shows_times_in_that_zone_and_keeps_it_in_links(viewer_client: Any) -> None:
    failed(state_machine_row("orders"), dt.timedelta(minutes=30))

    response = viewer_client.get(URL, {"tz": "Asia/Kolkata"})

    body = response.content.decode()
    # 11:30 UTC is 17:00 in India.
    assert "2026-11-20 17:00:00 IST" in body
    group = response.context["report"].groups[0]
    assert parse_qs(urlsplit(group.list_url).query)["tz"] == ["Asia/Kolkata"]
    assert "/failures/?window=1h&amp;tz=Asia%2FKolkata" in body


def test_a_range_without_a_zone_is_read_in_the_pages_zone(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    failed(sm, dt.timedelta(hours=3), error="Early")  # 09:00 UTC, 14:30 in India
    failed(sm, dt.timedelta(hours=1), error="Late")  # 11:00 UTC, 16:30 in India

    response = viewer_client.get(
        URL, {"since": "2026-11-20T14:00", "until": "2026-11-20T15:00", "tz": "Asia/Kolkata"}
    )

    assert [g.error for g in response.context["report"].groups] == ["Early"]


# --- The group's link to the list ------------------------------------------------------


def test_a_groups_link_lists_exactly_its_executions(viewer_client: Any) -> None:
    sm, other = state_machine_row("orders"), state_machine_row("mail")
    failed(sm, dt.timedelta(minutes=5), name="g-1")
    failed(sm, dt.timedelta(minutes=9), name="g-2", status="TIMED_OUT")
    # Started a day before the window's end, failed in it.
    failed(sm, dt.timedelta(minutes=20), name="g-long", ran=dt.timedelta(hours=20))
    # Decoys: each differs from the group in one thing.
    failed(sm, dt.timedelta(minutes=6), name="other-state", state="Ship")
    failed(sm, dt.timedelta(minutes=6), name="other-error", error="Payment.CardExpired")
    failed(other, dt.timedelta(minutes=6), name="other-machine")
    failed(sm, dt.timedelta(hours=2), name="before-window")
    execution_row(sm, "succeeded", "SUCCEEDED", NOW - dt.timedelta(minutes=7))

    response = viewer_client.get(URL, {"window": "1h"})
    group = group_of(response, "orders", "Charge", "Payment.Declined")

    assert list_names(viewer_client, group.list_url) == ["g-1", "g-2", "g-long"]
    assert f'data-row-link="{group.list_url.replace("&", "&amp;")}"' in response.content.decode()


def test_the_link_of_a_group_without_error_or_state_lists_exactly_those(
    viewer_client: Any,
) -> None:
    sm = state_machine_row("mail")
    failed(sm, dt.timedelta(minutes=5), name="null-error", state="", error=None, status="ABORTED")
    failed(sm, dt.timedelta(minutes=6), name="empty-error", state="", error="", status="ABORTED")
    failed(sm, dt.timedelta(minutes=7), name="with-error", state="", error="Stopped.Manually")
    failed(sm, dt.timedelta(minutes=8), name="with-state", state="Send", error=None)

    response = viewer_client.get(URL, {"window": "1h"})
    group = group_of(response, "mail", "", "")

    assert list_names(viewer_client, group.list_url) == ["empty-error", "null-error"]
    body = viewer_client.get(group.list_url).content.decode()
    assert "(none)" in body
    assert "(unknown)" in body


def test_the_list_filters_by_error_and_failing_state_and_says_so(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    failed(sm, dt.timedelta(minutes=5), name="a")
    failed(sm, dt.timedelta(minutes=5), name="b", state="Ship")
    failed(sm, dt.timedelta(minutes=5), name="c", error="Payment.Declined.Twice")

    url = reverse("execution_list")
    assert list_names(viewer_client, f"{url}?failed_error=Payment.Declined") == ["a", "b"]
    assert list_names(viewer_client, f"{url}?failed_state=Charge") == ["a", "c"]
    response = viewer_client.get(url, {"failed_error": "Payment.Declined", "failed_state": "Ship"})
    body = response.content.decode()
    assert "Failed in state" in body
    assert "Payment.Declined" in body
    # The form keeps them when other filters change.
    assert '<input type="hidden" name="failed_state" value="Ship">' in body


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"failed_error": "E" * 257}, "longer than 256 characters"),
        ({"failed_state": "S" * 81}, "longer than 80 characters"),
        ({"stopped_after": "soon"}, "is not an ISO 8601 time"),
        (
            {"stopped_after": "2026-11-20T00:00:00Z", "stopped_before": "2026-11-19T00:00:00Z"},
            "must be later than stopped_after",
        ),
    ],
)
def test_bad_group_filters_on_the_list_are_a_400(
    viewer_client: Any, query: dict[str, str], words: str
) -> None:
    response = viewer_client.get(reverse("execution_list"), query)

    assert response.status_code == 400
    assert words in response.content.decode().replace("&#x27;", "'")
