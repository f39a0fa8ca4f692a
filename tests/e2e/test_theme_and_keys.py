"""Easy on the eyes and the hands: the keyboard alone takes an on-call engineer
from the list to a history, and every main page is drawn in the light and the
dark theme (screenshots of both: theme-<light|dark>-<page>.png).

One fake AWS and one worker for the module: an order pipeline that succeeds
and one that fails, a payment that fails, and one execution held running.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from executions.models import Execution
from tests.e2e.conftest import AwsWorld, path_of, signed_in, synced
from tests.e2e.worker import Worker
from tests.support.helpers import ORDER_PIPELINE, PAYMENT, wait_until_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# The page's background in each theme (app.css --bg).
BACKGROUND = {"light": "rgb(246, 248, 250)", "dark": "rgb(13, 17, 23)"}


@pytest.fixture(scope="module")
def world(aws_world: AwsWorld) -> AwsWorld:
    aws_world.make_state_machine("order-pipeline", ORDER_PIPELINE)
    aws_world.make_state_machine("payment-capture", PAYMENT)
    aws_world.start("order-pipeline", "o-1", {"items": [1, 2, 3]})
    aws_world.start("order-pipeline", "o-empty", {"items": []})
    aws_world.start("payment-capture", "pay-1", {"payment": "legacy-wallet"})
    wait_until_finished(aws_world.sfn, list(aws_world.executions.values()))
    gate = aws_world.make_gate("approvals")
    aws_world.start(gate.arn, "waiting-1")
    return aws_world


@pytest.fixture
def cache(world: AwsWorld, sync_worker: Worker) -> dict[str, Execution]:
    rows = synced(sync_worker, *world.executions.values())
    return {ex.name: ex for ex in rows}


def press(page: Page, *keys: str) -> None:
    # keys.js is a deferred script: a page whose URL has changed may not have
    # run it yet (a busy machine once pressed "g h" on the detail page too soon).
    page.wait_for_load_state("load")
    for key in keys:
        page.keyboard.press(key)


def test_the_keyboard_alone_goes_from_the_list_to_a_history(
    page: Page, user: Any, cache: dict[str, Execution], screenshot: Callable[..., Any]
) -> None:
    signed_in(page, user)
    rows = page.locator("table.executions tbody tr")
    expect(rows).to_have_count(len(cache))

    # "?" lists the keys; Esc closes the list.
    press(page, "?")
    help_dialog = page.locator("dialog#keys-help")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Go to the history of this execution")
    screenshot(page, "keys-help")
    press(page, "Escape")
    expect(help_dialog).to_be_hidden()

    # "/" focuses the search; letters typed there are text, not keys.
    press(page, "/")
    search = page.get_by_role("searchbox", name="Search executions")
    expect(search).to_be_focused()
    page.keyboard.type("o-jk")
    expect(search).to_have_value("o-jk")
    expect(page.locator("tr.kb-current")).to_have_count(0)
    press(page, "Control+a")
    page.keyboard.type("o-")
    press(page, "Enter")
    expect(page).to_have_url(re.compile(r"/executions/\?q=o-"))
    expect(rows).to_have_count(2)
    names = rows.locator("td.name a").all_inner_texts()

    # j/k move a visible selection; Enter opens the selected row.
    press(page, "j")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bkb-current\b"))
    expect(rows.nth(0)).to_be_focused()
    press(page, "j", "j")  # stops at the last row
    expect(rows.nth(1)).to_have_class(re.compile(r"\bkb-current\b"))
    expect(page.locator("tr.kb-current")).to_have_count(1)
    press(page, "k")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bkb-current\b"))
    screenshot(page, "keys-row-selected")
    press(page, "Enter")

    first = cache[names[0]]
    expect(page).to_have_url(re.compile(re.escape(f"/executions/{first.arn}/")))
    expect(page.get_by_role("heading", level=1)).to_contain_text(first.name)

    # "g h": its history.
    press(page, "g", "h")
    expect(page).to_have_url(re.compile(re.escape(f"/executions/{first.arn}/history/")))
    expect(page.locator("table.events tbody tr").first).to_be_visible()
    # Leaving before the page's stylesheets finish would abort their loading.
    page.wait_for_load_state("load")

    # Back on the list, "g h" on a selected row goes straight to its history.
    page.go_back()
    page.go_back()
    expect(rows).to_have_count(2)
    press(page, "j", "j", "g", "h")
    second = cache[names[1]]
    expect(page).to_have_url(re.compile(re.escape(f"/executions/{second.arn}/history/")))
    page.wait_for_load_state("load")

    # Any table whose rows carry data-row-link takes the same keys: the
    # failures page opens a group's executions.
    page.goto("/failures/")
    groups = page.locator("tr[data-row-link]")
    expect(groups.first).to_be_visible()
    link = groups.first.get_attribute("data-row-link")
    assert link
    press(page, "j", "Enter")
    expect(page).to_have_url(re.compile(re.escape(link.split("?")[0])))
    assert path_of(page) == link


def _theme_tour(
    page: Page, theme: str, cache: dict[str, Execution], shoot: Callable[..., Any]
) -> None:
    failed = cache["o-empty"]
    pages = {
        "list": "/executions/",
        "detail": f"/executions/{failed.arn}/",
        "history": f"/executions/{failed.arn}/history/",
        "state-machine": f"/state-machines/{failed.state_machine.arn}/",
        "running": f"/executions/{cache['waiting-1'].arn}/",
        "failures": "/failures/",
        "alerts": "/alerts/",
    }
    for name, path in pages.items():
        page.goto(path)
        expect(page.locator("html")).to_have_attribute("data-theme", theme)
        expect(page.locator("body")).to_have_css("background-color", BACKGROUND[theme])
        # Every status badge says its status in words, not by colour alone.
        for badge in page.locator(".status").all():
            assert badge.inner_text().strip(), f"a status badge with no text on {path}"
        if name == "detail":
            expect(page.locator("#graph svg.sfn-graph.painted")).to_be_visible()
        if name == "history":
            expect(page.locator(".timeline svg, .tl-track").first).to_be_visible()
        shoot(page, f"theme-{theme}-{name}")


def test_every_main_page_in_the_light_and_the_dark_theme(
    page: Page, user: Any, cache: dict[str, Execution], screenshot: Callable[..., Any]
) -> None:
    # The system says dark: a new user follows it.
    page.emulate_media(color_scheme="dark")
    signed_in(page, user)
    expect(page.locator("html")).to_have_attribute("data-theme", "system")
    expect(page.locator("body")).to_have_css("background-color", BACKGROUND["dark"])

    # Light, chosen in the header, beats the system's dark at once (htmx, no reload).
    switch = page.locator("form.theme-switch")
    switch.get_by_role("button", name="Light").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    expect(page.locator("body")).to_have_css("background-color", BACKGROUND["light"])
    expect(switch.get_by_role("button", name="Light")).to_have_attribute("aria-pressed", "true")
    _theme_tour(page, "light", cache, screenshot)

    page.emulate_media(color_scheme="light")
    page.goto("/executions/")
    page.locator("form.theme-switch").get_by_role("button", name="Dark").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    _theme_tour(page, "dark", cache, screenshot)

    # Kept for this user: a reload draws it from the server.
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
