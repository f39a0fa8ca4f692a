"""The error pages Django renders itself (handler400/403/404/500): the site's
own, and safe with a request Django refused (issue 10, item 3).

A form posted in another charset than UTF-8 made Django raise BadRequest,
then raise it again inside its own 400 view (whose CSRF check parses the
body again): a bare 500, without even a sign-in.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import BadRequest
from django.db import OperationalError
from django.template import loader
from django.test import Client, RequestFactory

from executions.views import errors
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

CHARSETS = ["utf-16", "latin-1", "utf-32"]


def _csrf_client() -> tuple[Client, str]:
    c = Client(enforce_csrf_checks=True)
    c.get("/accounts/login/")
    return c, c.cookies["csrftoken"].value


@pytest.mark.parametrize("charset", CHARSETS)
def test_a_sign_in_form_in_another_charset_is_a_400_that_says_why(charset: str) -> None:
    c, token = _csrf_client()
    response = c.post(
        "/accounts/login/",
        data=f"csrfmiddlewaretoken={token}&username=a&password=b",
        content_type=f"application/x-www-form-urlencoded; charset={charset}",
    )
    assert response.status_code == 400
    assert b"must be UTF-8 encoded" in response.content
    assert b"Back to the executions" in response.content


@pytest.mark.parametrize("charset", CHARSETS)
def test_a_form_in_another_charset_to_a_page_or_a_stop_is_never_a_500(
    charset: str, operator: Any
) -> None:
    c, token = _csrf_client()
    c.force_login(operator)
    ex = execution_row(state_machine_row(), status="RUNNING")
    body = f"csrfmiddlewaretoken={token}&error=x&cause=y"
    content_type = f"application/x-www-form-urlencoded; charset={charset}"
    stop = c.post(f"/executions/{ex.arn}/stop/", data=body, content_type=content_type)
    assert stop.status_code == 400
    assert b"must be UTF-8 encoded" in stop.content
    nowhere = c.post("/no/such/page/", data=body, content_type=content_type)
    assert nowhere.status_code in (400, 404)
    assert b"Back to the executions" in nowhere.content


def test_an_unknown_page_is_the_sites_own_404(operator_client: Client) -> None:
    response = operator_client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"There is no such page." in response.content
    # Not the resolver's list of what it tried.
    assert b"tried" not in response.content


def test_the_500_page_is_drawn_without_the_request_and_the_others_fall_back_to_plain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = RequestFactory().get("/executions/")
    assert b"Something went wrong" in errors.server_error(request).content

    def down(*args: Any, **kwargs: Any) -> str:
        raise OperationalError("the database is away")

    # Drawing a page needs the sync bar, hence the database: if that fails
    # too, a plain page with the same status and message.
    monkeypatch.setattr(loader, "render_to_string", down)
    response = errors.bad_request(request, BadRequest("a <b>bad</b> body"))
    assert response.status_code == 400
    assert b"a &lt;b&gt;bad&lt;/b&gt; body" in response.content
    assert errors.server_error(request).status_code == 500


def test_an_empty_to_field_in_the_admin_is_a_400_not_a_500(admin_client: Client) -> None:
    sm = state_machine_row()
    change = f"/admin/executions/statemachine/{sm.pk}/change/"
    assert admin_client.get(change).status_code == 200
    for response in (
        admin_client.get(change + "?_to_field="),
        admin_client.post(change, {"_to_field": ""}),
        admin_client.get("/admin/auth/user/?_to_field="),
    ):
        assert response.status_code == 400
        assert b"_to_field is empty" in response.content
    # Signed out, the sign-in still comes first.
    assert Client().get(change + "?_to_field=").status_code == 302
