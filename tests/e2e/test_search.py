"""Mid-incident: "what happened to order ord-62603?" Find the execution by an
id inside its input, from the list's search box, across state machines; see
where it matched; open it. A search the list cannot read says why.

One fake AWS and one worker for the module: the worker syncs the inputs, and
the database indexes them as it stores them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from executions.models import Execution
from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import FAIL, PASS, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def order(number: int, email: str) -> dict[str, Any]:
    return {
        "orderId": f"ord-{number}",
        "customer": {"email": email, "tier": "gold"},
        "items": [{"sku": "SKU-1040", "quantity": 2}],
    }


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("order-intake", PASS)
    aws_world.make_state_machine("payment-capture", FAIL)
    aws_world.start("order-intake", "intake-a", order(62601, "ana@example.com"))
    aws_world.start("order-intake", "intake-b", order(62603, "ben@example.com"))
    aws_world.start("payment-capture", "capture-b", order(62603, "ben@example.com"))
    aws_world.start("payment-capture", "capture-c", order(62604, "chloe@example.com"))
    wait_until_finished(aws_world.sfn, list(aws_world.executions.values()))
    return aws_world


def test_an_order_id_typed_in_the_search_finds_its_executions_in_every_state_machine(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    rows: list[Execution] = synced(sync_worker, *world.executions.values())
    assert all(ex.input for ex in rows)

    signed_in(page, user, "/executions/?tz=Europe/Berlin")
    box = page.get_by_role("searchbox", name="Search", exact=True)
    box.fill("ord-62603")
    box.press("Enter")

    expect(page).to_have_url(
        re.compile(r"q=ord-62603.*tz=Europe%2FBerlin|tz=Europe%2FBerlin.*q=ord-62603")
    )
    found = page.locator("table.executions tbody tr")
    expect(found).to_have_count(2)
    expect(found.filter(has_text="intake-b")).to_have_count(1)
    expect(found.filter(has_text="capture-b")).to_have_count(1)
    # Where it matched, marked.
    snippet = found.first.locator(".snippet")
    expect(snippet).to_contain_text("input")
    expect(snippet.locator("mark")).to_have_text("ord-62603")
    screenshot(page, "search-an-order-id-inside-the-inputs")
    page.get_by_text("Search syntax").click()
    expect(page.locator("#search-help")).to_contain_text("error:Payment.*")
    screenshot(page, "search-syntax-beside-the-box")
    page.get_by_text("Search syntax").click()

    # Narrowed: only the failed one, by its error.
    box.fill("ord-62603 -error:nothing input:ben@example.com")
    box.press("Enter")
    expect(found).to_have_count(2)
    page.get_by_role("navigation", name="Executions per status").get_by_role(
        "link", name=re.compile("^Failed")
    ).click()
    expect(found).to_have_count(1)
    expect(found.first).to_contain_text("capture-b")

    # Open it: the input holds the order.
    found.first.get_by_role("link", name="capture-b").click()
    expect(page).to_have_url(re.compile(r"/executions/arn:aws:states:.*capture-b/"))
    expect(page.locator("body")).to_contain_text("ord-62603")

    # A search it cannot read says why, and keeps the box to fix it.
    page.goto("/executions/?q=input%3A%22ord-62603")
    expect(page.locator("body")).to_contain_text("is not closed")
    expect(page.get_by_role("searchbox", name="Search", exact=True)).to_have_value(
        'input:"ord-62603'
    )
    screenshot(page, "search-that-cannot-be-read")
