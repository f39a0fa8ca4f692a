"""Watch: someone watches a running execution; when it finishes, the incident
channel's webhook (a real HTTP server on loopback) gets its summary, once, and
the page says so.

The module's worker is started with SFNUI_WATCH_WEBHOOK_URL, since it is the
worker that posts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import wait_for
from tests.support.webhook import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

BASE = "https://sfnui.example.com"
# Waits as long as its input says.
HOLD = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Wait", "SecondsPath": "$.seconds", "End": True}},
}


@pytest.fixture(scope="module")
def webhook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def sync_worker(
    aws_world: AwsWorld,
    webhook: Receiver,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """The conftest's worker, with the webhook configured."""
    worker = Worker(
        aws_world.server.url,
        tmp_path_factory.mktemp("e2e-worker"),
        SFNUI_WATCH_WEBHOOK_URL=webhook.url,
        SFNUI_BASE_URL=BASE,
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        print(f"--- worker log ({worker.log}) ---\n{worker.tail()}")
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def _webhook_on(settings: Any, webhook: Receiver) -> None:
    # The live server (this process) shows the Watch button only when it is set.
    settings.SFNUI_WATCH_WEBHOOK_URL = webhook.url
    settings.SFNUI_BASE_URL = BASE


def test_a_watched_execution_is_posted_to_the_webhook_when_it_finishes(
    page: Page,
    user: Any,
    aws_world: AwsWorld,
    webhook: Receiver,
    sync_worker: Worker,
    screenshot: Callable[..., Any],
    screenshots_dir: Path,
) -> None:
    aws_world.make_state_machine("report-render", HOLD)
    arn = aws_world.start("report-render", "monthly-report-11", {"seconds": 20})
    synced(sync_worker, arn)
    signed_in(page, user, f"/executions/{arn}/")
    panel = page.locator("#watch")
    expect(panel).to_contain_text("Nobody watches it yet")

    panel.get_by_role("button", name="Watch").click()

    expect(panel).to_contain_text("Watching monthly-report-11")
    expect(panel).to_contain_text("Watched by viewer (you)")
    expect(panel.get_by_role("button", name="Stop watching")).to_be_visible()
    # While the page refreshes itself: a screenshot that does not hide the
    # caret, since hiding it leaves style="" on inputs that htmx then copies
    # into what it swaps in (which the CSP refuses).
    page.screenshot(path=str(screenshots_dir / "watch.png"), full_page=True, caret="initial")

    # It finishes by itself; the page follows, and the channel hears of it.
    expect(page.locator(".page-head h1 .status")).to_have_text("Succeeded", timeout=60_000)
    wait_for(lambda: webhook.bodies, timeout=60)
    # The panel follows until the post is settled.
    expect(page.locator("#watch")).to_contain_text("posted to the incident channel")
    expect(page.locator("#watch")).to_contain_text("for viewer")
    (body,) = webhook.bodies
    assert body["text"].startswith("Watched execution finished (watched by viewer)\n**SUCCEEDED**")
    assert f"{BASE}/executions/{arn}/" in body["text"]
    assert body["blocks"][0]["text"]["text"].startswith(
        "Watched execution finished (watched by viewer)\n*SUCCEEDED*"
    )
    screenshot(page, "watch-posted")
    assert len(webhook.bodies) == 1, json.dumps(webhook.bodies)[:2000]
