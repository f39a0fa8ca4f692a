"""Incident journeys: copying an execution's summary for the incident channel
(with and without a clipboard API), and the "why is it still running" panel
of a task that is retrying and of a long Wait.

One fake AWS and one worker for the module.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from executions.models import Execution, HistoryEvent
from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import PAYMENT, wait_for, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# A payment whose lookup fails and is retried: the first retry after a
# second, the next one two minutes later, so that a journey sees attempt 3
# of 4 coming.
SLOW_RETRIES = {
    "StartAt": "LookUpLedger",
    "States": {
        "LookUpLedger": {
            "Type": "Task",
            "Resource": "arn:aws:states:::dynamodb:getItem",
            "Parameters": {"TableName": "legacy-ledger", "Key": {"id": {"S": "1"}}},
            "Retry": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "MaxAttempts": 3,
                    "IntervalSeconds": 1,
                    "BackoffRate": 120.0,
                }
            ],
            "End": True,
        }
    },
}
SLEEP_600 = {
    "StartAt": "HoldForSettlement",
    "States": {"HoldForSettlement": {"Type": "Wait", "Seconds": 600, "End": True}},
}


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("payment-capture", PAYMENT)
    aws_world.make_state_machine("ledger-lookup", SLOW_RETRIES)
    aws_world.make_state_machine("settlement", SLEEP_600)
    return aws_world


def _still(page: Page, folder: Path, name: str) -> None:
    """A screenshot of a page that keeps refreshing, in the `screenshot`
    fixture's folder. Playwright hides the caret with an injected style, which
    the CSP (style-src 'self') reports as a console error when the page is
    being swapped meanwhile: keep the caret instead."""
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True, caret="initial")


def _stop(world: AwsWorld, *arns: str) -> None:
    for arn in arns:
        if world.status(arn) == "RUNNING":
            world.sfn.stop_execution(executionArn=arn, error="test.Cleanup", cause="end of test")


def _failed_payment(world: AwsWorld, worker: Worker, name: str) -> str:
    arn = world.start("payment-capture", name, {"paymentId": "pay-7f3a"})
    wait_until_finished(world.sfn, [arn])
    # Until the worker has seen it end (a first sync may catch it running).
    wait_for(
        lambda: (
            synced(worker, arn)[0].status == "FAILED"
            and Execution.objects.get(arn=arn).history_complete
        ),
        timeout=60,
    )
    return arn


def test_copy_for_incident_puts_the_summary_on_the_clipboard(
    page: Page,
    context: BrowserContext,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    live_server: Any,
    screenshot: Callable[..., Any],
) -> None:
    arn = _failed_payment(world, sync_worker, "pay-20261126-1542-7f3a")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    signed_in(page, user, f"/executions/{arn}/?tz=Europe/Berlin")
    assert page.evaluate("window.isSecureContext && !!navigator.clipboard")

    box = page.locator("details#incident")
    expect(box).not_to_have_attribute("open", "")
    page.get_by_role("button", name="Copy for incident").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()

    copied = page.evaluate("navigator.clipboard.readText()")
    text = page.locator("#incident-text").input_value()
    assert copied == text
    lines = copied.splitlines()
    assert lines[0] == "**FAILED** · payment-capture · `pay-20261126-1542-7f3a`"
    assert "- Failed in: `Charge` (TaskFailed, event" in copied
    assert "- Error: `Payment.Declined`" in copied
    assert "- Cause: `the card was declined`" in copied
    # One clock for the channel, whatever zone the page shows.
    assert re.search(r"^- Started: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", copied, re.M)
    assert lines[-1] == "_Times in UTC._"
    assert f"- sfnui: {live_server.url}/executions/{arn}/" in copied
    failing = re.search(r"^- Failing event: (\S+)$", copied, re.M)
    assert failing
    # The copied link lands on the failing event.
    page.goto(failing.group(1))
    event_id = failing.group(1).rsplit("-", 1)[1]
    expect(page.locator(f"#event-{event_id}")).to_be_visible()
    expect(page.locator(f"#event-{event_id}")).to_contain_text("TaskFailed")

    page.goto(f"/executions/{arn}/?tz=Europe/Berlin")
    page.get_by_role("button", name="Copy for incident").click()
    expect(box).to_have_attribute("open", "")
    screenshot(page, "incident-copy")


def test_without_a_clipboard_api_the_summary_is_shown_and_selected(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    arn = _failed_payment(world, sync_worker, "pay-plain-http")
    # As on a dashboard served over plain http: no navigator.clipboard.
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    signed_in(page, user, f"/executions/{arn}/history/")
    assert page.evaluate("navigator.clipboard === undefined")

    page.get_by_role("button", name="Copy for incident").click()
    text = page.locator("#incident-text")
    expect(text).to_be_visible()
    expect(text).to_be_focused()
    value = text.input_value()
    assert value.startswith("**FAILED** · payment-capture · `pay-plain-http`")
    selected = page.evaluate(
        "(() => { const t = document.getElementById('incident-text');"
        " return t.value.substring(t.selectionStart, t.selectionEnd); })()"
    )
    assert selected == value
    expect(page.locator("#incident-copy")).to_have_text(
        re.compile(r"^(Copied|Selected: press Ctrl\+C)$")
    )
    screenshot(page, "incident-copy-no-clipboard")


def test_the_stuck_panel_shows_a_retry_attempt_and_a_wait_resume_time(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshots_dir: Path,
) -> None:
    retrying = world.start("ledger-lookup", "lookup-1")
    waiting = world.start("settlement", "settle-1")
    try:
        synced(sync_worker, retrying, waiting)
        signed_in(page, user, f"/executions/{retrying}/")

        panel = page.locator("#stuck")
        # The worker syncs the second failure; the live part refreshes by itself.
        expect(panel.locator(".stuck-retry .attempt")).to_have_text("attempt 3 of 4")
        expect(panel.locator(".stuck-retry")).to_contain_text("DynamoDB.ResourceNotFoundException")
        failure = (
            HistoryEvent.objects.filter(execution__arn=retrying, type="TaskFailed")
            .order_by("-event_id")
            .first()
        )
        assert failure is not None
        next_at = failure.timestamp + dt.timedelta(seconds=120)
        expect(panel.locator(".stuck-retry .next-attempt")).to_have_text(
            f"{next_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        link = panel.locator(".stuck-retry a", has_text=f"event {failure.event_id}")
        expect(link).to_have_attribute(
            "href", re.compile(rf"history/\?event={failure.event_id}#event-{failure.event_id}$")
        )
        _still(page, screenshots_dir, "incident-stuck-retry")

        # The summary to copy follows the live part: each refresh brings it
        # (out of band) with a newer "as of", the button and the text alike.
        summary = page.locator("#incident-text")
        first = summary.input_value()
        assert "- Now in: `LookUpLedger`" in first
        assert (
            "- Retrying `LookUpLedger`: attempt 2 failed with "
            "`DynamoDB.ResourceNotFoundException`; "
            f"attempt 3 of 4 at {next_at:%Y-%m-%d %H:%M:%S} UTC"
        ) in first
        expect(summary).not_to_have_value(first)
        copied, shown = page.evaluate(
            "[document.getElementById('incident-copy').dataset.copy,"
            " document.getElementById('incident-text').value]"
        )
        assert copied == shown != first

        page.goto(f"/executions/{waiting}/?tz=America/New_York")
        entered = HistoryEvent.objects.get(execution__arn=waiting, type="WaitStateEntered")
        resume = (entered.timestamp + dt.timedelta(seconds=600)).astimezone(
            zoneinfo.ZoneInfo("America/New_York")
        )
        wait_item = page.locator("#stuck .stuck-wait")
        expect(wait_item.locator(".resume-at")).to_have_text(
            f"{resume:%Y-%m-%d %H:%M:%S} {resume.tzname()}"
        )
        expect(wait_item).to_contain_text("Seconds 600")
        expect(page.locator("#stuck .stuck-events")).to_contain_text("of 25,000 events")
        _still(page, screenshots_dir, "incident-stuck-wait")
    finally:
        _stop(world, retrying, waiting)
