"""Hostile content is shown as text, and no script of it runs.

Execution names cannot hold markup (AWS refuses < > " and more in names), but
everything else can: the input, state names in the definition, and the error
and cause of a Fail state. One execution carries all of them; the list, its
detail page and its history must show them literally, and Chromium must run
none of them: no dialog, no `window.__xss`, no element they would create.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect

from executions.models import Execution
from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__xss=1;alert(1)</script>"
IMG = '"><img src=x onerror="window.__xss=1;alert(2)">'
LINK = "javascript:window.__xss=1;alert(3)"
HOSTILE = {
    "StartAt": SCRIPT,
    "States": {
        SCRIPT: {"Type": "Pass", "Next": IMG},
        IMG: {"Type": "Fail", "Error": SCRIPT, "Cause": IMG},
    },
}


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("hostile", HOSTILE)
    aws_world.start("hostile", "xss-1", {"note": SCRIPT, "html": IMG, "url": LINK})
    wait_until_finished(aws_world.sfn, list(aws_world.executions.values()))
    assert aws_world.status("xss-1") == "FAILED"
    return aws_world


@pytest.fixture
def hostile(world: AwsWorld, sync_worker: Worker) -> Execution:
    [ex] = synced(sync_worker, world.executions["xss-1"])
    return ex


@pytest.fixture(scope="module")
def state_names(world: AwsWorld) -> list[str]:
    """The state names as AWS reports them in the history. (moto keeps the
    JSON escapes of a name: `\\"><img ...`; the quotes that break out of an
    attribute are still there.)"""
    events = world.sfn.get_execution_history(executionArn=world.executions["xss-1"])["events"]
    names = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    assert names[0] == SCRIPT
    assert '"><img src=x onerror=' in names[1]
    return names


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """Every dialog the page opens (an alert() that ran), dismissed."""
    opened: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        opened.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    return opened


def assert_inert(page: Page, dialogs: list[str]) -> None:
    """None of the payloads became markup or ran."""
    assert dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    expect(page.locator('img[src="x"], [onerror], a[href^="javascript:"]')).to_have_count(0)
    assert (
        page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__xss')).length")
        == 0
    )


def test_hostile_input_state_names_and_errors_are_shown_as_text_and_never_run(
    page: Page,
    dialogs: list[str],
    user: Any,
    hostile: Execution,
    state_names: list[str],
    screenshot: Callable[..., Any],
) -> None:
    signed_in(page, user)
    row = page.locator("table.executions tbody tr", has_text="xss-1")
    expect(row.locator(".error-line")).to_have_text(SCRIPT)
    assert_inert(page, dialogs)

    row.get_by_role("link", name="xss-1").click()

    expect(page.locator(".page-head h1 .status")).to_have_text("Failed")
    banner = page.locator(".banner.failure")
    expect(banner.locator("a.state-link")).to_have_text(state_names[1])
    expect(banner.locator(".facts dd.mono").first).to_have_text(SCRIPT)
    expect(banner).to_contain_text(IMG)
    stored = page.locator("#input-text")
    expect(stored).to_contain_text(f'"note": "{SCRIPT}"')
    expect(stored).to_contain_text(
        '"html": "\\"><img src=x onerror=\\"window.__xss=1;alert(2)\\">"'
    )
    expect(stored).to_contain_text(f'"url": "{LINK}"')
    assert_inert(page, dialogs)
    screenshot(page, "hostile-content-detail")

    page.locator(".page-head .actions").get_by_role("link", name="History").click()

    timeline = page.locator("#timeline")
    expect(timeline.locator(".tl-label a")).to_have_text(state_names)
    events = page.locator("table.events tbody")
    expect(events.locator("td.path")).to_contain_text([SCRIPT, SCRIPT, state_names[1]])
    failed = events.locator("tr", has=page.locator("td.type", has_text="ExecutionFailed"))
    expect(failed.locator("td.summary")).to_contain_text(SCRIPT)
    expect(failed.locator("td.summary")).to_contain_text(IMG)
    assert_inert(page, dialogs)
    screenshot(page, "hostile-content-history")
