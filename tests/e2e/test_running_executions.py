"""Running executions: watching one finish, stopping a runaway, and opening one
the dashboard has never synced.

One fake AWS and one worker for the module. Executions that must be running
while a journey looks at them wait in a `.waitForTaskToken` task (a "gate")
until the test releases them, or in an hour-long Wait state (the runaway).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from executions.models import Execution, StopRequest
from tests.e2e.conftest import AwsWorld, Gate, path_of, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

OTHER_REGION = "us-west-2"  # not among SFNUI_REGIONS: the sync never lists it


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("nightly-batch", LONG_WAIT)
    return aws_world


@pytest.fixture(scope="module")
def gate(world: AwsWorld) -> Gate:
    return world.make_gate("order-approval")


def _stop_in_aws(world: AwsWorld, arn: str) -> None:
    if world.status(arn) == "RUNNING":
        world.sfn.stop_execution(executionArn=arn, error="test.Cleanup", cause="end of the test")


def test_a_running_execution_updates_by_itself_when_it_finishes(
    page: Page,
    user: Any,
    world: AwsWorld,
    gate: Gate,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    arn = world.start(gate.arn, "approval-1", {"order": 42})
    synced(sync_worker, arn)
    signed_in(page, user)
    page.get_by_role("link", name="approval-1", exact=True).click()

    heading = page.locator(".page-head h1 .status")
    expect(heading).to_have_text("Running")
    live = page.locator("#live")
    expect(live.locator("table.states")).to_contain_text("WaitForApproval")
    detail_url = page.url
    page.evaluate("window.__marker = 'set before it finished'")

    gate.release(arn, {"approved": True, "by": "e2e"})

    expect(heading).to_have_text("Succeeded")
    assert page.evaluate("window.__marker") == "set before it finished", "the page was reloaded"
    assert page.url == detail_url
    expect(live).to_have_count(0)
    expect(page.locator("#output-text")).to_contain_text('"by": "e2e"')
    expect(page).to_have_title(re.compile(r"^approval-1 · Succeeded"))
    screenshot(page, "running-execution-finished-live")


def test_an_operator_stops_a_runaway_execution_with_a_reason(
    page: Page,
    operator: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    arn = world.start("nightly-batch", "nightly-stop-me")
    synced(sync_worker, arn)
    error = "INC-4242.Runaway"
    cause = "Nightly batch stuck in Sleep for an hour; stopped by oncall during INC-4242"
    signed_in(page, operator, f"/executions/{arn}/")
    expect(page.locator(".page-head h1 .status")).to_have_text("Running")

    page.get_by_role("link", name="Stop…").click()

    expect(page).to_have_url(re.compile(r"/stop/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Stop this execution?")
    expect(page.locator(".stop-target")).to_contain_text("Sleep")
    page.get_by_label("Error").fill(error)
    page.get_by_label("Cause").fill(cause)
    page.get_by_role("button", name="Stop nightly-stop-me").click()

    assert_path = f"/executions/{arn}/"
    expect(page).to_have_url(re.compile(re.escape(assert_path) + "$"))
    assert path_of(page) == assert_path
    expect(page.locator(".messages")).to_contain_text("Stopped nightly-stop-me")
    expect(page.locator(".page-head h1 .status")).to_have_text("Aborted")
    expect(page.locator(".banner.failure")).to_contain_text("stopped by oncall from this dashboard")
    record = page.locator("#stops table.stop-requests tbody tr")
    expect(record).to_have_count(1)
    expect(record).to_contain_text("oncall")
    expect(record.locator(".outcome")).to_have_text("STOPPED")
    expect(record).to_contain_text(error)
    expect(record).to_contain_text(cause)

    aws = world.sfn.describe_execution(executionArn=arn)
    assert (aws["status"], aws["error"], aws["cause"]) == ("ABORTED", error, cause)
    attempt = StopRequest.objects.get(execution__arn=arn)
    assert (attempt.username, attempt.outcome, attempt.cause) == ("oncall", "STOPPED", cause)
    screenshot(page, "runaway-stopped-with-reason")


def test_a_viewer_sees_no_stop_button_and_cannot_post_a_stop(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    arn = world.start("nightly-batch", "nightly-keep-running")
    try:
        synced(sync_worker, arn)
        signed_in(page, user, f"/executions/{arn}/")
        expect(page.locator(".page-head h1 .status")).to_have_text("Running")
        actions = page.locator(".page-head .actions")
        expect(actions.get_by_role("link", name="History")).to_be_visible()
        expect(actions.get_by_role("link", name=re.compile("Stop"))).to_have_count(0)
        screenshot(page, "viewer-sees-no-stop-button")
        token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()

        response = page.request.post(
            f"/executions/{arn}/stop/",
            form={
                "csrfmiddlewaretoken": token,
                "error": "sfnui.ManualStop",
                "cause": "a viewer tries anyway",
                "request_token": str(uuid.uuid4()),
            },
        )

        assert response.status == 403
        # Refused for the permission, not for the CSRF token.
        assert "executions.stop_execution" in response.text()
        assert world.status(arn) == "RUNNING"
        assert not StopRequest.objects.exists()
        # The confirmation page itself is refused too, with a page that says why.
        shown = page.goto(f"/executions/{arn}/stop/")
        assert shown is not None
        assert shown.status == 403
        expect(page.locator("main")).to_contain_text("executions.stop_execution")
        screenshot(page, "viewer-stop-refused")
    finally:
        _stop_in_aws(world, arn)


def test_pasting_the_arn_of_an_execution_never_synced_opens_it(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    # In a region the dashboard does not sync: only the lookup can bring it in.
    sm = world.make_state_machine("reports-west", PASS, region=OTHER_REGION)
    arn = world.start(sm, "monthly-report-7", {"month": "2024-05"}, region=OTHER_REGION)
    wait_until_finished(world.client("stepfunctions", OTHER_REGION), [arn])
    signed_in(page, user)
    assert not Execution.objects.filter(arn=arn).exists()

    search = page.get_by_role("searchbox", name="Search executions")
    search.fill(arn)
    search.press("Enter")

    expect(page).to_have_url(re.compile(re.escape(f"/executions/{arn}/") + "$"))
    expect(page.locator(".page-head h1")).to_contain_text("monthly-report-7")
    expect(page.locator(".page-head h1 .status")).to_have_text("Succeeded")
    expect(page.locator("#execution-arn")).to_have_text(arn)
    expect(page.locator("#input-text")).to_contain_text('"month": "2024-05"')
    assert Execution.objects.get(arn=arn).history_complete
    screenshot(page, "pasted-arn-looked-up")
