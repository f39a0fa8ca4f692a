"""The theme switch (preferences/): POST only, signed in, with CSRF; kept per
user in the database and drawn on <html> from the session, without a query."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from preferences.models import UserPreference
from preferences.themes import SESSION_KEY

pytestmark = pytest.mark.django_db

URL = "/preferences/theme/"


def html_theme(client: Client, path: str = "/state-machines/") -> str:
    response = client.get(path)
    assert response.status_code == 200
    match = re.search(r'<html lang="en" data-theme="(\w+)">', response.content.decode())
    assert match, "no data-theme on <html>"
    return match.group(1)


def test_a_new_user_gets_the_systems_theme(viewer_client: Client) -> None:
    assert html_theme(viewer_client) == "system"
    page = viewer_client.get("/state-machines/").content.decode()
    assert '<meta name="color-scheme" content="light dark">' in page
    assert '<button name="theme" value="system" aria-pressed="true"' in page


def test_choosing_dark_keeps_it_and_goes_back_to_the_page(viewer_client: Client, user: Any) -> None:
    response = viewer_client.post(URL, {"theme": "dark", "next": "/executions/?status=FAILED"})
    assert response.status_code == 302
    assert response["Location"] == "/executions/?status=FAILED"
    assert UserPreference.objects.get(user=user).theme == "dark"
    assert html_theme(viewer_client) == "dark"
    page = viewer_client.get("/state-machines/").content.decode()
    assert '<meta name="color-scheme" content="dark">' in page
    assert '<button name="theme" value="dark" aria-pressed="true"' in page


def test_choosing_again_changes_the_one_row(viewer_client: Client, user: Any) -> None:
    viewer_client.post(URL, {"theme": "dark"})
    viewer_client.post(URL, {"theme": "light"})
    assert list(UserPreference.objects.values_list("user_id", "theme")) == [(user.pk, "light")]
    assert html_theme(viewer_client) == "light"


def test_the_choice_is_kept_across_sessions(client: Client, user: Any) -> None:
    client.post(
        "/accounts/login/", {"username": "viewer", "password": "viewer-pass-123"}, follow=True
    )
    assert client.post(URL, {"theme": "dark"}).status_code == 302
    client.post("/accounts/logout/")

    other = Client()
    other.post("/accounts/login/", {"username": "viewer", "password": "viewer-pass-123"})
    assert other.session[SESSION_KEY] == "dark"
    assert html_theme(other) == "dark"


def test_the_choice_is_per_user(viewer_client: Client, operator: Any) -> None:
    viewer_client.post(URL, {"theme": "dark"})
    other = Client()
    other.force_login(operator)
    assert html_theme(other) == "system"


def test_drawing_a_page_reads_the_theme_from_the_session_not_the_database(
    viewer_client: Client,
) -> None:
    viewer_client.post(URL, {"theme": "light"})
    viewer_client.get("/state-machines/")
    with CaptureQueriesContext(connection) as counted:
        assert html_theme(viewer_client) == "light"
    assert counted.captured_queries
    assert not [q for q in counted.captured_queries if "preferences_" in q["sql"]]


def test_a_session_from_before_the_switch_existed_reads_it_once(
    viewer_client: Client, user: Any
) -> None:
    UserPreference.objects.create(user=user, theme="dark")
    session = viewer_client.session
    session.pop(SESSION_KEY, None)
    session.save()

    with CaptureQueriesContext(connection) as first:
        assert html_theme(viewer_client) == "dark"
    assert len([q for q in first.captured_queries if "preferences_" in q["sql"]]) == 1
    with CaptureQueriesContext(connection) as counted:
        assert html_theme(viewer_client) == "dark"
    assert not [q for q in counted.captured_queries if "preferences_" in q["sql"]]


def test_htmx_gets_a_204_and_an_event_to_repaint_in_place(viewer_client: Client) -> None:
    response = viewer_client.post(URL, {"theme": "dark"}, headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert json.loads(response["HX-Trigger"]) == {"sfnui:theme": "dark"}
    assert html_theme(viewer_client) == "dark"


@pytest.mark.parametrize("value", ["purple", "", "DARK", "x" * 500])
def test_a_bad_theme_is_a_400_that_says_what_is_allowed(
    viewer_client: Client, user: Any, value: str
) -> None:
    response = viewer_client.post(URL, {"theme": value})
    assert response.status_code == 400
    assert "The theme must be one of: system, light, dark." in response.content.decode()
    assert not UserPreference.objects.filter(user=user).exists()


def test_a_missing_theme_is_a_400(viewer_client: Client) -> None:
    assert viewer_client.post(URL, {}).status_code == 400


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_switches(viewer_client: Client, user: Any, method: str) -> None:
    assert getattr(viewer_client, method)(URL).status_code == 405
    assert not UserPreference.objects.filter(user=user).exists()


def test_signed_out_it_asks_to_sign_in_and_keeps_nothing(client: Client) -> None:
    response = client.post(URL, {"theme": "dark"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not UserPreference.objects.exists()


def test_without_the_csrf_token_nothing_changes(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(URL, {"theme": "dark"}).status_code == 403
    assert not UserPreference.objects.exists()


def test_with_the_pages_csrf_token_it_switches(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/state-machines/").content.decode()
    token = re.search(
        r'class="theme-switch".*?name="csrfmiddlewaretoken" value="([^"]+)"', page, re.S
    )
    assert token
    response = client.post(URL, {"theme": "dark", "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=user).theme == "dark"


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"]
)
def test_it_never_sends_anyone_to_another_site(viewer_client: Client, next_url: str) -> None:
    response = viewer_client.post(URL, {"theme": "dark", "next": next_url})
    assert response["Location"] == "/executions/"


def test_without_next_it_goes_back_to_the_referring_page(viewer_client: Client) -> None:
    response = viewer_client.post(
        URL, {"theme": "light"}, headers={"Referer": "http://testserver/state-machines/"}
    )
    assert response["Location"] == "http://testserver/state-machines/"


def test_the_sign_in_page_follows_the_system(client: Client) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert '<html lang="en" data-theme="system">' in page
    assert "theme-switch" not in page
    assert 'id="keys-help"' not in page


def test_every_page_lists_the_keys_for_the_question_mark(viewer_client: Client) -> None:
    page = viewer_client.get("/state-machines/").content.decode()
    dialog = re.search(r'<dialog id="keys-help".*?</dialog>', page, re.S)
    assert dialog
    for key in ("/", "j", "k", "Enter", "g", "h", "?"):
        assert f"<kbd>{key}</kbd>" in dialog.group(0)
    assert "sfnui/keys.js" in page
