"""Every page and export in Chromium, with hostile content in every field
(tests/support/hostile.py), under the real Content-Security-Policy:

- no script of the content runs: no dialog, no `window.__xss`, no element or
  attribute it would create;
- the CSP is never violated (no inline script, style or eval is needed) and
  htmx still works under it (a running execution's panel refreshes);
- 256 KiB payloads and a 32,768-character cause do not break the layout:
  nothing is wider than the window, except inside its own scroll box.

The rows are made directly in the database (no worker needed): the pages are
what is under test here; tests/e2e/test_hostile_content.py goes through AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Dialog, Page, expect

from tests.e2e.conftest import signed_in
from tests.support.hostile import (
    CAUSE_MAX,
    IMG,
    LINK,
    MIXED,
    SCRIPT,
    HostileWorld,
    make_hostile_world,
)
from tests.web.test_hostile_content import html_pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded from before the first script of every page: a payload that ran,
# a CSP violation, htmx swaps and refusals to eval.
WATCH = """
window.__cspViolations = [];
window.__swaps = 0;
window.__evalRefused = 0;
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
document.addEventListener("htmx:afterSwap", () => { window.__swaps += 1; });
document.addEventListener("htmx:evalDisallowedError", () => { window.__evalRefused += 1; });
"""

# Elements wider than the window that no ancestor clips or scrolls.
OVERFLOW = """
() => {
  const width = document.documentElement.clientWidth;
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const style = getComputedStyle(p);
      const scrolls = style.overflowX !== "visible";
      if (scrolls && p.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const offenders = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 1 || clipped(el)) continue;
    const name = `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`;
    offenders.push(`${name} right=${Math.round(box.right)}`);
    if (offenders.length >= 5) break;
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, offenders};
}
"""


@pytest.fixture
def world(operator: Any) -> HostileWorld:
    return make_hostile_world()


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    opened: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        opened.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.add_init_script(WATCH)
    return opened


def assert_inert(page: Page, dialogs: list[str], where: str) -> None:
    assert dialogs == [], where
    assert page.evaluate("typeof window.__xss") == "undefined", where
    assert (
        page.locator(
            'img[src="x"], svg[onload], [onerror], [onfocus], a[href^="javascript:"], '
            'a[*|href^="javascript:"]'
        ).count()
        == 0
    ), where
    assert (
        page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__xss')).length")
        == 0
    ), where
    assert page.evaluate("window.__cspViolations") == [], where
    assert page.evaluate("window.__evalRefused") == 0, where


def overflow(page: Page, where: str) -> list[str]:
    layout = page.evaluate(OVERFLOW)
    if layout["scrollWidth"] <= layout["width"] + 2 and not layout["offenders"]:
        return []
    return [f"{where}: {layout}"]


def assert_fits(page: Page, where: str) -> None:
    assert overflow(page, where) == []


def open_every_detail(page: Page) -> None:
    """Unfold what is folded, so that its layout is checked too."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_load_state("networkidle")


def test_every_page_is_inert_and_keeps_its_layout(
    page: Page,
    dialogs: list[str],
    operator: Any,
    world: HostileWorld,
    screenshot: Callable[..., Any],
) -> None:
    signed_in(page, operator)
    too_wide: list[str] = []
    for name, url in html_pages(world).items():
        if name.startswith("detail-whole"):
            continue  # a fragment htmx loads into the detail page (unfolded below)
        response = page.goto(url)
        assert response is not None, (name, url)
        assert response.status in (200, 400, 404), (name, url)
        assert_inert(page, dialogs, name)
        too_wide += overflow(page, name)
        open_every_detail(page)
        assert_inert(page, dialogs, f"{name}, unfolded")
        too_wide += overflow(page, f"{name}, unfolded")
        if name in ("detail-failed", "history", "audit"):
            screenshot(page, f"hostile-{name}")
    assert too_wide == [], "\n".join(too_wide)


