"""The history page: /executions/<arn>/history/ (timeline and event table)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from executions import history
from executions.models import Execution, HistoryEvent
from executions.sync import flows
from executions.views.history import PAGE_SIZE
from tests.support.factories import events, execution_row
from tests.support.helpers import ORDER_PIPELINE, PAYMENT, wait_until_finished
from tests.support.history_data import big_history, every_type

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def _url(ex: Execution, query: str = "") -> str:
    return f"/executions/{ex.arn}/history/" + (f"?{query}" if query else "")


def _synced(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    name: str,
    definition: dict[str, Any],
    payload: dict[str, Any] | None = None,
) -> Execution:
    arn = start(make_state_machine(name, definition), f"{name}-1", payload or {})
    wait_until_finished(sfn, [arn])
    return flows.import_execution(arn)


def _numbered(ex: Execution, n: int) -> None:
    """n events: a Pass state entered and exited over and over."""
    items: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})
    ]
    while len(items) < n:
        kind = "PassStateEntered" if len(items) % 2 else "PassStateExited"
        key = "stateEnteredEventDetails" if kind.endswith("Entered") else "stateExitedEventDetails"
        items.append((kind, key, {"name": "Step"}))
    events(ex, items, step=0.01)


def _rows(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', html)]


# --- Who and what may ask ----------------------------------------------------------------


def test_anonymous_users_are_sent_to_sign_in(client: Any) -> None:
    ex = execution_row()
    response = client.get(_url(ex))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_malformed_arn_is_a_404_page_that_says_so(viewer_client: Any) -> None:
    response = viewer_client.get("/executions/not-an-arn/history/")
    assert response.status_code == 404
    assert b"not a Step Functions execution ARN" in response.content


def test_an_arn_aws_does_not_know_is_a_404(viewer_client: Any, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:nothing:nobody"
    response = viewer_client.get(f"/executions/{arn}/history/")
    assert response.status_code == 404
    assert b"AWS does not know the execution" in response.content


def test_only_get_and_head_are_allowed(viewer_client: Any) -> None:
    ex = execution_row()
    assert viewer_client.post(_url(ex)).status_code == 405
    assert viewer_client.head(_url(ex)).status_code == 200


def test_a_pasted_link_to_an_execution_not_yet_cached_is_looked_up(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("orders", ORDER_PIPELINE), "o-1", {"items": [1]})
    wait_until_finished(sfn, [arn])
    response = viewer_client.get(f"/executions/{arn}/history/?event=3")
    assert response.status_code == 200
    assert 'id="event-3"' in response.content.decode()


# --- The timeline ---------------------------------------------------------------------------


def test_the_timeline_nests_map_iterations_and_parallel_branches(
    viewer_client: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    django_assert_max_num_queries: Any,
) -> None:
    ex = _synced(make_state_machine, start, sfn, "orders", ORDER_PIPELINE, {"items": [1, 2, 3]})
    with django_assert_max_num_queries(8):
        response = viewer_client.get(_url(ex))
    assert response.status_code == 200
    html = response.content.decode()
    timeline = html[html.index('id="timeline"') : html.index('id="events"')]
    # EachItem opens a group holding its three iterations, each with Reserve.
    each = timeline[
        timeline.index('aria-label="EachItem"') : timeline.index('aria-label="ShipAndBill"')
    ]
    assert 'title="EachItem (3 iterations)"' in timeline
    for i in range(3):
        assert 'k-iteration o-succeeded"><span class="tl-label" title="iteration' in each
        assert f'aria-label="iteration {i}"' in each
    assert each.count('aria-label="Reserve"') == 3
    assert 'class="tl-row d2 k-state o-succeeded"' in each  # Reserve, two levels in
    parallel = timeline[
        timeline.index('aria-label="ShipAndBill"') : timeline.index('aria-label="Settle"')
    ]
    assert 'title="ShipAndBill (2 branches)"' in timeline
    assert 'aria-label="branch 1"' in parallel
    assert 'aria-label="branch 2"' in parallel
    assert 'aria-label="Ship"' in parallel
    assert 'aria-label="Bill"' in parallel
    # Every bar is an SVG rect with its duration, linking to its entered event.
    assert re.search(r'<a href="#event-33"><title>Settle \(Wait\): succeeded, 1\.\d\d s', timeline)
    # Ticks from the start.
    assert ">0</text>" in timeline
    # Every event has its anchor in the table.
    assert _rows(html) == list(range(1, 38))


def test_the_timeline_shows_both_attempts_of_a_retried_task_in_red(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    ex = _synced(make_state_machine, start, sfn, "payments", PAYMENT)
    html = viewer_client.get(_url(ex)).content.decode()
    charge = html[html.index('aria-label="Charge"') : html.index('aria-label="Declined"')]
    assert charge.count('class="seg o-failed"') == 2
    assert "2 attempts" in charge
    assert "Charge attempt 1 (Task): failed" in charge
    assert "Charge attempt 2 (Task): failed" in charge
    assert 'class="b o-caught has-attempts"' in charge
    declined = html[html.index('aria-label="Declined"') : html.index('id="events"')]
    assert 'class="b o-failed"' in declined
    # The failures are red rows in the table, their state named.
    row = html[html.index('<tr id="event-5"') : html.index('<tr id="event-6"')]
    assert 'class="failed"' in row
    assert "DynamoDB.ResourceNotFoundException" in row
    assert ">Charge</td>" in row


def test_a_running_execution_refreshes_its_timeline_and_says_so(viewer_client: Any) -> None:
    ex = execution_row(
        status="RUNNING",
        started=timezone.now() - dt.timedelta(minutes=3),
        synced_at=timezone.now() - dt.timedelta(minutes=1),
    )
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("WaitStateEntered", "stateEnteredEventDetails", {"name": "Sleep", "input": "{}"}),
        ],
    )
    html = viewer_client.get(_url(ex)).content.decode()
    assert "Still running:" in html
    assert "2 events so far" in html
    assert 'hx-trigger="every 10s"' in html
    assert 'class="b o-running"' in html
    assert "so far</text>" in html
    # The poll gets the timeline alone.
    partial = viewer_client.get(_url(ex), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="timeline")
    body = partial.content.decode()
    assert partial.status_code == 200
    assert body.lstrip().startswith('<section id="timeline"')
    assert "<table" not in body
    assert "HX-Request" in partial["Vary"]
    # Someone is watching: the sync is asked to come sooner.
    ex.refresh_from_db()
    assert ex.sync_due_at is not None
    # Once it has ended, the poll stops and says so.
    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED", stop_date=timezone.now())
    ended = viewer_client.get(_url(ex), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="timeline")
    assert "hx-trigger" not in ended.content.decode()
    assert "The execution has ended" in ended.content.decode()


def test_an_ended_execution_still_syncing_says_how_many_events_so_far(viewer_client: Any) -> None:
    ex = execution_row(status="FAILED", history_complete=False)
    _numbered(ex, 4)
    html = viewer_client.get(_url(ex)).content.decode()
    assert "History syncing:" in html
    assert "4 events so far" in html
    assert "hx-trigger" not in html


def test_an_execution_without_events_renders(viewer_client: Any) -> None:
    ex = execution_row(status="RUNNING")
    response = viewer_client.get(_url(ex))
    assert response.status_code == 200
    assert b"No state has been entered yet" in response.content
    assert b"No events in the cache yet." in response.content


# --- The event table ------------------------------------------------------------------------


def test_every_one_of_the_62_event_types_renders_in_the_table(viewer_client: Any) -> None:
    ex = execution_row()
    every_type(ex)
    response = viewer_client.get(_url(ex))
    assert response.status_code == 200
    html = response.content.decode()
    assert _rows(html) == list(range(1, 63))
    for event_id, event_type in enumerate(history.DETAILS_KEY, start=1):
        row = re.search(rf'<tr id="event-{event_id}"[^>]*>(.*?)</tr>', html, re.S)
        assert row is not None, event_type
        cells = row.group(1)
        assert f'<td class="type">{event_type}</td>' in cells
        summary = cells[cells.index('<td class="summary">') :]
        assert re.search(r'<span class="part[^"]*">', summary), event_type
    # What people look for is there.
    for text in (
        "worker-7",
        "Err.TaskFailed",
        "cause of ExecutionFailed",
        "lambda:invoke",
        "arn:aws:lambda:us-east-1:123456789012:function:charge",
        "redrive</span> #2",
        "items</span> 12",
        "index</span> 4",
        "every branch succeeded",
        "assigned variables",
        "task credentials",
    ):
        assert text in html, text


def test_an_unknown_event_type_falls_back_to_its_fields(viewer_client: Any) -> None:
    ex = execution_row()
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("QuantumStateCollapsed", "quantumStateCollapsedEventDetails", {"observer": "cat"}),
        ],
    )
    html = viewer_client.get(_url(ex)).content.decode()
    assert '<td class="type">QuantumStateCollapsed</td>' in html
    assert "observer" in html
    # A type this history holds is a valid filter even if this code has never heard of it.
    filtered = viewer_client.get(_url(ex, "type=QuantumStateCollapsed"))
    assert filtered.status_code == 200
    assert _rows(filtered.content.decode()) == [2]


def test_details_fold_payloads_and_cut_big_ones_with_a_link_to_all(viewer_client: Any) -> None:
    ex = execution_row()
    big = '{"blob": "' + "z" * 100_000 + '"}'
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": big}),
            ("PassStateEntered", "stateEnteredEventDetails", {"name": "A", "input": '{"k":1}'}),
        ],
    )
    response = viewer_client.get(_url(ex))
    html = response.content.decode()
    assert len(html) < 60_000
    assert "input \u00b7 97.7 KB" in html
    assert "Showing the first 2000 characters." in html
    assert f'href="/executions/{ex.arn}/history/?detail=1"' in html
    assert '<pre class="json">{\n  &quot;k&quot;: 1\n}</pre>' in html
    full = viewer_client.get(_url(ex, "detail=1"))
    assert full.status_code == 200
    assert full.content.decode().count("z" * 1000) >= 100
    assert 'id="payload-1-0"' in full.content.decode()
    assert viewer_client.get(_url(ex, "detail=99")).status_code == 404
    assert viewer_client.get(_url(ex, "detail=abc")).status_code == 400


def test_times_follow_the_chosen_zone_and_links_keep_it(viewer_client: Any) -> None:
    started = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    ex = execution_row(started=started)
    _numbered(ex, 3)
    html = viewer_client.get(_url(ex, "tz=Europe/Berlin")).content.decode()
    assert "time (Europe/Berlin)" in html
    assert "2024-05-01 14:00:00.000" in html
    assert "+0.010 s" in html
    assert "tz=Europe%2FBerlin&amp;event=" in html
    assert 'name="tz" value="Europe/Berlin"' in html


def test_the_type_filter_takes_several_types(viewer_client: Any) -> None:
    ex = execution_row()
    every_type(ex)
    one = viewer_client.get(_url(ex, "type=TaskFailed"))
    assert one.status_code == 200
    assert _rows(one.content.decode()) == [list(history.DETAILS_KEY).index("TaskFailed") + 1]
    two = viewer_client.get(_url(ex, "type=TaskFailed&type=ActivityStarted"))
    ids = sorted(list(history.DETAILS_KEY).index(t) + 1 for t in ("TaskFailed", "ActivityStarted"))
    assert _rows(two.content.decode()) == ids
    assert "2 events matching" in two.content.decode()


def test_failures_only(viewer_client: Any) -> None:
    ex = execution_row()
    every_type(ex)
    html = viewer_client.get(_url(ex, "failures=1")).content.decode()
    shown = [list(history.DETAILS_KEY)[i - 1] for i in _rows(html)]
    assert set(shown) == set(history.FAILURE_TYPES)
    assert "ExecutionFailed" in shown
    assert "TaskStateEntered" not in shown


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (
            "type=TaskExploded",
            "&#x27;TaskExploded&#x27; is not a Step Functions history event type",
        ),
        ("type=TaskFailed&type=%3Cscript%3E", "&#x27;&lt;script&gt;&#x27; is not a Step Functions"),
        ("page=0", "page=&#x27;0&#x27;"),
        ("page=two", "page=&#x27;two&#x27;"),
        ("event=-3", "event=&#x27;-3&#x27;"),
    ],
)
def test_a_bad_query_is_a_400_that_names_the_value(
    viewer_client: Any, query: str, says: str
) -> None:
    ex = execution_row()
    _numbered(ex, 3)
    response = viewer_client.get(_url(ex, query))
    assert response.status_code == 400
    assert says in response.content.decode()
    assert "<script>" not in response.content.decode()


def test_event_lands_on_the_page_holding_it(viewer_client: Any) -> None:
    ex = execution_row()
    _numbered(ex, 2 * PAGE_SIZE + 100)
    html = viewer_client.get(_url(ex, "event=1100")).content.decode()
    rows = _rows(html)
    assert rows[0] == 2 * PAGE_SIZE + 1
    assert 1100 in rows
    assert "page 3 of 3" in html
    first = viewer_client.get(_url(ex)).content.decode()
    assert _rows(first) == list(range(1, PAGE_SIZE + 1))
    assert "page=2" in first
    assert _rows(viewer_client.get(_url(ex, "page=2")).content.decode())[0] == PAGE_SIZE + 1
    # Past the end: the last page, with a note.
    late = viewer_client.get(_url(ex, "page=9")).content.decode()
    assert "There is no page 9" in late
    assert _rows(late)[-1] == 2 * PAGE_SIZE + 100
    # A timeline bar on another page links there.
    assert f'href="/executions/{ex.arn}/history/?event=' in first


def test_an_event_hidden_by_the_filter_or_missing_says_so(viewer_client: Any) -> None:
    ex = execution_row()
    every_type(ex)
    hidden = viewer_client.get(_url(ex, "type=TaskFailed&event=3")).content.decode()
    assert "Event 3 is hidden by the type filter." in hidden
    assert "?event=3" in hidden
    missing = viewer_client.get(_url(ex, "event=5000")).content.decode()
    assert "This history has no event 5000 (it has 62 events so far)." in missing


# --- Hostile content ------------------------------------------------------------------------


def test_hostile_names_payloads_errors_and_causes_are_escaped(viewer_client: Any) -> None:
    ex = execution_row(name="evil-run", input=HOSTILE, output=HOSTILE, error=HOSTILE, cause=HOSTILE)
    every_type(ex, hostile=HOSTILE)
    response = viewer_client.get(_url(ex))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    # In the timeline too: state names in labels, titles and aria labels.
    timeline = html[html.index('id="timeline"') : html.index('id="events"')]
    assert "State-TaskStateEntered&lt;script&gt;" in timeline
    full = viewer_client.get(_url(ex, "detail=2")).content.decode()
    assert "<script>alert" not in full
    assert "&lt;script&gt;" in full


# --- 25,000 events --------------------------------------------------------------------------


def test_a_25000_event_history_renders_small_and_in_few_queries(
    viewer_client: Any, django_assert_max_num_queries: Any
) -> None:
    ex = execution_row(name="big")
    assert big_history(ex) == 25_000
    with django_assert_max_num_queries(8):
        response = viewer_client.get(_url(ex))
    assert response.status_code == 200
    html = response.content.decode()
    assert len(response.content) <= 2 * 1024 * 1024
    assert _rows(html) == list(range(1, PAGE_SIZE + 1))
    assert "page 1 of 50" in html
    assert "iterations 0\u2013374" in html
    assert "3000 iterations" in html
    # The failed iterations are drawn one by one.
    assert 'aria-label="iteration 999"' in html
    # Big payloads on the page are cut.
    assert "Showing the first 2000 characters." in html
    # Deep links work at this size too.
    with django_assert_max_num_queries(8):
        deep = viewer_client.get(_url(ex, "event=24990"))
    assert 24990 in _rows(deep.content.decode())
    failures = viewer_client.get(_url(ex, "failures=1")).content.decode()
    assert len(_rows(failures)) == 6  # 3 TaskFailed + 3 MapIterationFailed
    assert HistoryEvent.objects.filter(execution=ex).count() == 25_000


def _count_drawing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each read of an outline and build of a timeline, as a list of event counts."""
    drawn: list[int] = []
    real = history.timeline_of

    def counted(ex: Execution, now: dt.datetime) -> Any:
        events, timeline = real(ex, now)
        drawn.append(len(events))
        return events, timeline

    monkeypatch.setattr(history, "timeline_of", counted)
    return drawn


