"""Runaways: find them (the runaway finder), stop them together (the guarded
bulk stop), and find the batch in the audit.

One fake AWS and one worker for the module: the worker syncs, and it runs
the bulk stop's tasks that the live server's pages send.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from executions.models import BulkStop, StopRequest
from tests.e2e.conftest import AwsWorld, path_of, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import LONG_WAIT, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Waits as long as its input says: a second usually, an hour when it is stuck.
# (A .waitForTaskToken gate would do too, but the fake AWS cannot stop one.)
APPROVAL = {
    "StartAt": "WaitForApproval",
    "States": {"WaitForApproval": {"Type": "Wait", "SecondsPath": "$.seconds", "End": True}},
}


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("nightly-batch", LONG_WAIT)
    aws_world.make_state_machine("invoice-batch", LONG_WAIT)
    aws_world.make_state_machine("order-approval", APPROVAL)
    return aws_world


def _stop_in_aws(world: AwsWorld, *arns: str) -> None:
    for arn in arns:
        if world.status(arn) == "RUNNING":
            world.sfn.stop_execution(executionArn=arn, error="test.Cleanup", cause="end of test")


def test_a_bulk_stop_of_three_executions_from_a_filter_shows_three_results_and_one_batch(
    page: Page,
    operator: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    nightly = world.state_machines["nightly-batch"]
    runaways = [world.start("nightly-batch", f"nightly-{i}") for i in range(3)]
    bystander = world.start("invoice-batch", "invoice-keep-running")
    try:
        synced(sync_worker, *runaways, bystander)
        signed_in(page, operator, f"/executions/?state_machine={nightly}&status=RUNNING")
        expect(page.locator("table.executions tbody tr")).to_have_count(3)
        # Picking rows: the button counts them, and the live refresh pauses.
        picked = page.get_by_role("button", name="Stop 0 picked…")
        expect(picked).to_be_disabled()
        page.get_by_label("Pick nightly-0 to stop").check()
        page.get_by_label("Pick nightly-2 to stop").check()
        expect(page.get_by_role("button", name="Stop 2 picked…")).to_be_enabled()
        expect(page.locator("[data-bulk-paused]")).to_be_visible()
        page.wait_for_timeout(6000)  # longer than the list's refresh: the picks stay
        expect(page.get_by_label("Pick nightly-2 to stop")).to_be_checked()
        screenshot(page, "bulk-stop-list")

        page.get_by_role("link", name="Stop all running that match these filters…").click()

        expect(page).to_have_url(re.compile(r"/bulk-stop/\?"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Stop 3 running executions?")
        rows = page.locator("table.dry-list tbody tr")
        expect(rows).to_have_count(3)
        for i in range(3):
            expect(page.locator("table.dry-list")).to_contain_text(f"nightly-{i}")
        expect(page.locator("table.dry-list")).not_to_contain_text("invoice-keep-running")
        page.locator("input[name=typed]").fill("2")
        page.get_by_label("Cause").fill("INC-4343: nightly batch runaway, stopped by oncall")
        page.get_by_role("button", name="Stop 3 executions").click()

        # A wrong count: refused, nothing sent, the page asks again.
        expect(page.locator(".errorlist")).to_contain_text("type 3")
        assert not BulkStop.objects.exists()
        assert all(world.status(arn) == "RUNNING" for arn in runaways)
        screenshot(page, "bulk-stop-dry-run")
        page.locator("input[name=typed]").fill("3")
        page.get_by_role("button", name="Stop 3 executions").click()

        expect(page).to_have_url(re.compile(r"/bulk-stop/[0-9a-f-]{36}/$"))
        results = page.locator("table.bulk-items tbody tr.result-STOPPED")
        expect(results).to_have_count(3)
        expect(page.locator(".bulk-counts")).to_contain_text("Done")
        expect(page.locator(".bulk-counts")).to_contain_text("stopped 3")
        batch = BulkStop.objects.get()
        assert path_of(page) == f"/bulk-stop/{batch.pk}/"
        screenshot(page, "bulk-stop-progress")

        page.get_by_role("link", name="its attempts in the audit").click()

        expect(page).to_have_url(re.compile(rf"/audit/\?batch={batch.pk}$"))
        attempts = page.locator("table.stop-requests tbody tr")
        expect(attempts).to_have_count(3)
        expect(page.locator(".audit-summary")).to_contain_text("3 attempts match")
        expect(attempts.locator(".outcome")).to_have_text(["STOPPED"] * 3)
        batch_links = attempts.get_by_role("link", name=f"batch {str(batch.pk)[:8]}")
        expect(batch_links).to_have_count(3)
        screenshot(page, "bulk-stop-audit")

        for arn in runaways:
            aws = world.sfn.describe_execution(executionArn=arn)
            assert (aws["status"], aws["error"]) == ("ABORTED", "sfnui.BulkStop")
            assert aws["cause"] == "INC-4343: nightly batch runaway, stopped by oncall"
        assert world.status(bystander) == "RUNNING"
        assert {a.batch_id for a in StopRequest.objects.all()} == {batch.pk}
    finally:
        _stop_in_aws(world, *runaways, bystander)


def test_the_runaway_finder_flags_executions_stuck_past_the_usual_and_stops_them(
    page: Page,
    operator: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    # Six approvals that came through in a second make that "usual"; three
    # more wait far longer.
    quick = [world.start("order-approval", f"approval-ok-{i}", {"seconds": 1}) for i in range(6)]
    wait_for(lambda: all(world.status(arn) == "SUCCEEDED" for arn in quick), timeout=60)
    stuck = [
        world.start("order-approval", f"approval-stuck-{i}", {"seconds": 3600}) for i in range(3)
    ]
    nightly = world.start("nightly-batch", "nightly-fresh")
    try:
        synced(sync_worker, *quick, *stuck, nightly)
        signed_in(page, operator, "/runaways/")
        card = page.locator("section.machine", has_text="order-approval")
        expect(card).to_contain_text("3 longer than usual", timeout=60_000)
        expect(card.locator("table.groups")).to_contain_text("WaitForApproval")
        expect(page.locator("section.machine").first).to_contain_text("order-approval")
        expect(page.locator("#outliers ~ form table tbody tr")).to_have_count(3)
        screenshot(page, "runaways")

        card.get_by_role("link", name="Stop these 3…").click()

        expect(page.get_by_role("heading", level=1)).to_have_text("Stop 3 running executions?")
        expect(page.locator(".dry-run")).to_contain_text("in the state WaitForApproval")
        page.locator("input[name=typed]").fill("3")
        page.get_by_role("button", name="Stop 3 executions").click()
        expect(page.locator("table.bulk-items tbody tr.result-STOPPED")).to_have_count(3)
        for arn in stuck:
            assert world.status(arn) == "ABORTED"
        assert world.status(nightly) == "RUNNING"
    finally:
        _stop_in_aws(world, *stuck, nightly)
