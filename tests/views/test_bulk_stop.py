"""/bulk-stop/: the dry run, the typed confirmation, the batch of throttled
stops, and its progress page."""

from __future__ import annotations

import html
import time
import uuid
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from executions import tasks
from executions.actions import bulk
from executions.models import BulkStop, BulkStopItem, Execution, StopRequest
from executions.reads.queries import Filters
from sfnui.celery import app as celery_app
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

URL = reverse("bulk_stop")
TWO_WAITS = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Wait", "Seconds": 3600, "Next": "Hold"},
        "Hold": {"Type": "Wait", "Seconds": 3600, "End": True},
    },
}


def progress_url(batch_id: Any) -> str:
    return reverse("bulk_stop_progress", args=[batch_id])


def calls(fake_aws: Any) -> dict[str, Any]:
    result: dict[str, Any] = fake_aws.post("/fakeaws/calls", {})
    return result


def stop_calls(fake_aws: Any, arn: str | None = None) -> int:
    found = calls(fake_aws)
    if arn is None:
        return int(found["calls"].get("StopExecution", 0))
    return int(found["by_execution"].get(arn, {}).get("StopExecution", 0))


def run_sync() -> None:
    call_command("sync", stdout=StringIO(), stderr=StringIO())


def confirmation(response: Any, **overrides: Any) -> dict[str, Any]:
    """What the dry run's form posts: its selection and its hidden fields,
    the count typed as shown, and a reason."""
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
            "error": "Ops.Runaway",
            "cause": "oncall: INC-7, runaway nightly jobs",
        }
    )
    data.update(overrides)
    return data


@pytest.fixture
def eager() -> Iterator[None]:
    """Tasks run in this process as they are sent (the worker's side is
    tested by tests/e2e/test_bulk_stop.py with a real worker)."""
    before = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = before


