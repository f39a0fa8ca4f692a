"""Hostile content (tests/support/hostile.py) is text on every page and in every
export: no payload comes out as markup, the exports are served as text or
JSON that a browser will not sniff into HTML, and every page still answers
with 256 KiB payloads and a 32,768-character cause.

What Chromium does with the same pages is in tests/e2e/test_hostile_pages.py.
"""

from __future__ import annotations

import html
import json
from typing import Any, cast
from urllib.parse import quote, urlencode

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from tests.support.hostile import (
    CAUSE_MAX,
    IMG,
    KIB_256,
    LINK,
    MIXED,
    SCRIPT,
    HostileWorld,
    make_hostile_world,
    markup_from_payloads,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> HostileWorld:
    return make_hostile_world()


def html_pages(world: HostileWorld) -> dict[str, str]:
    """Every HTML page that shows synced or typed data, by name."""
    failed, running, child = world.failed, world.running, world.child
    history = reverse("execution_history", args=[failed.arn])
    return {
        "list": reverse("execution_list"),
        "list-search": reverse("execution_list") + "?" + urlencode({"q": "xss"}),
        "list-bad-search": reverse("execution_list") + "?" + urlencode({"started_after": SCRIPT}),
        "list-state-machine": reverse("execution_list")
        + "?"
        + urlencode({"state_machine": world.state_machine.arn}),
        "detail-failed": reverse("execution_detail", args=[failed.arn]),
        "detail-running": reverse("execution_detail", args=[running.arn]),
        "detail-child": reverse("execution_detail", args=[child.arn]),
        "detail-whole-input": reverse("execution_detail", args=[failed.arn]) + "?whole=input",
        "detail-whole-output": reverse("execution_detail", args=[failed.arn]) + "?whole=output",
        "history": history,
        "history-running": reverse("execution_history", args=[running.arn]),
        "history-failures": history + "?failures=1",
        "history-event": history + "?detail=10",
        "history-bad-type": history + "?" + urlencode({"type": SCRIPT}),
        "stop-running": reverse("execution_stop", args=[running.arn]),
        "stop-finished": reverse("execution_stop", args=[failed.arn]),
        "state-machines": reverse("state_machine_list"),
        "state-machine": reverse("state_machine_detail", args=[world.state_machine.arn]),
        "sync": reverse("sync_health"),
        "audit": reverse("audit_log"),
        "audit-filtered": reverse("audit_log") + "?" + urlencode({"user": f"mallory{SCRIPT}"}),
        "audit-bad-filter": reverse("audit_log") + "?" + urlencode({"requested_after": IMG}),
        "not-an-arn": "/executions/" + quote(f"arn:aws:states:{SCRIPT}", safe=":") + "/",
        "bad-zone": reverse("execution_list") + "?" + urlencode({"tz": SCRIPT}),
    }


def assert_no_markup_from_payloads(page: str, where: str) -> None:
    assert markup_from_payloads(page) == [], where
    # The raw payloads, character for character, are nowhere in the HTML.
    for raw in (SCRIPT, IMG, "<svg onload"):
        assert raw not in page, f"{where}: {raw!r} is in the page unescaped"


def test_every_page_shows_hostile_content_as_text(
    operator_client: Client, world: HostileWorld
) -> None:
    for name, url in html_pages(world).items():
        response = operator_client.get(url)
        assert response.status_code in (200, 400, 404), (name, response.status_code)
        assert response["Content-Type"].startswith("text/html"), name
        page = response.content.decode()
        assert_no_markup_from_payloads(page, name)
    # And the payloads are there, escaped, where a person needs to read them.
    detail = operator_client.get(html_pages(world)["detail-failed"]).content.decode()
    assert html.escape(SCRIPT) in detail
    assert "&lt;img src=x onerror=" in detail


def test_hostile_fields_reach_the_page_escaped(
    operator_client: Client, world: HostileWorld
) -> None:
    """Not just absent as markup: present as text (an empty page would pass the test above)."""
    pages = html_pages(world)
    expected = {
        "list": ["xss-failed&quot;&gt;&lt;img", html.escape(SCRIPT)],
        "history": [html.escape(SCRIPT), "&lt;svg onload="],
        "stop-running": [html.escape(SCRIPT), "mallory&lt;script&gt;"],
        "state-machine": ["&lt;script&gt;window.__xss"],
        "sync": ["AccessDenied: &lt;script&gt;"],
        "audit": ["mallory&lt;script&gt;"],
    }
    for name, snippets in expected.items():
        page = operator_client.get(pages[name]).content.decode()
        for snippet in snippets:
            assert snippet in page, (name, snippet)


def test_huge_payloads_and_the_longest_cause_are_served_whole_on_demand(
    operator_client: Client, world: HostileWorld
) -> None:
    failed = world.failed
    url = reverse("execution_detail", args=[failed.arn])
    page = operator_client.get(url)
    assert page.status_code == 200
    # The page folds the 256 KiB payloads instead of inlining them.
    assert len(page.content) < KIB_256, len(page.content)
    raw = operator_client.get(url + "?raw=input")
    assert raw.status_code == 200
    assert raw["Content-Type"] == "text/plain; charset=utf-8"
    assert raw["X-Content-Type-Options"] == "nosniff"
    assert raw["Content-Disposition"].startswith("attachment;")
    assert raw.content.decode() == failed.input
    assert len(raw.content) == KIB_256
    whole = operator_client.get(url + "?whole=output")
    assert whole.status_code == 200
    assert_no_markup_from_payloads(whole.content.decode(), "whole output")
    assert failed.cause is not None
    assert len(failed.cause) == CAUSE_MAX
    assert "C" * 1000 in page.content.decode()  # the cause is shown (folded), not dropped


def test_the_exports_are_text_and_json_a_browser_will_not_sniff(
    operator_client: Client, world: HostileWorld
) -> None:
    failed = world.failed
    text = operator_client.get(reverse("execution_history_text", args=[failed.arn]))
    assert text["Content-Type"] == "text/plain; charset=utf-8"
    assert text["X-Content-Type-Options"] == "nosniff"
    body = cast(StreamingHttpResponse, text).getvalue().decode()
    # Text keeps the payloads verbatim: it is never rendered as HTML.
    assert SCRIPT in body
    assert LINK in body

    exported = operator_client.get(reverse("execution_history_json", args=[failed.arn]))
    assert exported["Content-Type"] == "application/json"
    assert exported["X-Content-Type-Options"] == "nosniff"
    events = json.loads(cast(StreamingHttpResponse, exported).getvalue())["events"]
    failed_event = next(e for e in events if e["type"] == "ExecutionFailed")
    assert failed_event["executionFailedEventDetails"]["error"] == SCRIPT
    assert len(failed_event["executionFailedEventDetails"]["cause"]) == CAUSE_MAX

    for api in (
        reverse("api_execution_detail", args=[failed.arn]),
        reverse("api_execution_list"),
    ):
        response = operator_client.get(api)
        assert response["Content-Type"] == "application/json"
        assert response["X-Content-Type-Options"] == "nosniff"
        # Django's JSON escapes nothing into markup, but a JSON body must
        # never be served as HTML: it is not, and it parses.
        response.json()
    detail = operator_client.get(reverse("api_execution_detail", args=[failed.arn])).json()
    assert detail["error"] == SCRIPT
    assert detail["name"] == f"xss-failed{IMG}"


def test_the_admin_shows_hostile_content_as_text(admin_client: Client, world: HostileWorld) -> None:
    from executions.models import Execution, HistoryEvent, StopRequest, SyncRun

    for model, pk in (
        (Execution, world.failed.pk),
        (HistoryEvent, HistoryEvent.objects.filter(execution=world.failed).first().pk),  # type: ignore[union-attr]
        (StopRequest, StopRequest.objects.first().pk),  # type: ignore[union-attr]
        (SyncRun, SyncRun.objects.first().pk),  # type: ignore[union-attr]
    ):
        name = model._meta.model_name
        for url in (
            reverse(f"admin:executions_{name}_changelist"),
            reverse(f"admin:executions_{name}_change", args=[pk]),
        ):
            response = admin_client.get(url)
            assert response.status_code == 200, url
            assert_no_markup_from_payloads(response.content.decode(), url)


def test_a_hostile_next_or_search_cannot_redirect_elsewhere(client: Client, user: Any) -> None:
    for target in (LINK, "https://evil.example/", "//evil.example/", "/\\evil.example/", MIXED):
        response = client.post(
            reverse("login") + "?" + urlencode({"next": target}),
            {"username": "viewer", "password": "viewer-pass-123", "next": target},
        )
        assert response.status_code == 302
        location = response["Location"]
        # Off-site and script targets fall back to the list; the rest stays a
        # path on this site (MIXED becomes a harmless relative 404).
        assert not location.lower().startswith(("javascript:", "http", "//", "/\\")), target
        if target != MIXED:
            assert location == reverse("execution_list"), target
        client.logout()
    client.force_login(user)
    for q in (LINK, "//evil.example/x", MIXED):
        response = client.get(reverse("execution_list") + "?" + urlencode({"q": q}))
        assert response.status_code in (200, 302)
        if response.status_code == 302:
            assert response["Location"].startswith("/"), q
            assert not response["Location"].startswith("//"), q
