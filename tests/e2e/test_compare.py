"""A comparison: open a failed run, see its path on the graph, compare it with
a run that succeeded, and read where they parted.

One fake AWS and one worker for the module: the worker syncs the runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import AwsWorld, path_of, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import ORDER_PIPELINE, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("order-pipeline", ORDER_PIPELINE)
    aws_world.start("order-pipeline", "empty-order", {"items": []})
    aws_world.start("order-pipeline", "good-order", {"items": [1, 2, 3]})
    wait_until_finished(aws_world.sfn, list(aws_world.executions.values()))
    return aws_world


def test_a_failed_run_compared_with_a_succeeded_one_shows_where_they_part(
    page: Page,
    user: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    failed_arn, good_arn = world.executions["empty-order"], world.executions["good-order"]
    synced(sync_worker, failed_arn, good_arn)
    assert world.status(failed_arn) == "FAILED"

    signed_in(page, user, f"/executions/{failed_arn}/?tz=Europe/Berlin")
    # The graph card loads after the page, painted with this run.
    graph = page.locator("#graph svg.sfn-graph.painted")
    expect(graph).to_be_visible()
    expect(page.locator("#graph")).to_contain_text("failed in Rejected")
    expect(graph.locator("g.node.o-failed title")).to_contain_text("Rejected (Fail)")
    expect(graph.locator("g.node.unreached title").first).to_be_attached()
    screenshot(page, "graph-of-a-failed-run")

    page.locator("#compare-with").click()
    expect(page).to_have_url(re.compile(r"/compare/\?a="))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Compare empty-order with")
    row = page.locator("#candidates tbody tr", has_text="good-order")
    row.get_by_role("link", name="Compare").click()

    expect(page).to_have_url(re.compile(r"/compare/\?a=.*&b=.*tz=Europe%2FBerlin"))
    banner = page.locator("#divergence")
    expect(banner).to_contain_text("First divergence:")
    expect(banner).to_contain_text(
        "after HasItems (step 2), A went to Rejected and B went to EachItem"
    )
    expect(page.locator("#graph-a svg")).to_be_visible()
    expect(page.locator("#graph-b svg")).to_be_visible()
    expect(page.locator("#state-times")).to_contain_text("Reserve")
    expect(page.locator("#input-diff")).to_contain_text("$.items[0]")
    screenshot(page, "compare-two-runs")

    # A state links to its first event in the history, zone kept.
    banner.get_by_role("link", name="Rejected").click()
    expect(page).to_have_url(re.compile(r"/history/\?event=\d+&tz=Europe%2FBerlin#event-\d+"))
    assert "/history/" in path_of(page)
