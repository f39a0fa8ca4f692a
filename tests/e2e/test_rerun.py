"""Re-run: from a failed execution's page, its input in the start form, edited,
confirmed, and the new execution's page opens at once.

One fake AWS and one worker for the module: the worker syncs the source
execution into the cache, and then the new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from executions.models import ActionRequest
from tests.e2e.conftest import AwsWorld, path_of, signed_in, synced
from tests.e2e.worker import Worker

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Fails unless the input names a day: the re-run fixes the input.
REPORT = {
    "StartAt": "HasDay",
    "States": {
        "HasDay": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.day", "IsPresent": True, "Next": "Build"}],
            "Default": "NoDay",
        },
        "Build": {"Type": "Pass", "Result": {"built": True}, "ResultPath": "$.report", "End": True},
        "NoDay": {"Type": "Fail", "Error": "Report.NoDay", "Cause": "the input names no day"},
    },
}


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("daily-report", REPORT)
    return aws_world


def test_a_failed_run_is_re_run_with_an_edited_input_and_its_page_opens(
    page: Page,
    operator: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    operator.user_permissions.add(Permission.objects.get(codename="start_execution"))
    failed = world.start("daily-report", "report-missing-day", {"report": "sales", "dya": "12-03"})
    (source,) = synced(sync_worker, failed)
    assert source.status == "FAILED"

    signed_in(page, operator, f"/executions/{failed}/")
    page.get_by_role("link", name="Re-run with this input…").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Re-run report-missing-day")
    box = page.get_by_label("Input")
    # The failed run's input, as the cache has it, ready to edit.
    assert json.loads(box.input_value()) == {"report": "sales", "dya": "12-03"}
    box.fill('{\n  "report": "sales",\n  "day": "2026-12-03"\n}')
    page.get_by_label("Name").fill("report-sales-2026-12-03")
    screenshot(page, "rerun-form")
    page.get_by_role("button", name="Review…").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Start this execution?")
    expect(page.locator("#start-summary")).to_contain_text("report-sales-2026-12-03")
    expect(page.locator("#start-summary")).to_contain_text("report-missing-day")  # re-run of
    expect(page.locator("#start-input")).to_contain_text('"day": "2026-12-03"')
    screenshot(page, "rerun-confirm")
    page.get_by_role("button", name=re.compile(r"^Start report-sales")).click()

    # The new execution's page, at once: its row was made from AWS's answer.
    new_arn = failed.replace("report-missing-day", "report-sales-2026-12-03")
    expect(page).to_have_url(re.compile(re.escape(f"/executions/{new_arn}/")))
    assert path_of(page) == f"/executions/{new_arn}/"
    expect(page.locator(".messages")).to_contain_text("Started report-sales-2026-12-03")
    expect(page.locator("#input")).to_contain_text('"day": "2026-12-03"')
    # ... and the worker syncs it to its end: this time it succeeds.
    expect(page.locator("h1 .status")).to_have_text("Succeeded", timeout=60_000)
    screenshot(page, "rerun-new-execution")

    attempt = ActionRequest.objects.get()
    assert (attempt.kind, attempt.outcome, attempt.username) == ("START", "DONE", "oncall")
    assert attempt.result_arn == new_arn
    assert attempt.parameters["rerun_of"] == failed
    assert json.loads(world.sfn.describe_execution(executionArn=new_arn)["input"]) == {
        "report": "sales",
        "day": "2026-12-03",
    }
