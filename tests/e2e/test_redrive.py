"""Redrive: a failed execution redriven from its detail page, then its history
and timeline split by attempt.

One fake AWS and one worker for the module: the worker syncs the execution,
before and after the redrive. The fake AWS replays the unsuccessful step of
a redriven attempt (fakeaws.redrive), so attempt 2 fails again by itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from executions.models import ActionRequest, Execution
from tests.e2e.conftest import AwsWorld, path_of, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import FAIL, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> Iterator[AwsWorld]:
    aws_world.make_state_machine("order-checks", FAIL)
    aws_world.server.app.configure(redrive={"replay": True, "replay_seconds": 1.0})
    yield aws_world
    aws_world.server.app.configure(redrive={"replay": False})


def test_a_redrive_from_the_detail_page_shows_as_a_second_attempt_in_the_timeline(
    page: Page,
    operator: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    operator.user_permissions.add(Permission.objects.get(codename="redrive_execution"))
    arn = world.start("order-checks", "order-check-1")
    wait_for(lambda: world.status(arn) == "FAILED", timeout=30)
    synced(sync_worker, arn)

    signed_in(page, operator, f"/executions/{arn}/?tz=Europe/Berlin")
    # In Berlin's time, whatever the season.
    expect(page.locator("#redrivable-until")).to_contain_text(re.compile(r" CES?T "))
    screenshot(page, "redrive-detail-before")
    page.get_by_role("link", name="Redrive…").click()

    expect(page).to_have_url(re.compile(r"/redrive/\?tz=Europe%2FBerlin$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Redrive this execution?")
    expect(page.locator(".redrive-target")).to_contain_text("Boom")
    screenshot(page, "redrive-confirmation")
    page.get_by_role("button", name="Redrive order-check-1").click()

    # Back on the execution: AWS accepted it, attempt 2 runs.
    assert path_of(page).startswith(f"/executions/{arn}/?tz=")
    expect(page.locator(".messages, [role=status], .banner").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"Redrove order-check-1.*attempt 2"))).to_be_visible()
    row = ActionRequest.objects.get()
    assert (row.kind, row.outcome, row.target_arn, row.username) == (
        "REDRIVE",
        "DONE",
        arn,
        "oncall",
    )
    assert world.sfn.describe_execution(executionArn=arn)["redriveCount"] == 1

    # The replayed step fails again; the worker syncs attempt 2 to its end.
    def attempt_two_synced() -> bool:
        ex = Execution.objects.filter(arn=arn).first()
        return bool(ex and ex.redrive_count == 1 and ex.status == "FAILED" and ex.history_complete)

    wait_for(attempt_two_synced, timeout=60)
    page.goto(f"/executions/{arn}/history/?tz=Europe/Berlin")
    timeline = page.locator("#timeline")
    expect(timeline.locator("rect.attempt")).to_have_count(2)
    expect(timeline.locator(".tl-attempts")).to_contain_text("2 attempts: attempt 1 · attempt 2")
    expect(page.locator("tr#attempt-1")).to_contain_text("Attempt 1")
    expect(page.locator("tr#attempt-2")).to_contain_text("Attempt 2")
    expect(page.locator("tr#attempt-2")).to_contain_text("redriven at")
    # Attempt 2 begins right before its ExecutionRedriven event.
    redriven = page.locator("tr#attempt-2 + tr")
    expect(redriven.locator("td.type")).to_have_text("ExecutionRedriven")
    screenshot(page, "redrive-history-attempts")

    timeline.get_by_role("link", name="attempt 2").click()
    expect(page).to_have_url(re.compile(r"#event-\d+$"))
    event_id = path_of(page).rsplit("#event-", 1)[1]
    expect(page.locator(f"tr#event-{event_id} td.type")).to_have_text("ExecutionRedriven")