def test_the_longest_cause_and_payloads_are_readable_and_wrapped(
    page: Page, dialogs: list[str], operator: Any, world: HostileWorld
) -> None:
    signed_in(page, operator, world_url := html_pages(world)["detail-failed"])
    assert world_url
    open_every_detail(page)
    text = page.locator("main").inner_text()
    assert SCRIPT in text
    assert IMG.strip() in text
    assert "C" * 200 in text.replace("\n", "")
    assert len(world.failed.cause or "") == CAUSE_MAX
    assert_fits(page, "detail, unfolded")
    assert_inert(page, dialogs, "detail, unfolded")


def test_the_exports_are_shown_as_text(
    page: Page, dialogs: list[str], operator: Any, world: HostileWorld
) -> None:
    from django.urls import reverse

    signed_in(page, operator)
    for name in ("execution_history_text", "execution_history_json"):
        response = page.goto(reverse(name, args=[world.failed.arn]))
        assert response is not None
        assert response.status == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        # Chromium shows it as text: the payload is the document's text, not markup.
        shown = page.locator("body").inner_text()
        if name.endswith("json"):
            shown = json.dumps(json.loads(shown), ensure_ascii=False)  # "<" is sent as \u003c
        assert SCRIPT in shown
        assert page.locator("body script, body img, body svg").count() == 0
        assert_inert(page, dialogs, name)


def test_htmx_works_under_the_csp(
    page: Page, dialogs: list[str], operator: Any, world: HostileWorld
) -> None:
    """A running execution's live panel refreshes itself (hx-trigger every
    3 s), with no inline script, no eval and no indicator <style>."""
    from django.urls import reverse

    signed_in(page, operator, reverse("execution_detail", args=[world.running.arn]))
    csp = page.evaluate(
        "() => fetch(location.href).then(r => r.headers.get('content-security-policy'))"
    )
    assert "script-src 'self'" in csp
    assert "unsafe" not in csp
    assert page.evaluate("htmx.config.allowEval") is False
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    # (wait_for_function would eval its predicate, which this very CSP forbids.)
    deadline = time.monotonic() + 15
    while page.evaluate("window.__swaps") < 1:
        assert time.monotonic() < deadline, "htmx never refreshed the live panel"
        page.wait_for_timeout(250)
    assert page.locator("style").count() == 0
    assert_inert(page, dialogs, "after a refresh")


def test_a_hostile_reason_typed_into_the_stop_form_stays_text(
    page: Page, dialogs: list[str], operator: Any, world: HostileWorld
) -> None:
    from django.urls import reverse

    signed_in(page, operator, reverse("execution_stop", args=[world.running.arn]))
    page.get_by_label("Error").fill(SCRIPT)
    page.get_by_label("Cause").fill(MIXED)
    page.get_by_role("button", name="Stop").last.click()
    page.wait_for_load_state("load")
    # AWS (the fake) does not know this execution: a recorded failure, said on the page.
    expect(page.locator(".messages")).to_contain_text("was not stopped")
    assert_inert(page, dialogs, "after the stop")
    page.goto(reverse("audit_log"))
    expect(page.locator("main")).to_contain_text(LINK)
    assert_inert(page, dialogs, "audit")
    assert_fits(page, "audit")


def test_the_admin_is_inert_and_within_the_csp(
    page: Page, dialogs: list[str], world: HostileWorld, django_user_model: Any
) -> None:
    from django.urls import reverse

    admin = django_user_model.objects.create_superuser("root", password="root-pass-123")
    admin.user_permissions.add(Permission.objects.get(codename="stop_execution"))
    page.goto(reverse("admin:login"))
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#site-name")).to_be_visible()
    for url in (
        reverse("admin:executions_execution_changelist"),
        reverse("admin:executions_execution_change", args=[world.failed.pk]),
        reverse("admin:executions_stoprequest_changelist"),
        reverse("admin:executions_historyevent_changelist")
        + f"?execution__id__exact={world.failed.pk}",
    ):
        page.goto(url)
        assert_inert(page, dialogs, url)
