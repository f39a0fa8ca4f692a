"""An alert rule written on the page fires: an on-call engineer writes "an
execution of nightly-etl running longer than 10 s", the worker's tick checks
it against the cache, the page shows it firing, and the webhook gets one
post with the execution's summary.

One fake AWS, one webhook and one worker (with beat) for the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Page, expect

from tests.e2e.conftest import AwsWorld, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import LONG_WAIT, wait_for
from tests.support.webhook import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def hook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def alert_worker(
    aws_world: AwsWorld,
    hook: Receiver,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """The module's worker, posting alerts to `hook`."""
    from django.core.management import call_command

    worker = Worker(
        aws_world.server.url,
        tmp_path_factory.mktemp("e2e-alerts-worker"),
        SFNUI_ALERTS_WEBHOOK_URL=hook.url,
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        print(f"--- worker log ({worker.log}) ---\n{worker.tail()}")
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def test_a_rule_written_on_the_page_fires_and_is_posted_once(
    page: Page,
    user: Any,
    aws_world: AwsWorld,
    alert_worker: Worker,
    hook: Receiver,
    screenshot: Callable[..., Any],
    settings: Any,
) -> None:
    settings.SFNUI_ALERTS_WEBHOOK_URL = hook.url  # the live server's, for its page
    user.user_permissions.add(Permission.objects.get(codename="change_alertrule"))
    aws_world.make_state_machine("nightly-etl", LONG_WAIT)
    arn = aws_world.start("nightly-etl", "etl-1")
    synced(alert_worker, arn)

    signed_in(page, user, "/alerts/?tz=Europe/Berlin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    page.get_by_role("link", name="New rule").click()
    page.locator("input[name=name]").fill("etl stuck")
    page.get_by_label("An execution running longer than").check()
    page.locator("input[name=state_machine]").fill("nightly-etl")
    page.locator("input[name=duration]").fill("10s")
    page.get_by_role("button", name="Save rule").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("etl stuck")
    assert "tz=Europe%2FBerlin" in page.url
    expect(page.locator(".facts")).to_contain_text(
        "An execution of nightly-etl running longer than 10 s"
    )

    # The worker's tick fires it, and a worker posts it: reload until the
    # page says both (the page does not refresh itself).
    firings = page.locator("table.alert-firings")

    def shown(text: str) -> bool:
        alert_worker.assert_alive()
        page.reload()
        return firings.filter(has_text=text).count() > 0

    wait_for(lambda: shown("etl-1"), timeout=60, interval=1)
    expect(firings).to_contain_text("nightly-etl · etl-1")
    wait_for(lambda: shown("posted"), timeout=60, interval=1)
    screenshot(page, "alert-rule-firing")

    page.get_by_role("link", name="Alerts", exact=True).first.click()
    expect(page.locator("table.alert-rules")).to_contain_text("firing (1)")
    (body,) = hook.bodies
    assert body["text"].startswith("**FIRING** · alert etl stuck")
    assert "**RUNNING** · nightly-etl · `etl-1`" in body["text"]
