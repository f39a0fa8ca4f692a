"""Mid-incident: what failed, where, and the history around it.

One fake AWS and one worker for the module: an order pipeline (Choice, Map,
Parallel, Lambda, Wait) that succeeds once and rejects an empty order, a
payment that fails for real (a DynamoDB task, retried, caught, then a Fail
state), and a plain Pass machine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from executions.models import Execution, HistoryEvent
from tests.e2e.conftest import AwsWorld, path_of, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import ORDER_PIPELINE, PASS, PAYMENT, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAILED = ("o-empty", "pay-1")
SUCCEEDED = ("o-1", "hello-1", "hello-2")


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("order-pipeline", ORDER_PIPELINE)
    aws_world.make_state_machine("payment-capture", PAYMENT)
    aws_world.make_state_machine("hello", PASS)
    aws_world.start("order-pipeline", "o-1", {"items": [1, 2, 3]})
    aws_world.start("order-pipeline", "o-empty", {"items": []})
    aws_world.start("payment-capture", "pay-1", {"payment": "legacy-wallet"})
    aws_world.start("hello", "hello-1")
    aws_world.start("hello", "hello-2")
    wait_until_finished(aws_world.sfn, list(aws_world.executions.values()))
    assert {n: aws_world.status(n) for n in FAILED} == dict.fromkeys(FAILED, "FAILED")
    assert {n: aws_world.status(n) for n in SUCCEEDED} == dict.fromkeys(SUCCEEDED, "SUCCEEDED")
    return aws_world


@pytest.fixture
def cache(world: AwsWorld, sync_worker: Worker) -> dict[str, Execution]:
    """Every execution of the module, synced by the worker into this test's
    (fresh) database."""
    rows = synced(sync_worker, *world.executions.values())
    return {ex.name: ex for ex in rows}


def test_the_list_filters_to_failed_executions_and_the_url_keeps_the_filter(
    page: Page, user: Any, cache: dict[str, Execution], screenshot: Callable[..., Any]
) -> None:
    signed_in(page, user)
    rows = page.locator("table.executions tbody tr")
    expect(rows).to_have_count(len(cache))
    chips = page.get_by_role("navigation", name="Executions per status")
    expect(chips.locator("a.chip.on")).to_have_text(re.compile(rf"^All\s+{len(cache)}$"))

    chips.locator("a.chip-FAILED").click()

    expect(page).to_have_url(re.compile(r"/executions/\?status=FAILED$"))
    expect(chips.locator("a.chip-FAILED")).to_have_attribute("aria-current", "true")
    expect(rows).to_have_count(len(FAILED))
    assert sorted(rows.locator("td.name a").all_inner_texts()) == sorted(FAILED)
    expect(rows.locator(".status")).to_have_text(["Failed"] * len(FAILED))

    page.reload()
    assert path_of(page) == "/executions/?status=FAILED"
    expect(chips.locator("a.chip-FAILED")).to_have_attribute("aria-current", "true")
    expect(rows).to_have_count(len(FAILED))
    expect(rows.locator(".status")).to_have_text(["Failed"] * len(FAILED))
    screenshot(page, "list-filtered-to-failed")


def test_a_failed_execution_names_its_failing_state_and_links_to_that_event(
    page: Page, user: Any, cache: dict[str, Execution], screenshot: Callable[..., Any]
) -> None:
    pay = cache["pay-1"]
    fail_state = HistoryEvent.objects.get(execution=pay, type="FailStateEntered")
    signed_in(page, user, "/executions/?status=FAILED")

    page.get_by_role("link", name="pay-1", exact=True).click()

    expect(page.locator("h1 .status")).to_have_text("Failed")
    banner = page.locator(".banner.failure")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Payment.Declined")
    expect(banner).to_contain_text("the card was declined")
    # The Fail state it ended in, reached by a Catch after the task failed.
    state_link = banner.locator("a.state-link").first
    expect(state_link).to_have_text("Declined")
    expect(banner.locator("a.caught-link")).to_have_text("Charge")

    state_link.click()

    anchor = f"event-{fail_state.event_id}"
    expect(page).to_have_url(re.compile(rf"/history/\?event={fail_state.event_id}#{anchor}$"))
    assert page.evaluate("location.hash") == f"#{anchor}"
    row = page.locator(f"#{anchor}")
    expect(row).to_be_visible()
    expect(row).to_be_in_viewport()
    expect(row.locator("td.type")).to_have_text("FailStateEntered")
    expect(row).to_contain_text("Declined")
    assert (
        page.evaluate("document.querySelector(':target') && document.querySelector(':target').id")
        == anchor
    )
    screenshot(page, "failed-execution-event-in-history")


def test_the_history_shows_map_iterations_and_filters_events_by_type(
    page: Page, user: Any, cache: dict[str, Execution], screenshot: Callable[..., Any]
) -> None:
    order = cache["o-1"]
    signed_in(page, user, f"/executions/{order.arn}/")
    page.locator(".page-head .actions").get_by_role("link", name="History").click()

    timeline = page.locator("#timeline")
    expect(timeline).to_be_visible()
    map_group = timeline.locator("details.tl-group").filter(
        has=page.locator('summary .tl-label[title="EachItem (3 iterations)"]')
    )
    expect(map_group).to_have_count(1)
    iterations = map_group.locator(".tl-row.k-iteration")
    expect(iterations).to_have_count(3)
    if not map_group.first.evaluate("d => d.open"):
        map_group.locator("summary").first.click()
    for i in range(3):
        lane = iterations.nth(i)
        expect(lane).to_be_visible()
        expect(lane.locator(".tl-label")).to_contain_text(f"iteration {i}")
    # Each iteration ran Reserve; the Parallel's two branches are drawn too.
    expect(map_group.locator(".tl-label", has_text="Reserve")).to_have_count(3)
    expect(timeline.locator('.tl-label[title="ShipAndBill (2 branches)"]')).to_have_count(1)

    events = page.locator("table.events tbody tr")
    total = HistoryEvent.objects.filter(execution=order).count()
    expect(events).to_have_count(total)
    page.locator("details.type-picker summary").click()
    page.get_by_role("checkbox", name=re.compile(r"^MapIterationStarted\b")).check()
    page.locator("form.history-filters").get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"/history/\?type=MapIterationStarted$"))
    expect(events).to_have_count(3)
    expect(events.locator("td.type")).to_have_text(["MapIterationStarted"] * 3)
    expect(page.locator("details.type-picker summary")).to_contain_text("MapIterationStarted")
    page.reload()
    expect(events.locator("td.type")).to_have_text(["MapIterationStarted"] * 3)
    screenshot(page, "history-map-iterations-filtered")
