"""From /failures/ to the filtered list: an on-call engineer sees the failures
of the last hour grouped, picks the group of the incident, and lands on the
list of exactly those executions, in the zone the page was in.

One fake AWS and one worker for the module: the worker syncs the runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import FAIL, ORDER_PIPELINE, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("checkout", FAIL)
    aws_world.make_state_machine("order-pipeline", ORDER_PIPELINE)
    for i in range(3):
        aws_world.start("checkout", f"checkout-{i}", {})
    aws_world.start("order-pipeline", "empty-order", {"items": []})
    aws_world.start("order-pipeline", "good-order", {"items": [1, 2]})
    wait_until_finished(aws_world.sfn, list(aws_world.executions.values()))
    return aws_world


def test_from_the_failures_to_the_list_of_one_group(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    synced(sync_worker, *world.executions.values())

    signed_in(page, user, "/failures/?window=1h&tz=Europe/Berlin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Failures")
    expect(page.locator(".failures-summary")).to_contain_text("4 failed, timed-out or aborted")
    rows = page.locator("table.failure-groups tbody tr")
    expect(rows).to_have_count(2)
    checkout = rows.filter(has_text="checkout")
    expect(checkout).to_contain_text("Boom")
    expect(checkout).to_contain_text("Order.Invalid")
    expect(checkout.locator("td.num").first).to_have_text("3")
    expect(checkout).to_contain_text("new")
    # Three of its three runs in the window failed.
    expect(checkout.locator("td.num").nth(1)).to_have_text("100 %")
    expect(checkout.locator("svg.failure-spark rect")).to_have_count(1)
    pipeline = rows.filter(has_text="order-pipeline")
    expect(pipeline).to_contain_text("Rejected")
    expect(pipeline).to_contain_text("Order.Empty")
    expect(pipeline.locator("td.num").nth(1)).to_have_text("50 %")
    # Times in the page's zone.
    expect(checkout).to_contain_text("CET")
    screenshot(page, "failures-grouped")

    checkout.locator("td.num a").first.click()

    expect(page).to_have_url(re.compile(r"/executions/\?.*failed_state=Boom.*tz=Europe%2FBerlin"))
    listed = page.locator("#list-results table.executions tbody tr")
    expect(listed).to_have_count(3)
    for i in range(3):
        expect(page.locator("#list-results")).to_contain_text(f"checkout-{i}")
    expect(page.locator("#list-results")).not_to_contain_text("empty-order")
    active = page.locator("ul.active-filters")
    expect(active).to_contain_text("Failed in state: Boom")
    expect(active).to_contain_text("Error: Order.Invalid")
    screenshot(page, "failures-group-in-the-list")

    # The keyboard's row navigation reaches the groups too (data-row-link).
    page.go_back()
    expect(page.locator("table.failure-groups tbody tr[data-row-link]")).to_have_count(2)
