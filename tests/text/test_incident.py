"""Copy for incident: executions/text/incident.py's Markdown summary, and the
button and selectable text on the detail and history pages."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import time_machine

from executions.history import progress, stuck
from executions.models import Execution, StopRequest
from executions.sync import flows
from executions.text import incident
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, PAYMENT, wait_until_finished

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 15, 42, 3, tzinfo=dt.UTC)
BASE = "https://sfnui.example.com"


def failed(**fields: Any) -> Execution:
    ex = execution_row(
        state_machine_row("payment-capture"),
        name=fields.pop("name", "pay-20261126-1542-7f3a"),
        status=fields.pop("status", "FAILED"),
        started=T0,
        stop_date=T0 + dt.timedelta(hours=2, minutes=13, seconds=4),
        error=fields.pop("error", "Payment.Declined"),
        cause=fields.pop("cause", "the card was declined\nby the issuer\nretry later\nline 4"),
        **fields,
    )
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": "ChargeCard", "input": "{}"}),
            (
                "TaskFailed",
                "taskFailedEventDetails",
                {"error": ex.error, "cause": ex.cause, "resource": "x", "resourceType": "lambda"},
            ),
            (
                "ExecutionFailed",
                "executionFailedEventDetails",
                {"error": ex.error, "cause": ex.cause},
            ),
        ],
    )
    return ex


def summary_of(ex: Execution, now: dt.datetime | None = None, **kwargs: Any) -> str:
    return incident.summary(
        ex,
        base=BASE,
        now=now or T0 + dt.timedelta(hours=3),
        failure=progress.failure_point(ex),
        open_states=progress.open_states(ex),
        **kwargs,
    )


# --- The summary -------------------------------------------------------------------------


def test_a_failed_execution_summary_says_what_where_when_and_links() -> None:
    ex = failed()
    text = summary_of(ex)
    detail = f"{BASE}/executions/{ex.arn}/"
    assert text.splitlines() == [
        "**FAILED** · payment-capture · `pay-20261126-1542-7f3a`",
        "- Failed in: `ChargeCard` (TaskFailed, event 3)",
        "- Error: `Payment.Declined`",
        "- Cause:",
        "  ```",
        "  the card was declined",
        "  by the issuer",
        "  retry later",
        "  ```",
        "- Started: 2026-11-26 15:42:03 UTC",
        "- Stopped: 2026-11-26 17:55:07 UTC",
        "- Duration: 2 h 13 m",
        f"- sfnui: {detail}",
        f"- Failing event: {BASE}/executions/{ex.arn}/history/?event=3#event-3",
        "- AWS console: https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
        f"#/v2/executions/details/{ex.arn}",
        "_Times in UTC._",
    ]


def test_a_caught_failure_links_the_task_that_failed_not_the_fail_state() -> None:
    ex = execution_row(status="FAILED", started=T0, error="Payment.Declined", cause="declined")
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": "Charge", "input": "{}"}),
            ("TaskFailed", "taskFailedEventDetails", {"error": "Dynamo.Missing", "cause": "gone"}),
            ("TaskStateExited", "stateExitedEventDetails", {"name": "Charge", "output": "{}"}),
            ("FailStateEntered", "stateEnteredEventDetails", {"name": "Declined", "input": "{}"}),
            ("ExecutionFailed", "executionFailedEventDetails", {"error": "Payment.Declined"}),
        ],
    )
    text = summary_of(ex)
    assert (
        "- Failed in: `Charge` (TaskFailed, event 3; caught, ended in `Declined`, event 5)" in text
    )
    assert "/history/?event=3#event-3" in text


def test_a_running_execution_summary_says_where_it_is_now_and_as_of_when() -> None:
    ex = execution_row(status="RUNNING", started=T0)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("WaitStateEntered", "stateEnteredEventDetails", {"name": "Sleep", "input": "{}"}),
        ],
    )
    text = summary_of(ex, now=T0 + dt.timedelta(minutes=12))
    assert text.startswith("**RUNNING** · order-pipeline · `")
    assert "- Now in: `Sleep` (since 2026-11-26 15:42:04 UTC)" in text
    assert "- Running for: 12 m (as of 2026-11-26 15:54:03 UTC)" in text
    assert f"- Current state: {BASE}/executions/{ex.arn}/history/?event=2#event-2" in text
    assert "Stopped:" not in text
    assert "Error" not in text


def test_a_running_summary_says_why_it_is_still_running() -> None:
    definition = {
        "StartAt": "Charge",
        "States": {
            "Charge": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:getItem",
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3, "IntervalSeconds": 60}],
                "End": True,
            }
        },
    }
    sm = state_machine_row("payments", definition=json.dumps(definition))
    ex = execution_row(sm, status="RUNNING", started=T0, last_event_id=25_000 * 9 // 10)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": "Charge", "input": "{}"}),
            ("TaskScheduled", "taskScheduledEventDetails", {"resource": "getItem"}),
            ("TaskFailed", "taskFailedEventDetails", {"error": "Dynamo.Missing", "cause": "x"}),
        ],
    )
    Execution.objects.filter(pk=ex.pk).update(last_event_id=22_500)
    ex.refresh_from_db()
    now = T0 + dt.timedelta(seconds=10)
    open_states = progress.open_states(ex)
    why = stuck.analyse(ex, open_states, now)
    text = incident.summary(ex, base=BASE, now=now, open_states=open_states, why=why)
    assert (
        "- Retrying `Charge`: attempt 1 failed with `Dynamo.Missing`; "
        "attempt 2 of 4 at 2026-11-26 15:43:06 UTC"
    ) in text
    assert "- History: 22,500 of 25,000 events (90 %): AWS fails the execution at the limit" in text
    # Between the place and the times.
    lines = text.splitlines()
    assert lines.index("- Now in: `Charge` (since 2026-11-26 15:42:04 UTC)") == 1
    assert lines[2].startswith("- Retrying `Charge`")


def test_an_aborted_execution_says_who_stopped_it() -> None:
    ex = failed(status="ABORTED", error="Ops.Stopped", cause="runaway")
    text = summary_of(ex, stopped_by="oncall")
    assert text.startswith("**ABORTED**")
    assert "- Stopped by: oncall (from sfnui)" in text
    assert "- Cause: `runaway`" in text


def test_summary_for_reads_what_it_needs_from_the_cache() -> None:
    ex = failed(status="ABORTED", error="Ops.Stopped", cause="runaway")
    StopRequest.objects.create(execution=ex, username="oncall", outcome="STOPPED")
    StopRequest.objects.create(execution=ex, username="someone", outcome="REFUSED")
    now = T0 + dt.timedelta(hours=3)
    assert incident.summary_for(ex, base=BASE, now=now) == summary_of(
        ex, now=now, stopped_by="oncall"
    )


def test_a_json_cause_is_summed_up_as_error_type_and_message() -> None:
    ex = failed(cause='{"errorType": "KeyError", "errorMessage": "\'sku\'", "trace": ["a", "b"]}')
    assert "- Cause: `KeyError: 'sku'`" in summary_of(ex)


def test_times_are_utc_whatever_the_page_zone() -> None:
    from django.utils import timezone

    with timezone.override("America/New_York"):
        text = summary_of(failed())
    assert "- Started: 2026-11-26 15:42:03 UTC" in text


def test_hostile_text_cannot_format_link_or_break_out_of_its_code_span() -> None:
    ex = failed(
        error="x` **bold** [link](https://evil.example) ``",
        cause="<!channel> `rm -rf` @here",
    )
    text = summary_of(ex)
    # The fence is longer than any run of backticks inside, with spaces.
    assert "- Error: ``` x` **bold** [link](https://evil.example) `` ```" in text
    assert "- Cause: `` <!channel> `rm -rf` @here ``" in text
    assert incident.code("a`b") == "`` a`b ``"
    assert incident.code("plain") == "`plain`"
    assert incident.plain("my_sm*[x]") == r"my\_sm\*\[x\]"


def test_long_errors_and_causes_are_cut() -> None:
    ex = failed(error="E" * 1000, cause="c" * 5000)
    text = summary_of(ex)
    error_line = next(line for line in text.splitlines() if line.startswith("- Error"))
    cause_line = next(line for line in text.splitlines() if line.startswith("- Cause"))
    assert len(error_line) < 220
    assert error_line.endswith("…`")
    assert len(cause_line) < 320


# --- The pages ---------------------------------------------------------------------------


def textarea(body: str) -> str:
    match = re.search(r'<textarea id="incident-text"[^>]*>(.*?)</textarea>', body, re.S)
    assert match, "no incident text on the page"
    return html.unescape(match.group(1))


def test_the_detail_page_has_the_button_and_the_selectable_summary(
    viewer_client: Any, settings: Any
) -> None:
    settings.SFNUI_BASE_URL = BASE
    ex = failed()
    body = viewer_client.get(f"/executions/{ex.arn}/?tz=Europe/Berlin").content.decode()
    text = textarea(body)
    # A finished execution's summary does not depend on the time it is made.
    assert text == summary_of(ex)
    button = re.search(r'<button[^>]*id="incident-copy"[^>]*>', body)
    assert button
    assert 'data-copy-target="incident-text"' in button.group(0)
    copied = re.search(r'data-copy="([^"]*)"', button.group(0))
    assert copied
    assert html.unescape(copied.group(1)) == text
    assert "readonly" in body[body.index('id="incident-text"') - 20 : body.index("</textarea>")]
    # The page is in Berlin time, the summary is not.
    assert "2026-11-26 16:42:03" in body
    assert "2026-11-26 15:42:03 UTC" in text
    assert 'src="/static/sfnui/incident.js"' in body
    assert "<script>" not in body


def test_without_a_base_url_links_use_the_address_of_the_request(viewer_client: Any) -> None:
    ex = failed()
    body = viewer_client.get(f"/executions/{ex.arn}/", HTTP_HOST="localhost").content.decode()
    assert f"- sfnui: http://localhost/executions/{ex.arn}/" in textarea(body)


def test_the_history_page_has_it_too(viewer_client: Any, settings: Any) -> None:
    settings.SFNUI_BASE_URL = BASE
    ex = failed()
    body = viewer_client.get(f"/executions/{ex.arn}/history/").content.decode()
    text = textarea(body)
    assert "- Failed in: `ChargeCard` (TaskFailed, event 3)" in text
    assert f"- Failing event: {BASE}/executions/{ex.arn}/history/?event=3#event-3" in text
    assert 'id="incident-copy"' in body


def test_the_live_refresh_brings_the_summary_up_to_date(viewer_client: Any) -> None:
    ex = execution_row(status="RUNNING", started=T0)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("WaitStateEntered", "stateEnteredEventDetails", {"name": "Sleep", "input": "{}"}),
        ],
    )
    with time_machine.travel(T0 + dt.timedelta(minutes=5), tick=False):
        partial = viewer_client.get(f"/executions/{ex.arn}/", HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert body.lstrip().startswith('<section id="live"')
    # Out of band: htmx swaps the button and the text in place by their ids.
    assert re.search(r'<button[^>]*id="incident-copy"[^>]*hx-swap-oob="true"', body)
    assert re.search(r'<textarea id="incident-text"[^>]*hx-swap-oob="true"', body)
    assert "- Running for: 5 m (as of 2026-11-26 15:47:03 UTC)" in textarea(body)


def test_hostile_names_are_escaped_in_the_button_and_the_text(viewer_client: Any) -> None:
    ex = failed(error='"><script>alert(1)</script>', cause="<img src=x onerror=alert(1)>")
    body = viewer_client.get(f"/executions/{ex.arn}/").content.decode()
    assert "<script>alert(1)" not in body
    assert "<img src=x" not in body
    assert '`"><script>alert(1)</script>`' in textarea(body)


def test_a_real_failure_synced_from_aws(
    viewer_client: Any,
    settings: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    settings.SFNUI_BASE_URL = BASE
    arn = start(make_state_machine("payments", PAYMENT), "pay-1")
    wait_until_finished(sfn, [arn])
    flows.import_execution(arn)
    ex = Execution.objects.get(arn=arn)
    text = textarea(viewer_client.get(f"/executions/{arn}/").content.decode())
    failure = progress.failure_point(ex)
    assert failure is not None
    assert failure.caught is not None
    assert text.startswith("**FAILED** · payments · `pay-1`")
    assert "- Failed in: `Charge` (TaskFailed, event" in text
    assert "- Error: `Payment.Declined`" in text
    assert "- Cause: `the card was declined`" in text
    caught = failure.caught.event_id
    assert f"{BASE}/executions/{arn}/history/?event={caught}#event-{caught}" in text


def test_a_stop_from_the_dashboard_is_in_the_summary(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "n-1")
    ex = flows.import_execution(arn)
    Execution.objects.filter(pk=ex.pk).update(status="ABORTED", stop_date=ex.start_date)
    StopRequest.objects.create(execution=ex, username="oncall", outcome="STOPPED")
    text = textarea(viewer_client.get(f"/executions/{arn}/").content.decode())
    assert "- Stopped by: oncall (from sfnui)" in text