def test_a_closed_history_is_drawn_once_and_again_when_the_sync_changes_it(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What is drawn from a closed execution's complete history is kept (per
    # process), keyed by what would change it: the outline is not read again.
    ex = execution_row(name="kept")
    _numbered(ex, 40)
    drawn = _count_drawing(monkeypatch)
    first = viewer_client.get(_url(ex))
    assert first.status_code == 200
    assert first.context["event_count"] == 40
    again = viewer_client.get(_url(ex))
    assert drawn == [40]
    assert _rows(again.content.decode()) == _rows(first.content.decode())
    # The sync brings more events (a redrive): drawn again, from them.
    HistoryEvent.objects.bulk_create(
        HistoryEvent(
            execution=ex,
            event_id=i,
            previous_event_id=i - 1,
            timestamp=ex.start_date + dt.timedelta(seconds=1 + i / 100),
            type="PassStateEntered",
            details_key="stateEnteredEventDetails",
            details={"name": "Later"},
        )
        for i in (41, 42, 43)
    )
    Execution.objects.filter(pk=ex.pk).update(last_event_id=43, redrive_count=1)
    after = viewer_client.get(_url(ex))
    assert after.context["event_count"] == 43
    assert "Later" in after.content.decode()
    assert drawn == [40, 43]


def test_a_running_history_is_drawn_afresh_each_time(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = execution_row(name="open", status="RUNNING")
    _numbered(ex, 10)
    drawn = _count_drawing(monkeypatch)
    viewer_client.get(_url(ex))
    viewer_client.get(_url(ex))
    assert drawn == [10, 10]
