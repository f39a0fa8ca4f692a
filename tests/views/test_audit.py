"""/audit/: every stop attempt, filterable, for those who may stop executions
or read the audit (executions.view_stoprequest); a 403 for anyone else."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from executions.models import Execution, StopRequest
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

URL = reverse("audit_log")
XSS = '<script>alert("x")</script>'


def attempt(
    ex: Execution, username: str, outcome: str, minutes_ago: float = 1, **fields: Any
) -> StopRequest:
    row = StopRequest.objects.create(
        execution=ex,
        username=username,
        outcome=outcome,
        error=fields.pop("error", "sfnui.ManualStop"),
        cause=fields.pop("cause", f"Stopped by {username}"),
        status_before=fields.pop("status_before", "RUNNING"),
        request_token=uuid.uuid4(),
        **fields,
    )
    # requested_at is auto_now_add: set it afterwards.
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    StopRequest.objects.filter(pk=row.pk).update(requested_at=at)
    row.requested_at = at
    return row


@pytest.fixture
def history() -> dict[str, Any]:
    etl, web = state_machine_row("etl"), state_machine_row("web")
    a = execution_row(etl, name="etl-a", status="ABORTED")
    b = execution_row(web, name="web-b", status="SUCCEEDED")
    batch = uuid.uuid4()
    return {
        "etl": etl,
        "web": web,
        "batch": batch,
        "stopped": attempt(a, "alice", "STOPPED", 90, batch_id=batch),
        "refused": attempt(b, "bob", "REFUSED", 30, aws_response="Already finished"),
        "failed": attempt(a, "alice", "FAILED", 5, aws_response="AWS unreachable: nothing"),
    }


@pytest.fixture
def auditor_client(client: Client, django_user_model: Any) -> Client:
    """Someone granted “Can view stop request”, who may not stop."""
    person = django_user_model.objects.create_user("auditor", password="auditor-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="view_stoprequest"))
    client.force_login(person)
    return client


def names(response: Any) -> list[int]:
    return [a.pk for a in response.context["attempts"]]


def test_an_auditor_sees_every_attempt_newest_first(
    auditor_client: Client, history: dict[str, Any]
) -> None:
    response = auditor_client.get(URL)
    assert response.status_code == 200
    assert names(response) == [history[k].pk for k in ("failed", "refused", "stopped")]
    html = response.content.decode()
    for outcome in ("STOPPED", "REFUSED", "FAILED"):
        assert f"outcome-{outcome}" in html
    assert "AWS unreachable: nothing" in html
    assert reverse("execution_detail", args=[history["stopped"].execution.arn]) in html
    assert response.context["total"] == 3


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_only_answers_get(auditor_client: Client) -> None:
    assert auditor_client.post(URL).status_code == 405


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"user": "ALICE"}, ["failed", "stopped"]),
        ({"outcome": "REFUSED"}, ["refused"]),
        ({"outcome": ["REFUSED", "STOPPED"]}, ["refused", "stopped"]),
        ({"state_machine": "arn:aws:states:us-east-1:123456789012:stateMachine:web"}, ["refused"]),
        (
            {"execution": "arn:aws:states:us-east-1:123456789012:execution:etl:etl-a"},
            ["failed", "stopped"],
        ),
        ({"requested_after": "__60m"}, ["failed", "refused"]),
        ({"requested_before": "__60m"}, ["stopped"]),
        ({"requested_after": "__60m", "requested_before": "__10m"}, ["refused"]),
        ({"batch": "__batch"}, ["stopped"]),
        ({"user": "nobody"}, []),
    ],
)
def test_filters(
    auditor_client: Client, history: dict[str, Any], query: dict[str, Any], expected: list[str]
) -> None:
    now = timezone.now()
    for key, value in list(query.items()):
        if value == "__batch":
            query[key] = str(history["batch"])
        elif isinstance(value, str) and value.startswith("__") and value.endswith("m"):
            at = now - dt.timedelta(minutes=int(value[2:-1]))
            query[key] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    response = auditor_client.get(URL + "?" + urlencode(query, doseq=True))
    assert response.status_code == 200
    assert names(response) == [history[k].pk for k in expected]
    assert response.context["total"] == len(expected)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ({"outcome": "EXPLODED"}, "Select a valid choice"),
        ({"requested_after": "yesterday"}, "Enter a valid date/time"),
        ({"requested_after": "2026-02-30T00:00"}, "Enter a valid date/time"),
        ({"requested_before": "9999-12-31T23:00-04:00"}, "between the years 1 and 9999"),
        ({"requested_after": "0001-01-01T00:30+05:00"}, "between the years 1 and 9999"),
        ({"batch": "not-a-uuid"}, "Enter a valid UUID"),
        ({"state_machine": "web"}, "Not a Step Functions state machine ARN"),
        (
            {"execution": "arn:aws:states:us-east-1:1:execution:a:b"},
            "Not a Step Functions execution",
        ),
        ({"cursor": "abc"}, "Not a page of this list"),
        ({"cursor": "99999999999999999999999-1"}, "Not a page of this list"),
        ({"cursor": "-5-1"}, "Not a page of this list"),
        ({"user": "u" * 151}, "at most 150 characters"),
        (
            {"requested_after": "2026-02-02T00:00", "requested_before": "2026-02-01T00:00"},
            "must be earlier",
        ),
    ],
)
def test_bad_filters_are_a_400_that_says_which(
    auditor_client: Client, history: dict[str, Any], query: dict[str, str], complaint: str
) -> None:
    response = auditor_client.get(URL + "?" + urlencode(query))
    assert response.status_code == 400
    assert complaint in response.content.decode()


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31T08:00",  # in the page's zone
        "2026-01-31",
        "2026-01-31T08:00:00.123456789Z",  # nanoseconds, as logs write them
        "20260131T080000+01:00",
        "01/31/2026 08:00",  # not ISO 8601: refused by both
        "2026-03-29T02:30",  # does not exist in Berlin: read as the list reads it
        "9999-12-31T23:59",  # beyond 9999 once in UTC: refused by both
    ],
)
def test_the_audit_reads_a_time_as_the_executions_list_does(text: str) -> None:
    """One field (web/forms.py IsoDateTimeField) for both forms, each with its
    own words for a bad value."""
    from executions.views.stop import AuditFilterForm
    from executions.web.forms import ExecutionFilterForm

    with timezone.override("America/New_York" if text.startswith("9999") else "Europe/Berlin"):
        audit = AuditFilterForm({"requested_after": text})
        listing = ExecutionFilterForm({"started_after": text})
        assert audit.is_valid() == listing.is_valid()
    if listing.is_valid():
        assert audit.cleaned_data["requested_after"] == listing.cleaned_data["started_after"]
    else:
        assert str(audit.errors["requested_after"][0]).startswith("Enter a ")
        assert "is not an ISO 8601 time" in str(listing.errors["started_after"][0])


def test_it_pages_by_keyset_without_gaps_or_repeats(
    auditor_client: Client, django_assert_max_num_queries: Any
) -> None:
    ex = execution_row(status="ABORTED")
    made = [attempt(ex, f"user{i}", "STOPPED", minutes_ago=i) for i in range(120)]
    # Two at the very same instant: the id breaks the tie.
    StopRequest.objects.filter(pk=made[50].pk).update(requested_at=made[49].requested_at)
    seen: list[int] = []
    url = URL + "?outcome=STOPPED"
    pages = 0
    while url:
        with django_assert_max_num_queries(8):
            response = auditor_client.get(url)
        assert response.status_code == 200
        seen.extend(names(response))
        pages += 1
        nxt = response.context["next_query"]
        url = URL + "?" + nxt if nxt else ""
        if nxt:
            assert "outcome=STOPPED" in nxt
    assert pages == 3
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == {a.pk for a in made}


def test_it_escapes_what_people_typed(auditor_client: Client) -> None:
    sm = state_machine_row("web")
    type(sm).objects.filter(pk=sm.pk).update(name=XSS)
    ex = execution_row(sm, name="w-1", status="ABORTED")
    Execution.objects.filter(pk=ex.pk).update(name=XSS)
    attempt(ex, XSS, "STOPPED", error=XSS, cause=XSS * 20, aws_response=XSS)
    response = auditor_client.get(URL + "?" + urlencode({"user": XSS[:150]}))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_an_empty_audit_says_so(auditor_client: Client) -> None:
    response = auditor_client.get(URL)
    assert response.status_code == 200
    assert "No stop attempts" in response.content.decode()


def test_every_attempt_made_through_the_page_is_listed_with_the_typed_reason(
    make_state_machine: Any,
    start: Any,
    operator_client: Client,
    user: Any,
    fake_aws: Any,
    sfn: Any,
    settings: Any,
) -> None:
    """Stopped, refused and failed attempts, made through the stop page, are
    all StopRequest rows that whoever may read the audit sees on /audit/; the
    reason typed is what AWS keeps in the execution's own history."""
    from executions.sync import flows
    from tests.support.helpers import LONG_WAIT

    machine = make_state_machine("nightly-etl", LONG_WAIT)
    first = flows.import_execution(start(machine, "etl-1"))
    second = flows.import_execution(start(machine, "etl-2"))

    def stop(ex: Execution, error: str, cause: str) -> None:
        response = operator_client.post(
            reverse("execution_stop", args=[ex.arn]),
            {"error": error, "cause": cause, "request_token": str(uuid.uuid4())},
        )
        assert response.status_code == 302

    stop(first, "Ops.Runaway", "oncall: INC-42, stuck for an hour")  # STOPPED
    stop(first, "Ops.Again", "a second try")  # REFUSED: finished
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # AWS unreachable
    stop(second, "Ops.Runaway", "oncall: INC-43")  # FAILED

    outcomes = dict(
        StopRequest.objects.values_list("execution__name", "outcome").order_by("requested_at")
    )
    assert list(StopRequest.objects.order_by("requested_at").values_list("outcome", flat=True)) == [
        "STOPPED",
        "REFUSED",
        "FAILED",
    ]
    assert outcomes["etl-2"] == "FAILED"
    auditor = Client()  # someone who may read the audit, not stop, sees them all
    user.user_permissions.add(Permission.objects.get(codename="view_stoprequest"))
    auditor.force_login(user)
    page = auditor.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("oncall: INC-42, stuck for an hour", "a second try", "oncall: INC-43", "oncall"):
        assert text in html, text
    assert [a.outcome for a in page.context["attempts"]] == ["FAILED", "REFUSED", "STOPPED"]
    refused = auditor.get(URL + "?outcome=REFUSED")
    assert [a.error for a in refused.context["attempts"]] == ["Ops.Again"]

    # AWS's own history says who stopped it and why.
    events = sfn.get_execution_history(executionArn=first.arn, reverseOrder=True)["events"]
    aborted = next(e for e in events if e["type"] == "ExecutionAborted")
    details = aborted.get("executionAbortedEventDetails", {})
    assert (details.get("error"), details.get("cause")) == (
        "Ops.Runaway",
        "oncall: INC-42, stuck for an hour",
    )
    assert sfn.describe_execution(executionArn=second.arn)["status"] == "RUNNING"


# --- Who may read it (issue 10, item 9) ------------------------------------------------------


def test_someone_who_may_neither_stop_nor_audit_gets_a_403_that_says_why(
    viewer_client: Client, history: dict[str, Any]
) -> None:
    for query in ("", "?user=alice", "?batch=" + str(history["batch"]), "?outcome=NOPE"):
        response = viewer_client.get(URL + query)
        assert response.status_code == 403, query
        body = response.content.decode()
        assert "executions.stop_execution" in body
        assert "executions.view_stoprequest" in body
        assert "viewer" in body
        assert "Stopped by alice" not in body


def test_those_who_may_stop_read_it(operator_client: Client, history: dict[str, Any]) -> None:
    response = operator_client.get(URL)
    assert response.status_code == 200
    assert response.context["total"] == 3
    assert "Stopped by alice" in response.content.decode()
