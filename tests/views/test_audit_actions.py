"""/audit/actions/: every redrive, start and Map Run change, filterable, for
the audit's readers (as /audit/ is); a 403 for anyone else."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from executions.models import ActionRequest, Execution
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

URL = reverse("action_audit")
XSS = '<script>alert("x")</script>'


def action(
    kind: str, username: str, outcome: str, minutes_ago: float, **fields: Any
) -> ActionRequest:
    row = ActionRequest.objects.create(
        kind=kind, username=username, outcome=outcome, request_token=uuid.uuid4(), **fields
    )
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    ActionRequest.objects.filter(pk=row.pk).update(requested_at=at)
    row.requested_at = at
    return row


@pytest.fixture
def actions() -> dict[str, Any]:
    etl = state_machine_row("etl")
    failed: Execution = execution_row(etl, name="etl-failed", status="FAILED")
    made: Execution = execution_row(etl, name="etl-rerun", status="RUNNING")
    batch = uuid.uuid4()
    return {
        "etl": etl,
        "batch": batch,
        "redrive": action(
            "REDRIVE",
            "alice",
            "DONE",
            60,
            target_arn=failed.arn,
            execution=failed,
            batch_id=batch,
            aws_response="Redriven at 2026-12-03T10:00:00Z",
        ),
        "start": action(
            "START",
            "bob",
            "DONE",
            30,
            target_arn=etl.arn,
            execution=made,
            result_arn=made.arn,
            parameters={"name": "etl-rerun", "input_bytes": 17},
        ),
        "refused": action(
            "REDRIVE",
            "alice",
            "REFUSED",
            5,
            target_arn=failed.arn,
            execution=failed,
            aws_response=f"ExecutionNotRedrivable: {XSS}",
        ),
    }


@pytest.fixture
def auditor_client(client: Client, django_user_model: Any) -> Client:
    person = django_user_model.objects.create_user("auditor", password="auditor-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="view_stoprequest"))
    client.force_login(person)
    return client


def pks(response: Any) -> list[int]:
    return [a.pk for a in response.context["actions"]]


def test_an_auditor_sees_every_request_newest_first(
    auditor_client: Client, actions: dict[str, Any]
) -> None:
    response = auditor_client.get(URL)
    assert response.status_code == 200
    assert pks(response) == [actions[k].pk for k in ("refused", "start", "redrive")]
    body = response.content.decode()
    assert "etl-rerun" in body
    assert "input_bytes" in body
    # What AWS said is shown as text, never as markup.
    assert XSS not in body
    assert "&lt;script&gt;" in body


def test_filters_narrow_the_requests(auditor_client: Client, actions: dict[str, Any]) -> None:
    by_kind = auditor_client.get(URL, {"kind": "START"})
    assert pks(by_kind) == [actions["start"].pk]
    by_outcome = auditor_client.get(URL, {"outcome": "REFUSED"})
    assert pks(by_outcome) == [actions["refused"].pk]
    by_user = auditor_client.get(URL, {"user": "ALICE"})
    assert pks(by_user) == [actions["refused"].pk, actions["redrive"].pk]
    by_batch = auditor_client.get(URL, {"batch": str(actions["batch"])})
    assert pks(by_batch) == [actions["redrive"].pk]
    # The execution a start made is found by its ARN too.
    made = auditor_client.get(URL, {"arn": actions["start"].result_arn})
    assert pks(made) == [actions["start"].pk]
    assert made.context["total"] == 1


def test_pages_follow_each_other_without_gaps(
    auditor_client: Client, actions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("executions.views.audit_actions.PAGE_SIZE", 2)
    first = auditor_client.get(URL)
    assert pks(first) == [actions["refused"].pk, actions["start"].pk]
    second = auditor_client.get(URL + "?" + first.context["next_query"])
    assert pks(second) == [actions["redrive"].pk]
    assert second.context["next_query"] == ""


@pytest.mark.parametrize(
    "query",
    [
        {"arn": "not-an-arn"},
        {"kind": "DELETE"},
        {"outcome": "MAYBE"},
        {"batch": "nope"},
        {"cursor": "x-y"},
        {"requested_after": "2026-02-01T00:00", "requested_before": "2026-01-01T00:00"},
        {"requested_after": "yesterday"},
    ],
)
def test_bad_filters_are_a_400_that_says_why(
    auditor_client: Client, actions: dict[str, Any], query: dict[str, str]
) -> None:
    response = auditor_client.get(URL, query)
    assert response.status_code == 400
    assert "These filters are not valid" in response.content.decode()


def test_viewers_without_the_audit_permission_get_a_403(viewer_client: Client) -> None:
    response = viewer_client.get(URL)
    assert response.status_code == 403
    assert "view_stoprequest" in response.content.decode()


def test_signed_out_people_are_sent_to_sign_in(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_the_stop_audit_links_here(operator_client: Client) -> None:
    body = operator_client.get(reverse("audit_log")).content.decode()
    assert f'href="{URL}"' in body
