"""Who may see and do what: every URL pattern (enumerated from the resolver)
needs a signed-in user except /healthz and the login page; the API answers
401 instead of redirecting; stopping needs executions.stop_execution and a
CSRF token; the admin shows synced data read-only."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from executions.models import Execution, StopRequest
from executions.sync import flows
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT
from tests.support.urlmap import Endpoint, endpoints

pytestmark = pytest.mark.django_db

ENDPOINTS = endpoints()
# The only pages a signed-out person may open (the admin's own sign-in page
# and the assets it needs are the admin's login; the rest of the admin
# sends them to it).
PUBLIC = {"healthz", "login", "admin:login", "admin:jsi18n"}
API = {e.name for e in ENDPOINTS if e.route.startswith("api/")}


@pytest.fixture
def arns() -> dict[str, str]:
    sm = state_machine_row("order-pipeline")
    ex = execution_row(sm, name="etl-1", status="RUNNING")
    events(ex, [("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})])
    return {"execution": ex.arn, "state_machine": sm.arn}


def _path(endpoint: Endpoint, arns: dict[str, str]) -> str:
    return endpoint.sample_path(arns, pk="1")


def _previewable(endpoint: Endpoint) -> bool:
    """Pages that chat tools may unfurl (executions/web/previews.py): they
    do their own check, and redirect like any page unless SFNUI_PUBLIC_PREVIEWS."""
    code = getattr(endpoint.callback, "__code__", None)
    return code is not None and code.co_filename.endswith("web/previews.py")


def test_the_views_that_skip_the_sign_in_check_are_exactly_the_ones_meant_to() -> None:
    """Django marks a view that LoginRequiredMiddleware lets through: only
    these may be. The API and the previewable pages check for themselves
    (the tests below prove they do); a new one must be added here knowingly."""
    skipping = {
        e.name or str(e)
        for e in ENDPOINTS
        if getattr(e.callback, "login_required", True) is False
        and not e.admin
        and not _previewable(e)
    }
    assert skipping - API == {"healthz", "login"}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_signed_out_visitor_gets_nothing_but_a_way_to_sign_in(
    client: Client, endpoint: Endpoint, arns: dict[str, str]
) -> None:
    for method in ("get", "post", "head"):
        _signed_out(client, endpoint, method, arns)


def _signed_out(client: Client, endpoint: Endpoint, method: str, arns: dict[str, str]) -> None:
    path = _path(endpoint, arns)
    response = getattr(client, method)(path)
    body = b"" if response.streaming else response.content
    if endpoint.name in PUBLIC:
        # /healthz may say "not ready": on SQLite its write probe cannot take
        # the lock this test's own transaction holds.
        not_ready = endpoint.name == "healthz" and response.status_code == 503
        assert response.status_code < 500 or not_ready
        return
    if endpoint.name in API:
        assert response.status_code in (401, 405), path
        if response.status_code == 401:
            assert response["WWW-Authenticate"].startswith("Basic")
            if method != "head":
                assert response.json()["message"]
        return
    assert response.status_code == 302, (method, path, response.status_code)
    location = response["Location"]
    # The admin's own sign-in page, or the site's (LoginRequiredMiddleware
    # gets there first).
    assert location.startswith((reverse("login") + "?next=", reverse("admin:login") + "?next=")), (
        location
    )
    # Nothing of the page itself, and no ARN, leaks in the redirect.
    assert arns["execution"].encode() not in body
    assert b"etl-1" not in body


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.name in API], ids=str)
def test_the_api_takes_a_session_or_basic_auth(
    client: Client, endpoint: Endpoint, arns: dict[str, str], django_user_model: Any
) -> None:
    django_user_model.objects.create_user("script", password="script-pass-123")
    django_user_model.objects.create_user("gone", password="gone-pass-123", is_active=False)
    path = _path(endpoint, arns)

    def basic(credentials: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

    assert client.get(path, headers=basic("script:script-pass-123")).status_code == 200
    # Basic auth opens no session.
    assert client.get(path).status_code == 401
    for wrong in ("script:nope", "gone:gone-pass-123", "nobody:x", "no-colon"):
        response = client.get(path, headers=basic(wrong))
        assert response.status_code == 401, wrong
        assert "Wrong username or password" in response.json()["message"]
    client.force_login(django_user_model.objects.get(username="script"))
    assert client.get(path).status_code == 200


# --- Stopping -------------------------------------------------------------------------------


def _form(token: uuid.UUID | None = None, **extra: str) -> dict[str, str]:
    return {
        "error": "Ops.Runaway",
        "cause": "INC-7",
        "request_token": str(token or uuid.uuid4()),
        **extra,
    }


def _calls(fake_aws: Any) -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get("StopExecution", 0))


@pytest.fixture
def runaway(make_state_machine: Callable[..., str], start: Callable[..., str]) -> Execution:
    return flows.import_execution(start(make_state_machine("nightly-etl", LONG_WAIT), "etl-1"))


def _csrf_token(client: Client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert found
    return found[1]


def test_stopping_needs_the_permission_whoever_asks(
    runaway: Execution, fake_aws: Any, django_user_model: Any
) -> None:
    url = reverse("execution_stop", args=[runaway.arn])
    staff = django_user_model.objects.create_user("staff", password="x-pass-123", is_staff=True)
    inactive_operator = django_user_model.objects.create_user("old", password="x-pass-123")
    inactive_operator.user_permissions.add(Permission.objects.get(codename="stop_execution"))
    inactive_operator.is_active = False
    inactive_operator.save()
    for who in (staff, inactive_operator):
        client = Client()
        client.force_login(who)
        get, post = client.get(url), client.post(url, _form())
        assert get.status_code in (302, 403), who
        assert post.status_code in (302, 403), who
        if get.status_code == 403:
            assert "executions.stop_execution" in get.content.decode()
    # The detail page offers no Stop button either.
    client = Client()
    client.force_login(staff)
    assert url not in client.get(reverse("execution_detail", args=[runaway.arn])).content.decode()
    assert _calls(fake_aws) == 0
    assert StopRequest.objects.count() == 0


def test_a_group_that_holds_the_permission_may_stop(
    runaway: Execution, fake_aws: Any, django_user_model: Any
) -> None:
    oncall = Group.objects.create(name="oncall")
    oncall.permissions.add(Permission.objects.get(codename="stop_execution"))
    person = django_user_model.objects.create_user("pat", password="pat-pass-123")
    person.groups.add(oncall)
    client = Client(enforce_csrf_checks=True)
    client.force_login(person)
    url = reverse("execution_stop", args=[runaway.arn])
    detail = client.get(reverse("execution_detail", args=[runaway.arn])).content.decode()
    assert quote(runaway.arn, safe=":/") in detail or url in detail
    token = _csrf_token(client, url)
    response = client.post(url, _form(csrfmiddlewaretoken=token))
    assert response.status_code == 302
    assert StopRequest.objects.get().outcome == "STOPPED"
    assert _calls(fake_aws) == 1


def test_a_stop_needs_this_sessions_csrf_token(
    runaway: Execution, fake_aws: Any, operator: Any, django_user_model: Any
) -> None:
    url = reverse("execution_stop", args=[runaway.arn])
    other = Client(enforce_csrf_checks=True)
    other.force_login(django_user_model.objects.create_superuser("root", password="root-pass-1"))
    foreign = _csrf_token(other, url)

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    mine = _csrf_token(client, url)
    for token in ("", "x" * 64, foreign):
        refused = client.post(url, _form(csrfmiddlewaretoken=token) if token else _form())
        assert refused.status_code == 403, token
        assert "CSRF" in refused.content.decode() or "form" in refused.content.decode()
    # A cross-site form: right token, wrong origin.
    refused = client.post(
        url,
        _form(csrfmiddlewaretoken=mine),
        headers={"Origin": "https://evil.example", "Referer": "https://evil.example/x"},
        secure=True,
    )
    assert refused.status_code == 403
    assert _calls(fake_aws) == 0
    assert StopRequest.objects.count() == 0

    accepted = client.post(url, _form(csrfmiddlewaretoken=mine))
    assert accepted.status_code == 302
    assert _calls(fake_aws) == 1


def test_a_get_never_stops_anything(
    runaway: Execution, fake_aws: Any, operator_client: Client
) -> None:
    url = reverse("execution_stop", args=[runaway.arn])
    query = "?" + "&".join(f"{k}={v}" for k, v in _form().items())
    assert operator_client.get(url + query).status_code == 200
    assert operator_client.head(url).status_code == 405
    assert _calls(fake_aws) == 0
    assert StopRequest.objects.count() == 0


# --- The admin ------------------------------------------------------------------------------


def test_the_admin_shows_every_synced_model_read_only(rf: Any, admin_user: Any) -> None:
    """Every model of the app in the admin, today's and tomorrow's: a
    superuser may look and nothing else (the sync and the audit own them)."""
    request = rf.get("/admin/")
    request.user = admin_user
    registered = [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == "executions"
    ]
    assert len(registered) >= 5
    for model, model_admin in registered:
        name = model.__name__
        assert model_admin.has_view_permission(request), name
        assert not model_admin.has_add_permission(request), name
        assert not model_admin.has_change_permission(request), name
        assert not model_admin.has_delete_permission(request), name
        assert not model_admin.get_actions(request), name


def test_the_admin_is_for_staff_only(viewer_client: Client, operator_client: Client) -> None:
    for client in (viewer_client, operator_client):
        response = client.get(reverse("admin:index"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


# --- Caches (issue 10, item 9) ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_nothing_a_signed_in_person_is_shown_is_kept_by_a_cache(
    admin_client: Client, endpoint: Endpoint, arns: dict[str, str]
) -> None:
    """Pages, exports and the API hold input, output and causes: whatever
    their status, no shared proxy and no browser cache may keep them."""
    response = admin_client.get(_path(endpoint, arns))
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    assert {"private", "no-store"} <= directives, (endpoint, response.status_code)
    assert "public" not in directives


def test_a_script_with_basic_auth_gets_the_same_cache_control(
    client: Client, arns: dict[str, str], user: Any
) -> None:
    basic = "Basic " + base64.b64encode(b"viewer:viewer-pass-123").decode()
    for path in ("/api/executions/", f"/api/executions/{arns['execution']}/"):
        response = client.get(path, HTTP_AUTHORIZATION=basic)
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        assert "private" in response["Cache-Control"]


def test_answers_to_signed_out_requests_keep_their_own_cache_control(
    client: Client, arns: dict[str, str], settings: Any
) -> None:
    settings.SFNUI_PUBLIC_PREVIEWS = True
    preview = client.get(f"/executions/{arns['execution']}/")
    assert preview.status_code == 200
    assert preview["Cache-Control"] == "private, no-cache"


def test_static_files_stay_cacheable_for_people_signed_in(
    client: Client, user: Any, settings: Any
) -> None:
    # WhiteNoise serves them before any of the app's middleware sees the request.
    settings.WHITENOISE_USE_FINDERS = True
    signed_in = Client()
    signed_in.force_login(user)
    response = signed_in.get("/static/sfnui/app.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
