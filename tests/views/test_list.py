"""/executions/: the list, its filters, counts per status, keyset pages, and
the jump from a pasted ARN or console URL."""

from __future__ import annotations

import base64
import datetime as dt
import html
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Execution, StateMachine
from executions.reads import queries
from executions.sync import freshness
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

URL = "/executions/"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def names(response: Any) -> list[str]:
    return [ex.name for ex in response.context["page"].rows]


# --- Access ----------------------------------------------------------------------------


def test_anonymous_people_are_sent_to_the_login_page(client: Any) -> None:
    response = client.get(URL, {"status": "FAILED"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote("/executions/?status=FAILED")


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_it_only_answers_get(viewer_client: Any, method: str) -> None:
    assert getattr(viewer_client, method)(URL).status_code == 405


# --- Rows ------------------------------------------------------------------------------


def test_it_lists_executions_newest_first_with_every_column(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    execution_row(sm, "old", "SUCCEEDED", T0)
    execution_row(sm, "failed-one", "FAILED", T0 + dt.timedelta(minutes=1), error="Order.Bad")
    running = execution_row(sm, "running-one", "RUNNING", T0 + dt.timedelta(minutes=2))

    response = viewer_client.get(URL)
    assert response.status_code == 200
    assert names(response) == ["running-one", "failed-one", "old"]
    body = response.content.decode()
    assert f'href="/executions/{running.arn}/"' in body
    assert f'href="/state-machines/{sm.arn}/"' in body
    assert '<span class="status status-FAILED">Failed</span>' in body
    assert "Order.Bad" in body
    assert "2024-05-01 12:01:00 UTC" in body
    assert " ago</div>" in body
    # Finished: the fixed duration; running: a live one from its start.
    assert "42 s" in body
    assert 'data-since="2024-05-01T12:02:00Z"' in body


def test_the_rows_refresh_themselves_only_while_one_of_them_runs(viewer_client: Any) -> None:
    sm = state_machine_row()
    ex = execution_row(sm, "r", "RUNNING", T0)
    body = viewer_client.get(URL).content.decode()
    assert 'hx-trigger="every 5s"' in body
    assert 'hx-get="/executions/"' in body

    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED", stop_date=T0)
    body = viewer_client.get(URL).content.decode()
    assert "hx-trigger" not in body


def test_an_htmx_refresh_gets_the_rows_alone(viewer_client: Any) -> None:
    execution_row(status="RUNNING", name="still-going")
    response = viewer_client.get(URL, {"status": "RUNNING"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="list-results"')
    assert "still-going" in body
    assert "<html" not in body
    assert "<form" not in body
    assert 'hx-get="/executions/?status=RUNNING"' in body
    assert "HX-Request" in response["Vary"]


def test_the_rows_never_load_inputs_or_outputs(viewer_client: Any) -> None:
    execution_row(input='{"big": "' + "x" * 10_000 + '"}')
    with CaptureQueriesContext(connection) as queries_run:
        viewer_client.get(URL)
    page_sql = [
        q["sql"] for q in queries_run.captured_queries if "executions_execution" in q["sql"]
    ]
    assert page_sql
    assert not any('"executions_execution"."input"' in sql for sql in page_sql)
    assert not any('"executions_execution"."output"' in sql for sql in page_sql)


# --- Empty states ----------------------------------------------------------------------


def test_an_empty_cache_says_nothing_was_synced_yet(viewer_client: Any) -> None:
    body = viewer_client.get(URL).content.decode()
    assert "No executions synced yet." in body
    assert "paste its ARN" in body


def test_filters_that_match_nothing_say_so(viewer_client: Any) -> None:
    execution_row(name="abc")
    body = viewer_client.get(URL, {"q": "zzz"}).content.decode()
    assert "No executions match these filters." in body
    assert "No executions synced yet." not in body


def test_a_state_machine_that_was_never_synced_is_named_as_such(viewer_client: Any) -> None:
    execution_row()
    arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:elsewhere"
    body = viewer_client.get(URL, {"state_machine": arn}).content.decode()
    assert "No executions match these filters." in body
    assert "is not among the synced ones" in body


# --- Filters ---------------------------------------------------------------------------


@pytest.fixture
def mixed() -> dict[str, Execution]:
    orders, billing = state_machine_row("orders"), state_machine_row("billing")
    rows = {
        "o-ok": execution_row(orders, "o-ok", "SUCCEEDED", T0),
        "o-failed": execution_row(orders, "o-failed", "FAILED", T0 + dt.timedelta(hours=1)),
        "b-timeout": execution_row(billing, "b-timeout", "TIMED_OUT", T0 + dt.timedelta(hours=2)),
        "b-running": execution_row(billing, "B-Running", "RUNNING", T0 + dt.timedelta(hours=3)),
        "b-aborted": execution_row(billing, "b-aborted", "ABORTED", T0 + dt.timedelta(hours=4)),
    }
    return rows


def test_status_filters_combine_and_accept_commas_and_any_case(
    viewer_client: Any, mixed: dict[str, Execution]
) -> None:
    assert names(viewer_client.get(URL, {"status": "FAILED"})) == ["o-failed"]
    both = ["b-timeout", "o-failed"]
    assert names(viewer_client.get(URL + "?status=FAILED&status=TIMED_OUT")) == both
    assert names(viewer_client.get(URL, {"status": "failed,timed_out"})) == both


def test_the_state_machine_filter(viewer_client: Any, mixed: dict[str, Execution]) -> None:
    arn = mixed["o-ok"].state_machine.arn
    response = viewer_client.get(URL, {"state_machine": arn})
    assert names(response) == ["o-failed", "o-ok"]
    # Shown as a removable filter, by name.
    body = response.content.decode()
    assert "<strong>orders</strong>" in body
    both = viewer_client.get(URL, {"state_machine": arn, "status": "FAILED"})
    assert names(both) == ["o-failed"]


def test_the_name_search_is_a_case_insensitive_substring(
    viewer_client: Any, mixed: dict[str, Execution]
) -> None:
    assert names(viewer_client.get(URL, {"q": "RUN"})) == ["B-Running"]
    assert names(viewer_client.get(URL, {"q": "-o"})) == ["o-ok"]
    assert names(viewer_client.get(URL, {"q": "b-"})) == ["b-aborted", "B-Running", "b-timeout"]


def test_the_start_range_takes_times_with_and_without_a_zone(
    viewer_client: Any, mixed: dict[str, Execution]
) -> None:
    after_1 = viewer_client.get(URL, {"started_after": "2024-05-01T13:00:00Z"})
    assert names(after_1) == ["b-aborted", "B-Running", "b-timeout", "o-failed"]
    window = viewer_client.get(
        URL, {"started_after": "2024-05-01T13:00:00+00:00", "started_before": "2024-05-01T15:00Z"}
    )
    assert names(window) == ["b-timeout", "o-failed"]
    # No zone: the page's zone. 16:30 in Berlin (UTC+2 in May) is 14:30 UTC.
    berlin = viewer_client.get(URL, {"started_after": "2024-05-01T16:30", "tz": "Europe/Berlin"})
    assert names(berlin) == ["b-aborted", "B-Running"]
    # A date alone is its midnight; nanoseconds from a log line are fine.
    assert len(names(viewer_client.get(URL, {"started_after": "2024-05-01"}))) == 5
    nanos = viewer_client.get(URL, {"started_before": "2024-05-01T12:00:00.000001999Z"})
    assert names(nanos) == ["o-ok"]


def test_presets_are_absolute_times_kept_with_the_other_filters(
    viewer_client: Any, mixed: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"status": "FAILED", "tz": "Asia/Tokyo"})
    presets = dict(response.context["presets"])
    assert "status=FAILED" in presets["1 h"]
    assert "started_after=20" in presets["1 h"]
    assert "tz=Asia%2FTokyo" in presets["1 h"]


# --- Bad values: a 400 that names the parameter, never a 500 ---------------------------


@pytest.mark.parametrize(
    ("params", "parameter", "why"),
    [
        ({"status": "BOGUS"}, "status", "is not an execution status"),
        ({"status": ["FAILED", "running\x00"]}, "status", "is not an execution status"),
        ({"started_after": "yesterday"}, "started_after", "is not an ISO 8601 time"),
        ({"started_before": "2024-13-01"}, "started_before", "is not an ISO 8601 time"),
        ({"started_after": "0001-01-01T00:00:00+14:00"}, "started_after", "ISO 8601"),
        (
            {"started_after": "2024-05-02", "started_before": "2024-05-01"},
            "started_before",
            "must be later than started_after",
        ),
        ({"cursor": "garbage!"}, "cursor", "not a page cursor"),
        # "n1714564800000000.-5": a negative id
        ({"cursor": "bjE3MTQ1NjQ4MDAwMDAwMDAuLTU"}, "cursor", "not a page cursor"),
        ({"cursor": "ü" * 10}, "cursor", "not a page cursor"),
        ({"cursor": "x" * 500}, "cursor", "not a page cursor"),
        ({"state_machine": "orders"}, "state_machine", "is not a state machine ARN"),
        (
            {"state_machine": "arn:aws:states:us-east-1:123456789012:execution:sm:run"},
            "state_machine",
            "is not a state machine ARN",
        ),
        ({"per_page": "0"}, "per_page", "must be at least 1"),
        ({"per_page": "1000"}, "per_page", "at most 200"),
        ({"per_page": "ten"}, "per_page", "not a whole number"),
        ({"account": "12345"}, "account", "is not an AWS account id (12 digits"),
        ({"account": "١٢٣٤٥٦٧٨٩٠١٢"}, "account", "is not an AWS account id"),
        ({"account": ["123456789012", "x" * 12]}, "account", "is not an AWS account id"),
        ({"account": ",".join(f"{i:012d}" for i in range(51))}, "account", "at most 50"),
        ({"region": "mars"}, "region", "is not an AWS region name (e.g. us-east-1)"),
        ({"region": "xx-nowhere-9"}, "region", "AWS has no region 'xx-nowhere-9'"),
        ({"region": "us-east-1\x00"}, "region", "is not an AWS region name"),
        ({"q": "a\x00b"}, "q", "Null characters are not allowed"),
        ({"q": "x" * 5000}, "q", "longer than 4096 characters"),
    ],
)
def test_a_bad_value_is_a_400_that_says_which_and_why(
    viewer_client: Any, params: dict[str, Any], parameter: str, why: str
) -> None:
    execution_row()
    response = viewer_client.get(URL, params)
    assert response.status_code == 400
    body = html.unescape(response.content.decode())
    assert f"Bad value for {parameter}: " in body.replace("<code>", "").replace("</code>", "")
    assert why in body
    # The form stays, to fix the value in place.
    assert '<form class="filters"' in body


def test_a_bad_status_keeps_the_good_ones_in_the_form(viewer_client: Any) -> None:
    body = viewer_client.get(URL + "?status=FAILED&status=NOPE").content.decode()
    assert '<input type="hidden" name="status" value="FAILED">' in body
    assert 'value="NOPE"' not in body


def test_a_negative_cursor_id_is_refused() -> None:
    token = queries.Cursor(T0, 5).encode()
    assert queries.Cursor.decode(token) == queries.Cursor(T0, 5)
    forged = base64.urlsafe_b64encode(b"n1714564800000000.-5").decode()
    with pytest.raises(ValueError, match="not a cursor"):
        queries.Cursor.decode(forged)
    zero = base64.urlsafe_b64encode(b"n1714564800000000.0").decode()
    with pytest.raises(ValueError, match="not a cursor"):
        queries.Cursor.decode(zero)
    far = base64.urlsafe_b64encode(b"n999999999999999999.1").decode()
    with pytest.raises(ValueError, match="not a cursor"):
        queries.Cursor.decode(far)


@pytest.mark.parametrize(
    "query",
    [
        "q=%F0%9F%94%A5",
        "q=%ff%fe",
        "q=%25%25_%5C",
        "status=",
        "status=%00",
        "started_after=%00",
        "started_after=" + "9" * 100,
        "started_after=9999-12-31T23:59:59-14:00",
        "state_machine=%00",
        "per_page=-1",
        "per_page=99999999999999999999999",
        "cursor=====",
        "cursor=%00",
        "tz=UTC&cursor=bjE3MTQ1NjQ4MDAwMDAwMDAuMQ",
    ],
)
def test_no_input_makes_a_500(viewer_client: Any, query: str) -> None:
    execution_row(name="100%_done")
    assert viewer_client.get(f"{URL}?{query}").status_code in (200, 400)


def test_like_wildcards_in_the_search_are_literal(viewer_client: Any) -> None:
    execution_row(name="100pct")
    execution_row(name="100%_done")
    assert names(viewer_client.get(URL, {"q": "%_"})) == ["100%_done"]


# --- Pages -----------------------------------------------------------------------------


def walk(client: Any, first_url: str, link: str) -> list[list[str]]:
    pages, url = [], first_url
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append(names(response))
        url = response.context[link]
    return pages


def test_keyset_pages_walk_every_row_exactly_once_in_order(viewer_client: Any) -> None:
    sm = state_machine_row()
    # Groups of three executions start in the same microsecond: the id settles the order.
    for i in range(120):
        execution_row(sm, f"run-{i:03d}", "SUCCEEDED", T0 + dt.timedelta(minutes=i // 3))
    expected = list(Execution.objects.order_by("-start_date", "-id").values_list("name", flat=True))

    forward = walk(viewer_client, URL, "older_url")
    assert [len(p) for p in forward] == [50, 50, 20]
    assert [name for p in forward for name in p] == expected

    # And back from the last page to the first.
    last = viewer_client.get(URL)
    for _ in range(2):
        last = viewer_client.get(last.context["older_url"])
    backward = walk(viewer_client, last.context["newer_url"], "newer_url")
    assert backward == [forward[1], forward[0]]
    assert viewer_client.get(URL).context["newer_url"] is None


def test_pages_of_several_statuses_walk_in_order(viewer_client: Any) -> None:
    sm = state_machine_row()
    statuses = ["FAILED", "SUCCEEDED", "TIMED_OUT", "ABORTED", "SUCCEEDED"]
    for i in range(60):
        execution_row(sm, f"r-{i:02d}", statuses[i % 5], T0 + dt.timedelta(seconds=i // 2))
    wanted = ("FAILED", "TIMED_OUT", "ABORTED")
    expected = list(
        Execution.objects.filter(status__in=wanted)
        .order_by("-start_date", "-id")
        .values_list("name", flat=True)
    )
    pages = walk(
        viewer_client,
        URL + "?status=FAILED&status=TIMED_OUT&status=ABORTED&per_page=7",
        "older_url",
    )
    assert all(len(p) == 7 for p in pages[:-1])
    assert [name for p in pages for name in p] == expected


def test_page_links_keep_the_filters_and_the_zone(viewer_client: Any) -> None:
    sm = state_machine_row()
    for i in range(5):
        execution_row(sm, f"x-{i}", "FAILED", T0 + dt.timedelta(minutes=i))
    response = viewer_client.get(URL, {"status": "FAILED", "per_page": 2, "tz": "Europe/Berlin"})
    older = response.context["older_url"]
    assert "status=FAILED" in older
    assert "per_page=2" in older
    assert "tz=Europe%2FBerlin" in older
    assert "cursor=" in older
    assert names(viewer_client.get(older)) == ["x-2", "x-1"]


def test_per_page_is_capped_at_200(viewer_client: Any) -> None:
    assert viewer_client.get(URL, {"per_page": 200}).status_code == 200
    assert viewer_client.get(URL, {"per_page": 201}).status_code == 400


# --- Counts per status -----------------------------------------------------------------


def chips(response: Any) -> dict[str, str]:
    return {c.status: c.count for c in response.context["chips"]}


def test_counts_per_status_follow_the_other_filters_but_not_the_status_one(
    viewer_client: Any, mixed: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"status": "FAILED"})
    assert chips(response) == {
        "RUNNING": "1",
        "SUCCEEDED": "1",
        "FAILED": "1",
        "TIMED_OUT": "1",
        "ABORTED": "1",
        "PENDING_REDRIVE": "0",
    }
    assert response.context["all_chip"].count == "5"
    billing = mixed["b-running"].state_machine.arn
    assert chips(viewer_client.get(URL, {"state_machine": billing}))["SUCCEEDED"] == "0"
    assert chips(viewer_client.get(URL, {"state_machine": billing}))["ABORTED"] == "1"


def test_status_chips_toggle_the_status_filter(
    viewer_client: Any, mixed: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"status": "FAILED", "q": "o"})
    by_status = {c.status: c for c in response.context["chips"]}
    assert by_status["FAILED"].selected
    # Clicking the selected one removes it; another one adds it; filters stay.
    assert by_status["FAILED"].url == "/executions/?q=o"
    assert by_status["TIMED_OUT"].url == "/executions/?status=FAILED&status=TIMED_OUT&q=o"
    assert response.context["all_chip"].url == "/executions/?q=o"


def test_counts_stop_at_the_cap(viewer_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "CAP", 3)
    for _ in range(5):
        execution_row(status="FAILED")
    execution_row(status="RUNNING")
    response = viewer_client.get(URL)
    assert chips(response)["FAILED"] == "3+"
    assert chips(response)["RUNNING"] == "1"
    assert response.context["all_chip"].count == "4+"
    assert "counting stops there" in response.content.decode()


def test_search_counts_are_bounded_to_the_newest_executions(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 3)
    sm = state_machine_row()
    for i in range(5):
        execution_row(sm, f"hit-{i}", "FAILED", T0 + dt.timedelta(minutes=i))
    execution_row(sm, "hit-running", "RUNNING", T0)
    execution_row(sm, "other", "SUCCEEDED", T0 + dt.timedelta(minutes=9))
    response = viewer_client.get(URL, {"q": "HIT", "per_page": 2})
    # The page does not hold every match: the counts looked at the newest
    # three executions only (other, hit-4, hit-3).
    assert len(names(response)) == 2
    assert chips(response)["FAILED"] == "2+"
    assert chips(response)["RUNNING"] == "0+"
    assert "only the newest 3 executions that match" in response.content.decode()


def test_search_counts_are_exact_when_the_page_holds_every_match(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SEARCH_WINDOW", 3)
    sm = state_machine_row()
    execution_row(sm, "order-7f3a", "FAILED", T0)
    execution_row(sm, "refund-7F3A", "RUNNING", T0 + dt.timedelta(minutes=1))
    for i in range(5):
        execution_row(sm, f"order-{i}", "FAILED", T0 + dt.timedelta(minutes=2 + i))
    response = viewer_client.get(URL, {"q": "7f3a"})
    assert chips(response)["FAILED"] == "1"
    assert chips(response)["RUNNING"] == "1"
    assert response.context["all_chip"].count == "2"


def test_a_search_finds_matches_far_behind_the_newest_executions(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The walk of the newest executions stops after SEARCH_WALK of them; on
    # PostgreSQL the matches behind it come from the trigram index, in order.
    # SQLite has no such index: its pages go on from where each walk stopped.
    monkeypatch.setattr(queries, "SEARCH_WALK", 3)
    sm = state_machine_row()
    for i in range(4):
        execution_row(sm, f"order-20240315-{i}", "SUCCEEDED", T0 + dt.timedelta(minutes=i))
    for i in range(10):
        execution_row(sm, f"order-20240501-{i}", "SUCCEEDED", T0 + dt.timedelta(days=1, minutes=i))
    if connection.vendor == "postgresql":
        response = viewer_client.get(URL, {"q": "20240315", "per_page": 3})
        assert names(response) == ["order-20240315-3", "order-20240315-2", "order-20240315-1"]
        assert response.context["page"].walked is None
        older = html.unescape(str(response.context["older_url"]))
        assert names(viewer_client.get(older)) == ["order-20240315-0"]
    else:
        assert walked_pages(viewer_client, {"q": "20240315", "per_page": 3}) == [
            [],
            [],
            [],
            ["order-20240315-3", "order-20240315-2"],
            ["order-20240315-1", "order-20240315-0"],
        ]
    response = viewer_client.get(URL, {"q": "20240315", "status": ["SUCCEEDED", "FAILED"]})
    assert len(names(response)) == 4


def walked_pages(client: Any, params: dict[str, Any]) -> list[list[str]]:
    """The names of each page, following "Older" to the end."""
    response = client.get(URL, params)
    pages = [names(response)]
    while response.context["older_url"]:
        response = client.get(html.unescape(str(response.context["older_url"])))
        pages.append(names(response))
        assert len(pages) < 20
    return pages


def test_a_short_search_goes_a_walk_at_a_time_and_says_so(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One or two characters have no trigram: no index finds them, whatever
    # the database. Each page looks at SEARCH_WALK executions past its cursor
    # and no more, says so, and "Older" goes on from where it stopped: no
    # match is skipped, and no page reads the whole table.
    monkeypatch.setattr(queries, "SEARCH_WALK", 3)
    sm = state_machine_row()
    for i in range(4):
        execution_row(sm, f"order-20240315-{i}", "SUCCEEDED", T0 + dt.timedelta(minutes=i))
    for i in range(10):
        execution_row(sm, f"order-20240501-{i}", "SUCCEEDED", T0 + dt.timedelta(days=1, minutes=i))
    first = viewer_client.get(URL, {"q": "15", "per_page": 3})
    assert first.status_code == 200
    assert names(first) == []
    assert first.context["page"].walked == 3
    body = first.content.decode()
    assert "Searched 3 executions from the newest for “15” and found none" in body
    assert "No executions match these filters" not in body
    assert walked_pages(viewer_client, {"q": "15", "per_page": 3}) == [
        [],
        [],
        [],
        ["order-20240315-3", "order-20240315-2"],
        ["order-20240315-1", "order-20240315-0"],
    ]
    # From a later page, "Newer" walks back the same way, to the newest.
    last = viewer_client.get(URL, {"q": "15", "per_page": 3})
    while last.context["older_url"]:
        last = viewer_client.get(html.unescape(str(last.context["older_url"])))
    back = []
    response = last
    while response.context["newer_url"]:
        response = viewer_client.get(html.unescape(str(response.context["newer_url"])))
        back.extend(names(response))
        assert len(back) < 20
    assert back == ["order-20240315-3", "order-20240315-2"]


def test_a_common_search_reads_the_newest_matches(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SEARCH_WALK", 3)
    sm = state_machine_row()
    for i in range(6):
        execution_row(sm, f"order-{i}", "SUCCEEDED", T0 + dt.timedelta(minutes=i))
    response = viewer_client.get(URL, {"q": "order", "per_page": 2})
    assert names(response) == ["order-5", "order-4"]
    older = html.unescape(str(response.context["older_url"]))
    assert names(viewer_client.get(older)) == ["order-3", "order-2"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"status": "FAILED"},
        {"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
        {"state_machine": "arn:aws:states:us-east-1:123456789012:stateMachine:orders"},
        {"q": "run"},
        {"started_after": "2024-05-01T00:00:00Z"},
        {"cursor": queries.Cursor(T0 + dt.timedelta(hours=1), 10**9).encode()},
        {"account": "123456789012"},
        {"account": ["123456789012", "210987654321"], "region": "eu-west-1", "status": "FAILED"},
    ],
)
def test_the_query_count_does_not_grow_with_the_rows(
    viewer_client: Any,
    django_assert_max_num_queries: Any,
    params: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sm = state_machine_row("orders")
    eu = state_machine_row("orders", account="210987654321", region="eu-west-1")
    for i in range(60):
        execution_row(sm, f"run-{i}", ["FAILED", "RUNNING", "SUCCEEDED"][i % 3], T0)
        execution_row(eu, f"run-{i}", ["FAILED", "RUNNING", "SUCCEEDED"][i % 3], T0)
    # session + user + the page + the counts, with running rows on the page
    # the stop permission for the pick boxes (1), and without Redis the
    # accounts and regions the cache holds (one index-only scan) and the sync
    # bar's two (Redis shares both answers between requests).
    bar = 0 if settings.REDIS_URL else 3
    # The bar's answer, shared for a moment (Redis): long enough for this test.
    monkeypatch.setattr(freshness, "SHARED_TTL", 600.0)
    # A name search asks first where its walk ends (passed on as a literal).
    walk_end = 1 if "q" in params else 0
    viewer_client.get("/executions/?status=SUCCEEDED")
    with django_assert_max_num_queries(5 + bar + walk_end):
        response = viewer_client.get(URL, params)
    assert response.status_code == 200
    assert response.context["page"].rows
    with django_assert_max_num_queries(5 + bar + walk_end):
        viewer_client.get(URL, params, headers={"HX-Request": "true"})


# --- Jumping to one execution ----------------------------------------------------------

ARN = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1"


def test_a_pasted_execution_arn_goes_to_its_page(viewer_client: Any) -> None:
    response = viewer_client.get(URL, {"q": f"  {ARN} "})
    assert response.status_code == 302
    assert response["Location"] == f"/executions/{ARN}/"


def test_a_pasted_console_url_goes_to_the_execution_and_keeps_the_zone(viewer_client: Any) -> None:
    console = (
        "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
        f"#/v2/executions/details/{quote(ARN, safe='')}"
    )
    response = viewer_client.get(URL, {"q": console, "tz": "Europe/Berlin"})
    assert response.status_code == 302
    assert response["Location"] == f"/executions/{ARN}/?tz=Europe%2FBerlin"


def test_a_pasted_state_machine_arn_filters_the_list(viewer_client: Any) -> None:
    sm_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
    response = viewer_client.get(URL, {"q": sm_arn})
    assert response.status_code == 302
    assert response["Location"] == "/executions/?state_machine=" + quote(sm_arn, safe="")


def test_a_pasted_arn_of_an_unknown_execution_is_looked_up_in_aws(
    viewer_client: Any, fake_aws: Any
) -> None:
    response = viewer_client.get(URL, {"q": ARN}, follow=True)
    assert response.status_code == 404
    assert "AWS does not know the execution" in response.content.decode()


# --- Zones and hostile content ---------------------------------------------------------


def test_the_zone_changes_the_times_and_is_kept_in_the_links(viewer_client: Any) -> None:
    ex = execution_row(state_machine_row("orders"), "z", "SUCCEEDED", T0)
    body = viewer_client.get(URL, {"tz": "Europe/Berlin"}).content.decode()
    assert "2024-05-01 14:00:00 CEST" in body
    assert "Started (Europe/Berlin)" in body
    assert f'href="/executions/{ex.arn}/?tz=Europe%2FBerlin"' in body
    assert f'href="/state-machines/{ex.state_machine.arn}/?tz=Europe%2FBerlin"' in body
    assert '<input type="hidden" name="tz" value="Europe/Berlin">' in body


def test_an_error_page_keeps_the_zone_in_its_way_back(viewer_client: Any) -> None:
    """The error page's "Back to the executions" used to drop ?tz= (a plain
    {% url %}); it is made like every other link now (executions/links.py)."""
    sm = "arn:aws:states:us-east-1:123456789012:stateMachine:nowhere"
    response = viewer_client.get(f"/state-machines/{sm}/", {"tz": "Europe/Berlin"})
    assert response.status_code == 404
    body = response.content.decode()
    assert '<a href="/executions/?tz=Europe%2FBerlin">Back to the executions</a>' in body
    assert '<input type="hidden" name="tz" value="Europe/Berlin">' in body  # the jump box
    utc = viewer_client.get(f"/state-machines/{sm}/").content.decode()
    assert '<a href="/executions/">Back to the executions</a>' in utc
    assert 'name="tz"' not in utc


def test_an_unknown_zone_is_a_400(viewer_client: Any) -> None:
    response = viewer_client.get(URL, {"tz": "Mars/Olympus"})
    assert response.status_code == 400
    assert "Unknown time zone" in response.content.decode()


@pytest.mark.parametrize("payload", [SCRIPT, IMG])
def test_hostile_names_and_errors_are_escaped(viewer_client: Any, payload: str) -> None:
    sm = StateMachine.objects.create(
        arn="arn:aws:states:us-east-1:123456789012:stateMachine:evil",
        name=payload,
        region="us-east-1",
        account="123456789012",
    )
    Execution.objects.create(
        arn="arn:aws:states:us-east-1:123456789012:execution:evil:x",
        name=payload,
        state_machine=sm,
        status="FAILED",
        start_date=T0,
        stop_date=T0,
        error=payload,
    )
    # Without the leading quote, which would open a phrase (search.py).
    body = viewer_client.get(URL, {"q": payload.lstrip('"')[:12]}).content.decode()
    assert "<script>alert(1)" not in body
    assert "<img src=x" not in body
    assert html.escape(payload) in body or html.escape(payload, quote=False) in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body or "&lt;img src=x" in body


# --- Accounts and regions ----------------------------------------------------------------

HOME, PROD = "123456789012", "210987654321"


@pytest.fixture
def two_accounts(settings: Any) -> dict[str, StateMachine]:
    """orders in HOME (us-east-1), orders in PROD (us-east-1, eu-west-1); PROD
    read by a role that SFNUI_ACCOUNTS names "prod"."""
    settings.SFNUI_ACCOUNTS = [
        {"role_arn": "", "external_id": "", "regions": ["us-east-1"], "name": ""},
        {
            "role_arn": f"arn:aws:iam::{PROD}:role/reader",
            "external_id": "",
            "regions": ["us-east-1", "eu-west-1"],
            "name": "prod",
        },
    ]
    machines = {
        "home": state_machine_row("orders"),
        "prod-us": state_machine_row("orders", account=PROD),
        "prod-eu": state_machine_row("orders", account=PROD, region="eu-west-1"),
    }
    for i, (key, sm) in enumerate(machines.items()):
        for j, outcome in enumerate(("SUCCEEDED", "FAILED", "RUNNING")):
            execution_row(
                sm, f"{key}-{outcome.lower()}", outcome, T0 + dt.timedelta(minutes=10 * i + j)
            )
    return machines


def test_a_page_with_two_accounts_shows_where_each_row_runs(
    viewer_client: Any, two_accounts: dict[str, StateMachine]
) -> None:
    response = viewer_client.get(URL)
    choices = response.context["place_choices"]
    assert choices.several
    assert [(c.value, c.label) for c in choices.accounts] == [
        (HOME, HOME),
        (PROD, f"prod ({PROD})"),
    ]
    assert [c.value for c in choices.regions] == ["eu-west-1", "us-east-1"]
    body = response.content.decode()
    # Offered as choices, and said on each row (compactly: the name SFNUI_ACCOUNTS gives).
    assert '<select name="account">' in body
    assert f'<option value="{PROD}">prod ({PROD})</option>' in body
    assert '<option value="eu-west-1">eu-west-1</option>' in body
    assert "account=210987654321&amp;region=eu-west-1" in body
    assert ">prod · eu-west-1</a>" in body
    assert f">{HOME} · us-east-1</a>" in body


def test_one_account_in_one_region_keeps_the_rows_as_they_were(viewer_client: Any) -> None:
    execution_row(state_machine_row("orders"))
    response = viewer_client.get(URL)
    assert not response.context["place_choices"].several
    body = response.content.decode()
    assert 'name="account"' not in body
    assert 'class="place' not in body


def test_the_account_and_region_filters_combine_with_the_others(
    viewer_client: Any, two_accounts: dict[str, StateMachine]
) -> None:
    assert names(viewer_client.get(URL, {"account": PROD})) == [
        "prod-eu-running",
        "prod-eu-failed",
        "prod-eu-succeeded",
        "prod-us-running",
        "prod-us-failed",
        "prod-us-succeeded",
    ]
    assert names(viewer_client.get(URL, {"region": "EU-WEST-1"})) == [
        "prod-eu-running",
        "prod-eu-failed",
        "prod-eu-succeeded",
    ]
    both = viewer_client.get(URL, {"account": PROD, "region": "us-east-1", "status": "FAILED"})
    assert names(both) == ["prod-us-failed"]
    # Repeated or comma-separated, as status.
    assert len(names(viewer_client.get(URL + f"?account={HOME}&account={PROD}"))) == 9
    assert len(names(viewer_client.get(URL, {"account": f"{HOME},{PROD}"}))) == 9
    # With the state machine filter: that one, if it is in that account.
    prod_us = two_accounts["prod-us"].arn
    assert len(names(viewer_client.get(URL, {"state_machine": prod_us, "account": PROD}))) == 3
    assert names(viewer_client.get(URL, {"state_machine": prod_us, "account": HOME})) == []
    # Counts per status follow them.
    response = viewer_client.get(URL, {"account": PROD})
    assert chips(response)["FAILED"] == "2"
    assert response.context["all_chip"].count == "6"
    # Shown as removable filters.
    active = {f.label: f for f in response.context["active"]}
    assert active["Account"].value == f"prod ({PROD})"
    assert active["Account"].remove_url == "/executions/"


def test_account_and_region_are_kept_in_every_link_the_page_builds(
    viewer_client: Any, two_accounts: dict[str, StateMachine]
) -> None:
    params = {"account": PROD, "region": "us-east-1", "per_page": 1, "tz": "Europe/Berlin"}
    response = viewer_client.get(URL, params)
    kept = f"account={PROD}&region=us-east-1"
    older = response.context["older_url"]
    assert kept in older
    assert "cursor=" in older
    assert "tz=Europe%2FBerlin" in older
    assert names(viewer_client.get(older)) == ["prod-us-failed"]
    for chip in response.context["chips"]:
        assert kept in chip.url, chip
    (row,) = response.context["page"].rows
    assert kept in row.filter_url
    assert f"state_machine={quote(row.state_machine.arn, safe='')}" in row.filter_url
    assert all(kept in url for _, url in response.context["presets"])
    assert all(kept in url for _, url in response.context["per_page_links"])


def test_the_page_of_a_bad_account_keeps_the_good_values(
    viewer_client: Any, two_accounts: dict[str, StateMachine]
) -> None:
    response = viewer_client.get(URL + f"?account={PROD}&account=nope&region=eu-west-1")
    assert response.status_code == 400
    choices = response.context["place_choices"]
    assert choices.selected_accounts == [PROD]
    assert choices.selected_regions == ["eu-west-1"]
    assert "Bad value for <code>account</code>: &#x27;nope&#x27; is not an AWS account id" in (
        response.content.decode()
    )


def test_an_account_the_cache_does_not_hold_matches_nothing_and_stays_in_the_form(
    viewer_client: Any,
) -> None:
    execution_row(state_machine_row("orders"))
    response = viewer_client.get(URL, {"account": "999999999999"})
    assert response.status_code == 200
    assert names(response) == []
    body = response.content.decode()
    assert "No executions match these filters" in body
    assert '<option value="999999999999" selected>' in body


def test_an_account_filter_walks_the_start_index_not_every_row_of_the_account(
    two_accounts: dict[str, StateMachine],
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    filters = queries.Filters(accounts=(PROD,), regions=("us-east-1",))
    with CaptureQueriesContext(connection) as captured:
        queries.page(filters, None)
    (sql,) = [q["sql"] for q in captured.captured_queries]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
    assert "exec_start_idx" in plan
    assert "sm_account_region_idx" in plan
    # Reading every execution of the account and sorting them: what it avoids.
    assert "TEMP B-TREE" not in plan
