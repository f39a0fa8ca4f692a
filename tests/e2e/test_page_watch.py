"""The watch every journey runs under (tests/e2e/conftest.py, PageProblems):
a static file the page cannot load is a problem, one the browser gave up on
because the test had already gone to the next page is not."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Request, Route

from tests.e2e.conftest import PageProblems

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STYLESHEET = "**/static/sfnui/app.css*"


def watched(context: BrowserContext) -> tuple[Any, PageProblems, list[Request]]:
    page = context.new_page()
    watcher = PageProblems()
    watcher.watch(page)
    failed: list[Request] = []
    page.on("requestfailed", lambda request: failed.append(request))
    return page, watcher, failed


def test_a_stylesheet_still_loading_when_the_page_moves_on_is_no_problem(
    context: BrowserContext,
) -> None:
    page, watcher, failed = watched(context)
    held: list[Route] = []
    # The first page's stylesheet never answers; the next page's does.
    page.route(STYLESHEET, lambda route: held.append(route), times=1)
    page.goto("/accounts/login/", wait_until="commit")
    page.wait_for_function("() => document.querySelector('link[href*=\"app.css\"]') !== null")
    page.goto("/accounts/login/?next=/failures/")
    page.wait_for_load_state("load")

    assert held, "the first page's stylesheet was not held"
    assert [r.url for r in failed if "app.css" in r.url], "the held stylesheet was not cancelled"
    assert "ERR_ABORTED" in (failed[0].failure or "")
    assert watcher.problems == []
    page.close()


def test_a_stylesheet_that_does_not_load_is_a_problem(context: BrowserContext) -> None:
    page, watcher, _ = watched(context)
    page.route(STYLESHEET, lambda route: route.abort("connectionrefused"), times=1)
    page.goto("/accounts/login/")

    assert len(watcher.problems) == 1
    assert "app.css did not load: net::ERR_CONNECTION_REFUSED" in watcher.problems[0]
    page.close()


def test_a_stylesheet_cancelled_without_leaving_the_page_is_a_problem(
    context: BrowserContext,
) -> None:
    page, watcher, _ = watched(context)
    page.route(STYLESHEET, lambda route: route.abort("aborted"), times=1)
    page.goto("/accounts/login/")

    assert len(watcher.problems) == 1
    assert "app.css did not load: net::ERR_ABORTED" in watcher.problems[0]
    page.close()
