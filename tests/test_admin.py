"""The Django admin: synced data and the stop audit are read-only, even for a superuser."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from executions.models import Execution, HistoryEvent, StateMachine, StopRequest, SyncRun
from tests.support.factories import events, execution_row, state_machine_row

pytestmark = pytest.mark.django_db

MODELS = [StateMachine, Execution, HistoryEvent, SyncRun, StopRequest]
XSS = '<script>alert("x")</script>'


@pytest.fixture
def rows() -> dict[type, Any]:
    sm = state_machine_row("etl")
    ex = execution_row(sm, name="etl-1", status="ABORTED")
    (event,) = events(ex, [("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})])
    run = SyncRun.objects.create(
        kind="list", region="us-east-1", state_machine=sm, started_at=ex.start_date, ok=True
    )
    stop = StopRequest.objects.create(
        execution=ex, username="oncall", outcome="STOPPED", request_token=uuid.uuid4()
    )
    return {StateMachine: sm, Execution: ex, HistoryEvent: event, SyncRun: run, StopRequest: stop}


def url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:executions_{model._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_superuser_can_look_but_not_touch(
    admin_client: Client, rows: dict[type, Any], model: type[Model]
) -> None:
    obj = rows[model]
    changelist = admin_client.get(url(model, "changelist"))
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert url(model, "add") not in html
    assert 'value="delete_selected"' not in html

    view = admin_client.get(url(model, "change", obj.pk))
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()

    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.get(url(model, "delete", obj.pk)).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.post(
        url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    ).status_code in (200, 302)
    assert model._default_manager.filter(pk=obj.pk).exists()


def test_users_and_groups_stay_editable(admin_client: Client) -> None:
    assert admin_client.get(reverse("admin:auth_user_add")).status_code == 200
    assert admin_client.get(reverse("admin:auth_group_add")).status_code == 200


def test_a_viewer_without_staff_status_is_kept_out(viewer_client: Client) -> None:
    response = viewer_client.get(url(Execution, "changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_long_history_is_paged(admin_client: Client, django_assert_max_num_queries: Any) -> None:
    ex = execution_row(status="SUCCEEDED")
    events(
        ex,
        [("PassStateEntered", "stateEnteredEventDetails", {"name": f"S{i}"}) for i in range(300)],
    )
    with django_assert_max_num_queries(12):
        response = admin_client.get(url(HistoryEvent, "changelist") + f"?q={ex.arn}")
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 50


@pytest.mark.parametrize(
    ("model", "query"),
    [
        (StopRequest, "not-a-uuid"),
        (StopRequest, str(uuid.uuid4())),
        (Execution, "arn:aws:states:us-east-1:123456789012:execution:etl:etl-1"),
        (Execution, "etl"),
        (SyncRun, "boom"),
        (StateMachine, "%"),
    ],
)
def test_searches_never_fail(
    admin_client: Client, rows: dict[type, Any], model: type, query: str
) -> None:
    response = admin_client.get(url(model, "changelist"), {"q": query})
    assert response.status_code == 200


def test_the_admin_escapes_synced_text(admin_client: Client) -> None:
    sm = state_machine_row("etl")
    ex = execution_row(sm, status="FAILED", started=None)
    Execution.objects.filter(pk=ex.pk).update(name=XSS, error=XSS, cause=XSS)
    stop = StopRequest.objects.create(
        execution=ex, username=XSS, error=XSS, cause=XSS, outcome="FAILED", aws_response=XSS
    )
    for page in (
        url(Execution, "changelist"),
        url(Execution, "change", ex.pk),
        url(StopRequest, "changelist"),
        url(StopRequest, "change", stop.pk),
    ):
        html = admin_client.get(page).content.decode()
        assert "<script>alert" not in html, page


def test_filters_in_the_changelists(admin_client: Client, rows: dict[type, Any]) -> None:
    aborted = admin_client.get(url(Execution, "changelist") + "?status__exact=ABORTED")
    assert [e.pk for e in aborted.context["cl"].result_list] == [rows[Execution].pk]
    running = admin_client.get(url(Execution, "changelist") + "?status__exact=RUNNING")
    assert list(running.context["cl"].result_list) == []
    failed = admin_client.get(url(StopRequest, "changelist") + "?outcome__exact=FAILED")
    assert list(failed.context["cl"].result_list) == []