@pytest.fixture
def nightly(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> dict[str, Any]:
    """Three running runaways of nightly-etl, one of its executions already
    stopped, and a running execution of another state machine; synced."""
    etl = make_state_machine("nightly-etl", LONG_WAIT)
    other = make_state_machine("reports", LONG_WAIT)
    hello = make_state_machine("hello", PASS)
    running = [start(etl, f"etl-{i}") for i in range(3)]
    finished = start(etl, "etl-done")
    sfn.stop_execution(executionArn=finished, error="earlier", cause="stopped before")
    elsewhere = start(other, "report-1")
    wait_until_finished(sfn, [start(hello, "hello-1")])
    run_sync()
    assert Execution.objects.filter(arn__in=running, status="RUNNING").count() == 3
    return {
        "etl": etl,
        "running": running,
        "finished": finished,
        "elsewhere": elsewhere,
        # The fixture's own stop of etl-done.
        "stops": stop_calls(fake_aws),
    }


# --- The whole journey on synced moto data --------------------------------------------------


def test_a_bulk_stop_from_a_filter_stops_each_running_execution_once_under_one_batch_id(
    nightly: dict[str, Any],
    operator_client: Client,
    operator: Any,
    fake_aws: Any,
    sfn: Any,
    eager: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    dry = operator_client.get(URL, {"state_machine": nightly["etl"]})

    assert dry.status_code == 200
    body = dry.content.decode()
    assert dry.context["dry"].count == 3
    assert 'id="dry-count">3<' in body
    for i in range(3):
        assert f"etl-{i}" in body
    assert "etl-done" not in body
    assert "report-1" not in body
    # The finished one is left out, and the page says so.
    assert "<strong>1</strong> finished execution in the selection" in body
    assert "Stopped by oncall via sfnui at " in html.unescape(body)
    assert stop_calls(fake_aws) == nightly["stops"]  # a dry run sends nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(URL, confirmation(dry))

    batch = BulkStop.objects.get()
    assert response.status_code == 302
    assert response["Location"] == progress_url(batch.pk)
    assert (batch.count, batch.username, batch.user) == (3, "oncall", operator)
    assert batch.finished_at is not None
    attempts = StopRequest.objects.filter(execution__arn__in=nightly["running"])
    assert sorted(a.outcome for a in attempts) == ["STOPPED"] * 3
    assert {a.batch_id for a in attempts} == {batch.pk}
    assert StopRequest.objects.count() == 3
    assert stop_calls(fake_aws) == nightly["stops"] + 3
    for arn in nightly["running"]:
        assert stop_calls(fake_aws, arn) == 1
        d = sfn.describe_execution(executionArn=arn)
        assert (d["status"], d["error"], d["cause"]) == (
            "ABORTED",
            "Ops.Runaway",
            "oncall: INC-7, runaway nightly jobs",
        )
    assert sfn.describe_execution(executionArn=nightly["elsewhere"])["status"] == "RUNNING"

    page = operator_client.get(progress_url(batch.pk))
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count('class="result-STOPPED"') == 3
    assert "stopped 3" in text
    assert "Done" in text
    assert 'hx-trigger="every' not in text  # finished: no more polling
    audit = operator_client.get(reverse("audit_log"), {"batch": str(batch.pk)})
    assert audit.context["total"] == 3


def test_running_a_chunk_again_sends_no_second_stop(
    nightly: dict[str, Any], operator: Any, fake_aws: Any
) -> None:
    selection = bulk.Selection(filters=Filters(state_machine_arn=nightly["etl"]))
    ids = bulk.snapshot_ids(selection)
    batch = bulk.start(
        batch_id=uuid.uuid4(), user=operator, selection=selection, ids=ids, error="E", cause="C"
    )
    item_ids = list(batch.items.values_list("pk", flat=True))

    tasks.stop_bulk_items.run(str(batch.pk), item_ids)
    assert stop_calls(fake_aws) == nightly["stops"] + 3
    first = dict(BulkStopItem.objects.values_list("pk", "stop_request_id"))

    # Delivered again (acks_late after a lost worker): nothing more is sent.
    tasks.stop_bulk_items.run(str(batch.pk), item_ids)
    # And killed after AWS answered but before the item was linked: the
    # attempt is found again by its token, not sent again.
    BulkStopItem.objects.update(stop_request=None)
    tasks.stop_bulk_items.run(str(batch.pk), item_ids)

    assert stop_calls(fake_aws) == nightly["stops"] + 3
    assert StopRequest.objects.count() == 3
    assert dict(BulkStopItem.objects.values_list("pk", "stop_request_id")) == first
    expected = {bulk.request_token(batch.pk, arn) for arn in nightly["running"]}
    assert set(StopRequest.objects.values_list("request_token", flat=True)) == expected


def test_executions_that_finished_meanwhile_are_refused_without_a_stop(
    nightly: dict[str, Any], operator: Any, fake_aws: Any, sfn: Any
) -> None:
    finished_in_cache, finished_in_aws, still_running = nightly["running"]
    selection = bulk.Selection(filters=Filters(state_machine_arn=nightly["etl"]))
    batch = bulk.start(
        batch_id=uuid.uuid4(),
        user=operator,
        selection=selection,
        ids=bulk.snapshot_ids(selection),
        error="E",
        cause="C",
    )
    # After the confirmation, before the worker: one finished and the sync
    # saw it; one finished and the cache does not know yet.
    sfn.stop_execution(executionArn=finished_in_cache, error="x", cause="by someone else")
    sfn.stop_execution(executionArn=finished_in_aws, error="x", cause="by someone else")
    run_sync()
    Execution.objects.filter(arn=finished_in_aws).update(status="RUNNING", stop_date=None)
    before = calls(fake_aws)["by_execution"]

    bulk.stop_items(batch.pk, list(batch.items.values_list("pk", flat=True)))

    after = calls(fake_aws)["by_execution"]
    outcome = dict(StopRequest.objects.values_list("execution__arn", "outcome"))
    assert outcome == {
        finished_in_cache: "REFUSED",
        finished_in_aws: "REFUSED",
        still_running: "STOPPED",
    }

    def sent(arn: str, op: str) -> int:
        return int(after.get(arn, {}).get(op, 0)) - int(before.get(arn, {}).get(op, 0))

    # Known finished: nothing at all is sent. Finished in AWS only: the live
    # re-check says so, and no StopExecution follows.
    assert (
        sent(finished_in_cache, "DescribeExecution"),
        sent(finished_in_cache, "StopExecution"),
    ) == (0, 0)
    assert sent(finished_in_aws, "StopExecution") == 0
    assert sent(finished_in_aws, "DescribeExecution") >= 1
    assert sent(still_running, "StopExecution") == 1
    refused = StopRequest.objects.get(execution__arn=finished_in_aws)
    assert "AWS says ABORTED" in refused.aws_response
    assert bulk.progress(batch) == bulk.Progress(stopped=1, refused=2)


def test_the_stops_are_paced_within_the_stop_execution_budget(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    operator: Any,
    settings: Any,
) -> None:
    etl = make_state_machine("nightly-etl", LONG_WAIT)
    arns = [start(etl, f"etl-{i}") for i in range(6)]
    run_sync()
    # AWS lets 2 stops through at once and 4 a second after that. Our budget
    # takes the same burst but refills at half that rate: a token is taken when
    # the call is sent and AWS counts it when the call arrives, so a budget of
    # exactly AWS's rate is throttled whenever one call is slower than the next.
    fake_aws.app.configure(quotas={"StopExecution": (2, 4)})
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "StopExecution": (2.0, 2.0)}
    selection = bulk.Selection(filters=Filters(state_machine_arn=etl))
    batch = bulk.start(
        batch_id=uuid.uuid4(),
        user=operator,
        selection=selection,
        ids=bulk.snapshot_ids(selection),
        error="E",
        cause="C",
    )

    began = time.monotonic()
    bulk.stop_items(batch.pk, list(batch.items.values_list("pk", flat=True)))
    took = time.monotonic() - began

    assert sorted(StopRequest.objects.values_list("outcome", flat=True)) == ["STOPPED"] * 6
    assert stop_calls(fake_aws) == 6
    # Four of them waited for a token (half a second each) instead of being
    # throttled by AWS.
    assert took >= 1.9
    assert calls(fake_aws)["throttled"].get("StopExecution", 0) == 0
    assert {StopRequest.objects.get(execution__arn=a).outcome for a in arns} == {"STOPPED"}


def test_a_failed_stop_shows_aws_error_on_the_progress_page(
    fake_aws: Any, operator: Any, operator_client: Client
) -> None:
    # In the cache, but AWS has never heard of it.
    ghost = execution_row(state_machine_row("gone"), "ghost", "RUNNING")
    selection = bulk.Selection(picked=(ghost.pk,))
    batch = bulk.start(
        batch_id=uuid.uuid4(),
        user=operator,
        selection=selection,
        ids=[ghost.pk],
        error="E",
        cause="C",
    )
    bulk.stop_items(batch.pk, list(batch.items.values_list("pk", flat=True)))
    body = operator_client.get(progress_url(batch.pk)).content.decode()
    assert 'class="result-FAILED"' in body
    assert "AWS does not know this execution" in body
    assert "failed 1" in body
    assert stop_calls(fake_aws) == 0


# --- The guard rails ----------------------------------------------------------------------


def test_a_wrong_typed_count_is_refused_and_nothing_is_sent(
    nightly: dict[str, Any], operator_client: Client, fake_aws: Any
) -> None:
    dry = operator_client.get(URL, {"state_machine": nightly["etl"]})
    for typed in ("2", "three", "33", "3 executions"):
        response = operator_client.post(URL, confirmation(dry, typed=typed))
        assert response.status_code == 400, typed
        text = html.unescape(response.content.decode())
        assert "type 3 (the number of executions listed above) to confirm" in text
    assert operator_client.post(URL, confirmation(dry, typed="")).status_code == 400
    assert not BulkStop.objects.exists()
    assert stop_calls(fake_aws) == nightly["stops"]


def test_a_count_typed_with_a_thousands_separator_is_accepted(
    operator_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm = state_machine_row("orders")
    for i in range(3):
        execution_row(sm, f"r-{i}", "RUNNING")
    sent: list[Any] = []
    monkeypatch.setattr(tasks.stop_bulk_items, "delay", lambda *a: sent.append(a))
    dry = operator_client.get(URL, {"state_machine": sm.arn})
    response = operator_client.post(URL, confirmation(dry, typed=" 3 "))
    assert response.status_code == 302
    assert BulkStop.objects.get().count == 3


def test_when_the_selection_changed_the_new_count_is_shown_and_asked_for(
    operator_client: Client, fake_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks.stop_bulk_items, "delay", lambda *a: None)
    sm = state_machine_row("orders")
    rows = [execution_row(sm, f"r-{i}", "RUNNING") for i in range(3)]
    dry = operator_client.get(URL, {"state_machine": sm.arn})
    Execution.objects.filter(pk=rows[0].pk).update(status="SUCCEEDED")

    again = operator_client.post(URL, confirmation(dry))

    assert again.status_code == 409
    assert "it holds 2 running executions now, not 3" in again.content.decode()
    assert again.context["form"].initial["expected"] == 2
    assert not BulkStop.objects.exists()
    # Same count, other executions (one finished, one started): asked again too.
    execution_row(sm, "r-new", "RUNNING")
    Execution.objects.filter(pk=rows[1].pk).update(status="SUCCEEDED")
    swapped = operator_client.post(URL, confirmation(again))
    assert swapped.status_code == 409
    assert not BulkStop.objects.exists()
    # Confirmed with what it shows now: started.
    response = operator_client.post(URL, confirmation(swapped))
    assert response.status_code == 302
    batch = BulkStop.objects.get()
    assert set(batch.items.values_list("execution__name", flat=True)) == {"r-2", "r-new"}


def test_the_same_confirmation_posted_twice_starts_one_batch(
    operator_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(tasks.stop_bulk_items, "delay", lambda *a: sent.append(a))
    sm = state_machine_row("orders")
    for i in range(3):
        execution_row(sm, f"r-{i}", "RUNNING")
    data = confirmation(operator_client.get(URL, {"state_machine": sm.arn}))
    first = operator_client.post(URL, data)
    second = operator_client.post(URL, data)
    assert first["Location"] == second["Location"]
    assert BulkStop.objects.count() == 1
    assert BulkStopItem.objects.count() == 3


def test_a_batch_is_capped(operator_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "CAP", 2)
    sm = state_machine_row("orders")
    for i in range(3):
        execution_row(sm, f"r-{i}", "RUNNING")
    dry = operator_client.get(URL, {"state_machine": sm.arn})
    body = dry.content.decode()
    assert dry.status_code == 200
    assert "A bulk stop stops at most 2 executions." in body
    assert "more than 2" in body
    assert 'name="typed"' not in body
    data = {
        "state_machine": sm.arn,
        "batch_id": str(uuid.uuid4()),
        "expected": "2",
        "digest": "x",
        "typed": "2",
        "error": "E",
        "cause": "C",
    }
    assert operator_client.post(URL, data).status_code == 400
    assert not BulkStop.objects.exists()


def test_picked_executions_leave_out_the_finished_ones_and_say_so(operator_client: Client) -> None:
    sm = state_machine_row("orders")
    a = execution_row(sm, "a", "RUNNING")
    b = execution_row(sm, "b", "PENDING_REDRIVE")
    done = execution_row(sm, "done", "FAILED")
    execution_row(sm, "not-picked", "RUNNING")
    response = operator_client.get(URL, {"execution": [a.pk, b.pk, done.pk]})
    assert response.context["dry"].count == 2
    body = response.content.decode()
    assert "3 executions picked one by one" in body
    assert "<strong>1</strong> finished execution in the selection" in body
    assert "not-picked" not in body


def test_a_group_of_the_runaway_finder_is_one_state_of_one_state_machine(
    operator_client: Client,
) -> None:
    sm = state_machine_row("orders")
    for i, state in enumerate(["Sleep", "Sleep", "Hold"]):
        ex = execution_row(sm, f"r-{i}", "RUNNING")
        events(
            ex,
            [
                ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
                ("WaitStateEntered", "stateEnteredEventDetails", {"name": state}),
            ],
        )
    execution_row(state_machine_row("other"), "o", "RUNNING")
    response = operator_client.get(URL, {"state_machine": sm.arn, "in_state": "Sleep"})
    assert response.context["dry"].count == 2
    assert "in the state Sleep" in response.content.decode()
    assert {ex.state for ex in response.context["dry"].shown} == {"Sleep"}


def test_nothing_running_in_the_selection_offers_nothing_to_confirm(
    operator_client: Client,
) -> None:
    execution_row(state_machine_row("orders"), "done", "SUCCEEDED")
    body = operator_client.get(URL, {"status": "SUCCEEDED"}).content.decode()
    assert "Nothing to stop" in body
    assert 'name="typed"' not in body


@pytest.mark.parametrize(
    "params",
    [
        {"execution": "abc"},
        {"execution": "-4"},
        {"status": "NOPE"},
        {"started_after": "yesterday"},
        {"state_machine": "not-an-arn"},
        {"in_state": "x" * 81},
    ],
)
def test_a_bad_selection_is_a_400_that_says_why(
    operator_client: Client, params: dict[str, str]
) -> None:
    response = operator_client.get(URL, params)
    assert response.status_code == 400
    assert "Bad value for" in response.content.decode()


# --- Who may ----------------------------------------------------------------------------------


def test_a_viewer_may_neither_see_the_dry_run_nor_confirm(
    viewer_client: Client, fake_aws: Any
) -> None:
    sm = state_machine_row("orders")
    ex = execution_row(sm, "r", "RUNNING")
    dry = viewer_client.get(URL, {"state_machine": sm.arn})
    assert dry.status_code == 403
    assert "executions.stop_execution" in dry.content.decode()
    post = viewer_client.post(
        URL,
        {
            "execution": ex.pk,
            "batch_id": str(uuid.uuid4()),
            "expected": "1",
            "digest": bulk.digest([ex.pk]),
            "typed": "1",
            "error": "E",
            "cause": "C",
        },
    )
    assert post.status_code == 403
    assert not BulkStop.objects.exists()
    assert stop_calls(fake_aws) == 0


def test_the_confirmation_needs_the_csrf_token(operator: Any, fake_aws: Any) -> None:
    sm = state_machine_row("orders")
    ex = execution_row(sm, "r", "RUNNING")
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    data = {
        "execution": ex.pk,
        "batch_id": str(uuid.uuid4()),
        "expected": "1",
        "digest": bulk.digest([ex.pk]),
        "typed": "1",
        "error": "E",
        "cause": "C",
    }
    assert client.post(URL, data).status_code == 403
    assert not BulkStop.objects.exists()
    # With the token of the dry run's form it goes through.
    dry = client.get(URL, {"execution": ex.pk})
    data["csrfmiddlewaretoken"] = dry.context["csrf_token"]
    assert client.post(URL, data).status_code == 302


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    for response in (client.get(URL), client.post(URL, {})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_other_methods_are_refused(operator_client: Client) -> None:
    assert operator_client.put(URL).status_code == 405
    batch = BulkStop.objects.create(id=uuid.uuid4(), username="x", description="d", count=0)
    assert operator_client.post(progress_url(batch.pk)).status_code == 405
    resume = reverse("bulk_stop_resume", args=[batch.pk])
    assert operator_client.get(resume).status_code == 405


def test_an_unknown_batch_is_a_404(operator_client: Client) -> None:
    assert operator_client.get(progress_url(uuid.uuid4())).status_code == 404


def test_a_viewer_may_not_follow_someone_elses_batch(viewer_client: Client, operator: Any) -> None:
    """The progress page shows the cause typed for the whole batch: it is
    part of the audit (issue 10, item 9). Whether the batch exists or not,
    the answer is the same 403."""
    batch = BulkStop.objects.create(
        id=uuid.uuid4(),
        user=operator,
        username="oncall",
        description="d",
        count=0,
        cause="INC-9: the vendor's outage",
    )
    for batch_id in (batch.pk, uuid.uuid4()):
        page = viewer_client.get(progress_url(batch_id))
        assert page.status_code == 403
        body = page.content.decode()
        assert "executions.stop_execution" in body
        assert "INC-9" not in body
    assert viewer_client.post(reverse("bulk_stop_resume", args=[batch.pk])).status_code == 403


def test_an_auditor_may_follow_a_batch_but_not_resume_it(
    viewer_client: Client, user: Any, operator: Any
) -> None:
    user.user_permissions.add(Permission.objects.get(codename="view_stoprequest"))
    batch = BulkStop.objects.create(
        id=uuid.uuid4(), user=operator, username="oncall", description="d", count=0
    )
    page = viewer_client.get(progress_url(batch.pk))
    assert page.status_code == 200
    assert "Resume" not in page.content.decode()
    assert viewer_client.post(reverse("bulk_stop_resume", args=[batch.pk])).status_code == 403


def test_the_author_may_follow_their_batch_after_losing_the_permission(
    operator_client: Client, operator: Any
) -> None:
    batch = BulkStop.objects.create(
        id=uuid.uuid4(), user=operator, username="oncall", description="d", count=0
    )
    operator.user_permissions.clear()
    assert operator_client.get(progress_url(batch.pk)).status_code == 200
    assert operator_client.get(progress_url(uuid.uuid4())).status_code == 403


# --- The worker side's failures -------------------------------------------------------------------


def test_nothing_is_sent_for_someone_who_lost_the_permission(operator: Any, fake_aws: Any) -> None:
    sm = state_machine_row("orders")
    rows = [execution_row(sm, f"r-{i}", "RUNNING") for i in range(2)]
    selection = bulk.Selection(picked=tuple(r.pk for r in rows))
    batch = bulk.start(
        batch_id=uuid.uuid4(),
        user=operator,
        selection=selection,
        ids=[r.pk for r in rows],
        error="E",
        cause="C",
    )
    operator.user_permissions.clear()
    bulk.stop_items(batch.pk, list(batch.items.values_list("pk", flat=True)))
    batch.refresh_from_db()
    assert batch.finished_at is not None
    assert bulk.progress(batch) == bulk.Progress(not_sent=2)
    assert "no longer has the permission" in batch.items.first().note  # type: ignore[union-attr]
    assert StopRequest.objects.count() == 0
    assert stop_calls(fake_aws) == 0


def test_a_broker_that_is_down_is_recorded_and_resume_sends_what_waits(
    operator: Any,
    operator_client: Client,
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    eager: None,
) -> None:
    etl = make_state_machine("nightly-etl", LONG_WAIT)
    arns = [start(etl, f"etl-{i}") for i in range(2)]
    run_sync()

    def down(*args: Any) -> None:
        raise ConnectionError("broker unreachable")

    selection = bulk.Selection(filters=Filters(state_machine_arn=etl))
    with monkeypatch.context() as patched:
        patched.setattr(tasks.stop_bulk_items, "delay", down)
        batch = bulk.start(
            batch_id=uuid.uuid4(),
            user=operator,
            selection=selection,
            ids=bulk.snapshot_ids(selection),
            error="E",
            cause="C",
        )
        bulk.enqueue(batch)
    batch.refresh_from_db()
    assert "Could not hand the stops to a worker" in batch.enqueue_error
    assert "Resume" in operator_client.get(progress_url(batch.pk)).content.decode()

    response = operator_client.post(reverse("bulk_stop_resume", args=[batch.pk]))

    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.enqueue_error == ""
    assert batch.finished_at is not None
    assert stop_calls(fake_aws) == 2
    assert sorted(StopRequest.objects.values_list("execution__arn", flat=True)) == sorted(arns)


# --- Cost -------------------------------------------------------------------------------------


def test_the_dry_run_and_the_progress_page_cost_a_bounded_number_of_queries(
    operator_client: Client, operator: Any
) -> None:
    sm = state_machine_row("orders")
    for i in range(150):
        execution_row(sm, f"r-{i}", "RUNNING")
    operator_client.get(URL, {"state_machine": sm.arn})
    with CaptureQueriesContext(connection) as dry:
        response = operator_client.get(URL, {"state_machine": sm.arn})
    assert response.context["dry"].count == 150
    assert len(response.context["dry"].shown) == bulk.SHOWN
    # session, user, permissions (2), ids, the shown ones, the finished ones, sync bar (2).
    assert len(dry.captured_queries) <= 9

    selection = bulk.Selection(filters=Filters(state_machine_arn=sm.arn))
    batch = bulk.start(
        batch_id=uuid.uuid4(),
        user=operator,
        selection=selection,
        ids=bulk.snapshot_ids(selection),
        error="E",
        cause="C",
    )
    with CaptureQueriesContext(connection) as progress:
        page = operator_client.get(progress_url(batch.pk))
    assert page.content.decode().count('class="result-waiting"') == 150
    # session, user, batch, items, counts, permissions (2), sync bar (2).
    assert len(progress.captured_queries) <= 9


# --- The list page ------------------------------------------------------------------------------


def test_the_list_offers_picking_running_rows_to_operators_only(
    operator_client: Client, user: Any
) -> None:
    viewer_client = Client()
    viewer_client.force_login(user)
    sm = state_machine_row("orders")
    running = execution_row(sm, "r", "RUNNING")
    execution_row(sm, "done", "SUCCEEDED")
    url = reverse("execution_list")
    body = html.unescape(operator_client.get(url, {"state_machine": sm.arn}).content.decode())
    assert f'name="execution" value="{running.pk}" form="bulk-select"' in body
    assert body.count('name="execution"') == 1  # the finished one cannot be picked
    assert f"/bulk-stop/?state_machine={sm.arn}" in body.replace("%3A", ":")
    assert "Stop all running that match these filters…" in body
    viewer_body = viewer_client.get(url, {"state_machine": sm.arn}).content.decode()
    assert 'name="execution"' not in viewer_body
    assert "bulk-select" not in viewer_body


def test_a_selection_by_account_and_region_stays_that_selection_through_the_confirmation(
    operator_client: Client,
) -> None:
    prod = state_machine_row("nightly", account="210987654321", region="eu-west-1")
    home = state_machine_row("nightly")
    ours = [execution_row(prod, f"p-{i}", "RUNNING") for i in range(2)]
    execution_row(home, "h-1", "RUNNING")
    dry = operator_client.get(URL, {"account": "210987654321", "region": "eu-west-1"})
    assert dry.status_code == 200
    assert dry.context["dry"].count == 2
    assert sorted(dry.context["dry"].ids) == sorted(e.pk for e in ours)
    query = dry.context["selection_query"]
    assert ("account", "210987654321") in query
    assert ("region", "eu-west-1") in query
    selection = dry.context["dry"].selection
    assert "in account 210987654321 in eu-west-1" in selection.describe()
    assert selection.snapshot()["accounts"] == ["210987654321"]
    assert selection.snapshot()["regions"] == ["eu-west-1"]
