"""/executions/<arn>/redrive/: the confirmation page and the POST that redrives,
and the detail page's Redrive button and "redrivable until"."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.http import QueryDict
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from executions.actions import bulk
from executions.models import ActionRequest, BulkStop, Execution
from executions.reads.queries import Filters
from executions.sync import flows
from executions.views.bulk_stop import SelectionForm
from sfnui.celery import app as celery_app
from tests.support.aws_faults import refused_url
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import FAIL, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def calls(fake_aws: Any, operation: str = "RedriveExecution") -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


def redrive_url(arn: str) -> str:
    return reverse("execution_redrive", args=[arn])


def detail_url(arn: str) -> str:
    return reverse("execution_detail", args=[arn])


def form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"request_token": str(uuid.uuid4())}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def redriver(django_user_model: Any) -> Any:
    person = django_user_model.objects.create_user(username="fixer", password="fixer-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="redrive_execution"))
    return person


@pytest.fixture
def redriver_client(client: Client, redriver: Any) -> Client:
    client.force_login(redriver)
    return client


@pytest.fixture
def failed(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> Execution:
    arn = start(make_state_machine("orders", FAIL), "order-1")
    wait_until_finished(sfn, [arn])
    return flows.import_execution(arn)


def test_a_redriver_sees_what_will_be_redriven_and_redrives_it(
    failed: Execution, redriver_client: Client, fake_aws: Any, sfn: Any
) -> None:
    page = redriver_client.get(redrive_url(failed.arn))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Redrive this execution?" in html
    assert "order-1" in html
    assert "Boom" in html  # the unsuccessful step, linked into the history
    assert "#event-" in html
    assert 'name="request_token"' in html
    assert "attempt 2" in html

    response = redriver_client.post(redrive_url(failed.arn), form())
    assert response.status_code == 302
    assert response["Location"] == detail_url(failed.arn)
    assert any("Redrove order-1" in m and "attempt 2" in m for m in messages_of(response))
    assert calls(fake_aws) == 1
    assert sfn.describe_execution(executionArn=failed.arn)["redriveCount"] == 1
    row = ActionRequest.objects.get()
    assert (row.kind, row.outcome, row.username) == ("REDRIVE", "DONE", "fixer")
    # The detail page it lands on shows it running again, with no Redrive button.
    detail = redriver_client.get(response["Location"]).content.decode()
    assert "redriven 1 time" in detail
    assert 'id="redrive-button"' not in detail


def test_the_redirect_keeps_the_time_zone(
    failed: Execution, redriver_client: Client, fake_aws: Any
) -> None:
    response = redriver_client.post(redrive_url(failed.arn) + "?tz=Europe/Berlin", form())
    assert response["Location"] == detail_url(failed.arn) + "?tz=Europe%2FBerlin"


def test_a_viewer_or_a_stopper_may_neither_see_the_form_nor_redrive(
    failed: Execution, client: Client, user: Any, operator: Any, fake_aws: Any
) -> None:
    for who in (user, operator):
        client.force_login(who)
        page = client.get(redrive_url(failed.arn))
        assert page.status_code == 403
        assert "executions.redrive_execution" in page.content.decode()
        assert client.post(redrive_url(failed.arn), form()).status_code == 403
    assert calls(fake_aws) == 0
    assert not ActionRequest.objects.exists()


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    ex = execution_row(status="FAILED")
    for response in (client.get(redrive_url(ex.arn)), client.post(redrive_url(ex.arn), form())):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not ActionRequest.objects.exists()


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_not_allowed(redriver_client: Client, method: str) -> None:
    ex = execution_row(status="FAILED")
    assert getattr(redriver_client, method)(redrive_url(ex.arn)).status_code == 405


def test_csrf_is_enforced(failed: Execution, redriver: Any, fake_aws: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(redriver)
    assert strict.post(redrive_url(failed.arn), form()).status_code == 403
    assert calls(fake_aws) == 0
    assert not ActionRequest.objects.exists()


@pytest.mark.parametrize("token", [None, "not-a-uuid", ""])
def test_a_bad_form_is_answered_with_400_and_sends_nothing(
    failed: Execution, redriver_client: Client, fake_aws: Any, token: str | None
) -> None:
    response = redriver_client.post(redrive_url(failed.arn), form(request_token=token))
    assert response.status_code == 400
    html = response.content.decode()
    assert "nothing was sent" in html
    # A fresh token to confirm with.
    assert 'name="request_token"' in html
    assert calls(fake_aws) == 0
    assert not ActionRequest.objects.exists()


def test_a_double_submit_redrives_once(
    failed: Execution, redriver_client: Client, fake_aws: Any
) -> None:
    data = form()
    first = redriver_client.post(redrive_url(failed.arn), data)
    again = redriver_client.post(redrive_url(failed.arn), data)
    assert (first.status_code, again.status_code) == (302, 302)
    assert calls(fake_aws) == 1
    assert ActionRequest.objects.count() == 1


def test_what_aws_will_not_redrive_is_refused_with_409(
    failed: Execution, redriver_client: Client, fake_aws: Any, sfn: Any
) -> None:
    page = redriver_client.get(redrive_url(failed.arn))
    assert page.status_code == 200
    # Meanwhile someone redrives it from the console: the live check sees it.
    sfn.redrive_execution(executionArn=failed.arn)
    response = redriver_client.post(redrive_url(failed.arn), form())
    assert response.status_code == 409
    html = response.content.decode()
    assert "was not redriven" in html
    assert "AWS says RUNNING" in html
    assert calls(fake_aws) == 1  # the console's
    assert ActionRequest.objects.get().outcome == "REFUSED"


def test_a_succeeded_execution_has_no_form_and_says_why(redriver_client: Client) -> None:
    ex = execution_row(status="SUCCEEDED")
    page = redriver_client.get(redrive_url(ex.arn))
    assert page.status_code == 200
    html = page.content.decode()
    assert "cannot be redriven" in html
    assert "only failed, timed-out or aborted" in html
    assert 'name="request_token"' not in html


def test_an_execution_past_the_14_days_has_no_form(redriver_client: Client) -> None:
    ex = execution_row(status="FAILED", started=timezone.now() - dt.timedelta(days=20))
    html = redriver_client.get(redrive_url(ex.arn)).content.decode()
    assert "more than 14 days ago" in html
    assert 'name="request_token"' not in html


def test_a_throttled_redrive_is_a_503_with_a_fresh_form(
    failed: Execution, redriver_client: Client, fake_aws: Any
) -> None:
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["RedriveExecution"]}
    )
    response = redriver_client.post(redrive_url(failed.arn), form())
    assert response.status_code == 503
    html = response.content.decode()
    assert "AWS is throttling, try again" in html
    assert 'name="request_token"' in html
    assert ActionRequest.objects.get().outcome == "FAILED"


def test_aws_unreachable_is_a_503_said_plainly(redriver_client: Client, settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = refused_url()
    ex = execution_row(status="FAILED")
    response = redriver_client.post(redrive_url(ex.arn), form())
    assert response.status_code == 503
    assert "AWS unreachable: the redrive was not sent" in response.content.decode()


def test_a_malformed_arn_is_a_404(redriver_client: Client) -> None:
    response = redriver_client.get("/executions/not-an-arn/redrive/")
    assert response.status_code == 404
    assert "not a Step Functions execution ARN" in response.content.decode()


def test_an_arn_aws_does_not_know_is_a_404(redriver_client: Client, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:ghost:nope"
    response = redriver_client.post(redrive_url(arn), form())
    assert response.status_code == 404
    assert "does not know" in response.content.decode()
    assert not ActionRequest.objects.exists()


def test_the_page_escapes_hostile_names(redriver_client: Client) -> None:
    sm = state_machine_row("hostile")
    ex = execution_row(sm, name="x-run", status="FAILED", error=XSS)
    html = redriver_client.get(redrive_url(ex.arn)).content.decode()
    assert XSS not in html
    assert "&lt;script&gt;" in html


# --- The detail page ------------------------------------------------------------------


def test_the_detail_page_offers_a_redrive_until_14_days_after_the_start(
    redriver_client: Client, time_machine: Any
) -> None:
    time_machine.move_to(T0 + dt.timedelta(days=2), tick=False)
    ex = execution_row(status="FAILED", started=T0)
    html = redriver_client.get(detail_url(ex.arn) + "?tz=Europe/Berlin").content.decode()
    assert 'id="redrive-button"' in html
    assert redrive_url(ex.arn) + "?tz=Europe%2FBerlin" in html
    # 14 days after 12:00 UTC, in Berlin's summer time.
    assert "Redrivable until" in html
    assert "2024-05-15 14:00:00 CEST" in html


def test_the_detail_page_has_no_redrive_for_viewers_or_what_cannot_be_redriven(
    client: Client, user: Any, redriver: Any, time_machine: Any
) -> None:
    time_machine.move_to(T0 + dt.timedelta(days=2), tick=False)
    failed = execution_row(status="FAILED", started=T0)
    client.force_login(user)
    html = client.get(detail_url(failed.arn)).content.decode()
    assert 'id="redrive-button"' not in html
    assert "Redrivable until" in html  # a fact, whoever looks
    client.force_login(redriver)
    for ex in (
        execution_row(status="SUCCEEDED", started=T0),
        execution_row(status="RUNNING", started=T0),
        execution_row(status="FAILED", started=T0 - dt.timedelta(days=13)),
        execution_row(status="FAILED", started=T0, redrive_status="NOT_REDRIVABLE"),
    ):
        html = client.get(detail_url(ex.arn)).content.decode()
        assert 'id="redrive-button"' not in html, ex.status
        assert "Redrivable until" not in html


# --- The history and timeline, split by attempt ---------------------------------------


def test_the_history_marks_where_each_attempt_begins_and_the_timeline_draws_them(
    viewer_client: Client,
) -> None:
    ex = execution_row(status="SUCCEEDED", started=T0, redrive_count=2)
    fail = ("executionFailedEventDetails", {"error": "Boom", "cause": "no table"})
    entered = ("stateEnteredEventDetails", {"name": "Charge", "input": "{}"})
    exited = ("stateExitedEventDetails", {"name": "Charge", "output": "{}"})
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", *entered),
            ("ExecutionFailed", *fail),
            ("ExecutionRedriven", "executionRedrivenEventDetails", {"redriveCount": 1}),
            ("TaskStateEntered", *entered),
            ("ExecutionFailed", *fail),
            ("ExecutionRedriven", "executionRedrivenEventDetails", {"redriveCount": 2}),
            ("TaskStateEntered", *entered),
            ("TaskStateExited", *exited),
            ("ExecutionSucceeded", "executionSucceededEventDetails", {"output": "{}"}),
        ],
        step=10,
    )
    url = reverse("execution_history", args=[ex.arn])
    html = viewer_client.get(url + "?tz=Europe/Berlin").content.decode()
    # In the event table: a row before each attempt's first event, in order.
    starts = [html.index(f'id="attempt-{n}"') for n in (1, 2, 3)]
    assert starts == sorted(starts)
    assert starts[0] < html.index('id="event-1"')
    assert html.index('id="event-3"') < starts[1] < html.index('id="event-4"')
    assert html.index('id="event-6"') < starts[2] < html.index('id="event-7"')
    # The redrive's time in the page's zone (T0 + 60 s, Berlin summer time).
    assert "redriven at 2024-05-01 14:01:00.000" in html
    # In the timeline: one band per attempt, each linked to where it begins.
    assert html.count('class="attempt attempt-') == 3
    assert "3 attempts:" in html
    for event_id in (1, 4, 7):
        assert f'{event_id}#event-{event_id}">attempt' in html
    assert ">attempt 3</a>" in html


def test_a_history_never_redriven_has_no_attempts(viewer_client: Client) -> None:
    ex = execution_row(status="FAILED", started=T0)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("ExecutionFailed", "executionFailedEventDetails", {"error": "Boom"}),
        ],
    )
    html = viewer_client.get(reverse("execution_history", args=[ex.arn])).content.decode()
    assert 'id="attempt-' not in html
    assert 'class="attempt attempt-' not in html


# --- The list's redriven / not redriven filter (AWS's redriveFilter) -------------------


def test_the_list_filters_redriven_and_not_redriven_and_the_link_keeps_it(
    viewer_client: Client,
) -> None:
    sm = state_machine_row("orders")
    again = execution_row(sm, name="redriven-once", status="FAILED", redrive_count=1)
    never = execution_row(sm, name="never-redriven", status="FAILED")
    url = reverse("execution_list")

    html = viewer_client.get(url, {"redriven": "REDRIVEN", "tz": "Europe/Berlin"}).content.decode()
    assert again.name in html
    assert never.name not in html
    assert '<option value="REDRIVEN" selected>' in html
    assert "Redrive:</span> <strong>redriven</strong>" in html

    html = viewer_client.get(url, {"redriven": "NOT_REDRIVEN"}).content.decode()
    assert never.name in html
    assert again.name not in html

    html = viewer_client.get(url).content.decode()
    assert again.name in html
    assert never.name in html


def test_the_api_takes_the_same_filter(viewer_client: Client) -> None:
    execution_row(name="redriven-once", status="FAILED", redrive_count=2)
    execution_row(name="never-redriven", status="FAILED")
    data = viewer_client.get(reverse("api_execution_list"), {"redriven": "REDRIVEN"}).json()
    assert [e["name"] for e in data["executions"]] == ["redriven-once"]


def test_a_bad_redriven_value_is_a_400(viewer_client: Client) -> None:
    response = viewer_client.get(reverse("execution_list"), {"redriven": "maybe"})
    assert response.status_code == 400
    assert "must be REDRIVEN or NOT_REDRIVEN" in response.content.decode()


# --- Bulk redrive from a filter, guarded as bulk stop is -------------------------------


@pytest.fixture
def eager() -> Iterator[None]:
    """Tasks run in this process as they are sent."""
    before = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = before


@pytest.fixture
def orders(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> dict[str, Any]:
    """Three failed orders, one that succeeded, and a failed report elsewhere; synced."""
    failing = make_state_machine("orders", FAIL)
    fine = make_state_machine("hello", PASS)
    reports = make_state_machine("reports", FAIL)
    failed = [start(failing, f"order-{i}") for i in range(3)]
    succeeded = start(fine, "hello-1")
    elsewhere = start(reports, "report-1")
    wait_until_finished(sfn, [*failed, succeeded, elsewhere])
    for arn in (*failed, succeeded, elsewhere):
        flows.import_execution(arn)
    return {"orders": failing, "failed": failed, "elsewhere": elsewhere}


def bulk_confirmation(response: Any, **overrides: Any) -> dict[str, Any]:
    assert response.status_code in (200, 409), response.content.decode()[:2000]
    data: dict[str, Any] = {}
    for name, value in response.context["selection_query"]:
        data.setdefault(name, []).append(value)
    initial = response.context["form"].initial
    data.update(
        {
            "batch_id": str(initial["batch_id"]),
            "expected": str(initial["expected"]),
            "digest": initial["digest"],
            "typed": str(initial["expected"]),
        }
    )
    data.update(overrides)
    return data


BULK = reverse("bulk_redrive")


def test_a_bulk_redrive_from_a_filter_redrives_each_failed_execution_once_under_one_batch_id(
    orders: dict[str, Any],
    redriver_client: Client,
    redriver: Any,
    fake_aws: Any,
    sfn: Any,
    eager: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # An old failure of the same state machine, only in the cache: past the 14 days.
    old = execution_row(
        Execution.objects.get(arn=orders["failed"][0]).state_machine,
        name="order-old",
        status="FAILED",
        started=timezone.now() - dt.timedelta(days=20),
    )
    dry = redriver_client.get(BULK, {"state_machine": orders["orders"], "tz": "Europe/Berlin"})
    assert dry.status_code == 200
    html = dry.content.decode()
    assert "Redrive 3 executions?" in html
    assert 'id="dry-count">3<' in html
    assert "order-old" not in html  # left out, counted
    assert dry.context["dry"].excluded == 1
    assert calls(fake_aws) == 0  # a dry run sends nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = redriver_client.post(BULK, bulk_confirmation(dry))
    batch = BulkStop.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("bulk_stop_progress", args=[batch.pk])
    assert (batch.action, batch.count, batch.username) == ("redrive", 3, "fixer")
    assert batch.finished_at is not None
    assert calls(fake_aws) == 3
    for arn in orders["failed"]:
        assert sfn.describe_execution(executionArn=arn)["redriveCount"] == 1
    assert sfn.describe_execution(executionArn=orders["elsewhere"])["redriveCount"] == 0
    assert old.pk not in [i.execution_id for i in batch.items.all()]
    # One audit row per execution, under the batch id, linked from its item.
    rows = ActionRequest.objects.filter(batch_id=batch.pk)
    assert sorted(r.target_arn for r in rows) == sorted(orders["failed"])
    assert {(r.kind, r.outcome) for r in rows} == {("REDRIVE", "DONE")}
    assert all(i.action_request_id for i in batch.items.all())

    progress = redriver_client.get(response["Location"]).content.decode()
    assert "Bulk redrive of 3 executions" in progress
    assert "redriven 3" in progress
    assert reverse("action_audit") + f"?batch={batch.pk}" in progress

    # The same confirmation again: the batch is running, nothing more is sent.
    again = redriver_client.post(BULK, bulk_confirmation(dry))
    assert again.status_code == 302
    assert BulkStop.objects.count() == 1
    assert calls(fake_aws) == 3


def test_a_bulk_redrive_refuses_a_wrong_count_and_a_changed_selection(
    orders: dict[str, Any], redriver_client: Client, fake_aws: Any, sfn: Any
) -> None:
    dry = redriver_client.get(BULK, {"state_machine": orders["orders"]})
    wrong = redriver_client.post(BULK, bulk_confirmation(dry, typed="30"))
    assert wrong.status_code == 400
    assert "type 3" in wrong.content.decode()
    # One is redriven from the console meanwhile: the count is 2 now.
    sfn.redrive_execution(executionArn=orders["failed"][0])
    Execution.objects.filter(arn=orders["failed"][0]).update(status="RUNNING", redrive_count=1)
    changed = redriver_client.post(BULK, bulk_confirmation(dry))
    assert changed.status_code == 409
    assert "holds 2 redrivable executions now, not 3" in changed.content.decode()
    assert not BulkStop.objects.exists()
    assert calls(fake_aws) == 1  # the console's


def test_a_bulk_redrive_needs_the_permission_and_csrf(
    orders: dict[str, Any], client: Client, operator: Any, redriver: Any, fake_aws: Any
) -> None:
    client.force_login(operator)  # may stop, not redrive
    page = client.get(BULK, {"state_machine": orders["orders"]})
    assert page.status_code == 403
    assert "executions.redrive_execution" in page.content.decode()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(redriver)
    assert strict.post(BULK, {"state_machine": orders["orders"]}).status_code == 403
    assert not BulkStop.objects.exists()


def test_a_bulk_redrive_with_a_bad_filter_is_a_400(redriver_client: Client) -> None:
    response = redriver_client.get(BULK, {"state_machine": "not-an-arn", "redriven": "nope"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "state_machine" in html
    assert "must be REDRIVEN or NOT_REDRIVEN" in html


def test_the_list_links_to_a_bulk_redrive_of_its_filter_for_redrivers_only(
    client: Client, user: Any, redriver: Any
) -> None:
    execution_row(status="FAILED")
    client.force_login(redriver)
    html = client.get(reverse("execution_list"), {"status": "FAILED"}).content.decode()
    assert 'id="bulk-redrive-link"' in html
    assert BULK + "?status=FAILED" in html
    client.force_login(user)
    html = client.get(reverse("execution_list"), {"status": "FAILED"}).content.decode()
    assert 'id="bulk-redrive-link"' not in html


def test_a_bulk_redrive_item_whose_author_lost_the_permission_is_not_sent(
    orders: dict[str, Any], redriver: Any, fake_aws: Any
) -> None:
    selection = bulk.Selection(filters=Filters(state_machine_arn=orders["orders"]))
    ids = bulk.snapshot_ids(selection, bulk.REDRIVE)
    batch = bulk.start(
        batch_id=uuid.uuid4(),
        user=redriver,
        selection=selection,
        ids=ids,
        error="",
        cause="",
        action=bulk.REDRIVE,
    )
    redriver.user_permissions.clear()
    items = list(batch.items.values_list("id", flat=True))
    bulk.stop_items(batch.pk, items)
    assert calls(fake_aws) == 0
    assert all("no longer has the permission to redrive" in i.note for i in batch.items.all())
    assert bulk.progress(batch).not_sent == 3
    batch.refresh_from_db()
    assert batch.finished_at is not None


def test_the_bulk_redrive_dry_run_costs_a_bounded_number_of_queries(
    redriver_client: Client, django_assert_max_num_queries: Any, settings: Any
) -> None:
    sm = state_machine_row("orders")
    for i in range(bulk.SHOWN + 20):
        execution_row(sm, name=f"order-{i}", status="FAILED", redrive_count=i % 2)
    redriver_client.get(reverse("execution_list"))  # the session, the sync bar
    # session, user, the permission, the ids, the rows shown, those left out,
    # and the sync bar's two (none with Redis).
    bar = 0 if settings.REDIS_URL else 2
    with django_assert_max_num_queries(6 + bar):
        response = redriver_client.get(BULK, {"state_machine": sm.arn})
    assert response.status_code == 200
    assert response.context["dry"].count == bulk.SHOWN + 20
    assert response.content.decode().count("order-") >= bulk.SHOWN


def test_a_bulk_selection_keeps_every_filter_of_the_list_in_its_confirmation() -> None:
    """The confirmation posts the selection again from its hidden fields: a
    filter they lost would make the POST select more than the dry run."""
    sm = "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
    filters = Filters(
        statuses=("FAILED",),
        state_machine_arn=sm,
        version_arn=f"{sm}:3",
        alias_arn=f"{sm}:live",
        q="order",
        redriven=False,
    )
    query = bulk.Selection(filters=filters).query()
    assert ("version", f"{sm}:3") in query
    assert ("alias", f"{sm}:live") in query
    assert ("redriven", "NOT_REDRIVEN") in query
    form = SelectionForm(QueryDict(urlencode(query)))
    assert form.is_valid(), form.errors
    assert form.selection().filters == filters
    described = bulk.Selection(filters=filters).describe(bulk.REDRIVE)
    assert "version 3" in described
    assert "alias live" in described
    assert "never redriven" in described
