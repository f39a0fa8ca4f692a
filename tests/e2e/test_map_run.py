"""A runaway Distributed Map run, throttled from its page: from the parent
execution to its Map Run, then UpdateMapRun with a lower maxConcurrency.

One fake AWS and one worker for the module: the worker syncs the parent, its
Map Run (found in the parent's history) and the children.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from executions.models import ActionRequest, MapRun
from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import LONG_WAIT, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("catalog-reindex", LONG_WAIT)
    return aws_world


def test_a_runaway_map_run_is_throttled_from_its_page(
    page: Page,
    operator: Any,
    world: AwsWorld,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
) -> None:
    operator.user_permissions.add(Permission.objects.get(codename="update_map_run"))
    parent = world.start("catalog-reindex", "reindex-eu")
    fake = world.server.app.map_runs.create(
        parent,
        [{"seconds": 900, "fail": False} for _ in range(40)],
        label="ReindexProducts",
        max_concurrency=20,
        tolerated_failure_percentage=10,
    )
    try:
        synced(sync_worker, parent)
        # The worker found the Map Run in the history and listed its children.
        wait_for(
            lambda: MapRun.objects.filter(arn=fake.arn, children_listed_at__isnull=False).first(),
            timeout=60,
        )
        signed_in(page, operator, f"/executions/{parent}/")
        page.locator("#map-runs").get_by_role("link").first.click()
        expect(page).to_have_url(re.compile(r"/map-runs/"))
        expect(page.get_by_role("heading", level=1)).to_contain_text("ReindexProducts")
        expect(page.locator("#max-concurrency")).to_contain_text("20")
        expect(page.locator('[data-count="running"]')).to_have_text("20")
        expect(page.locator("table.children tbody tr")).to_have_count(20)

        page.get_by_role("link", name="Change concurrency or tolerance").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Change this Map Run's limits?")
        page.get_by_label("Max concurrency").fill("2")
        page.get_by_role("button", name="Update the Map Run").click()

        expect(page).to_have_url(re.compile(r"/map-runs/[^?]*/$"))
        expect(page.locator("ul.messages")).to_contain_text("maxConcurrency 2")
        expect(page.locator("#max-concurrency")).to_contain_text("2")
        expect(page.locator("#max-concurrency")).not_to_contain_text("20")
        assert world.sfn.describe_map_run(mapRunArn=fake.arn)["maxConcurrency"] == 2
        row = ActionRequest.objects.get(kind=ActionRequest.Kind.UPDATE_MAP_RUN)
        assert row.outcome == ActionRequest.Outcome.DONE
        assert row.username == operator.username
        assert row.parameters["old"]["maxConcurrency"] == 20
        screenshot(page, "map-run-throttled")
    finally:
        if world.status(parent) == "RUNNING":
            world.sfn.stop_execution(executionArn=parent, error="test.Cleanup", cause="end")
