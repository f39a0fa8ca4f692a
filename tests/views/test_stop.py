"""/executions/<arn>/stop/: the confirmation page and the POST that stops."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from executions.models import Execution, StopRequest
from executions.sync import flows
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'


def calls(fake_aws: Any, operation: str = "StopExecution") -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


def stop_url(arn: str) -> str:
    return reverse("execution_stop", args=[arn])


def detail_url(arn: str) -> str:
    return reverse("execution_detail", args=[arn])


def form(**overrides: Any) -> dict[str, Any]:
    data = {
        "error": "Ops.Runaway",
        "cause": "oncall: stuck for an hour, INC-7",
        "request_token": str(uuid.uuid4()),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def runaway(make_state_machine: Callable[..., str], start: Callable[..., str]) -> Execution:
    return flows.import_execution(start(make_state_machine("nightly-etl", LONG_WAIT), "etl-1"))


def test_an_operator_sees_what_will_be_stopped_and_stops_it(
    runaway: Execution, operator_client: Client, fake_aws: Any, sfn: Any, operator: Any
) -> None:
    page = operator_client.get(stop_url(runaway.arn))
    assert page.status_code == 200
    html = page.content.decode()
    assert "etl-1" in html
    assert "nightly-etl" in html
    assert "Sleep" in html  # where it is now
    assert runaway.arn in html
    assert 'name="request_token"' in html
    assert "sfnui.ManualStop" in html
    assert "Stopped by oncall via sfnui at " in html
    token = page.context["form"]["request_token"].value()

    response = operator_client.post(
        stop_url(runaway.arn),
        {"error": "Ops.Runaway", "cause": "oncall: INC-7 runaway", "request_token": token},
    )

    assert response.status_code == 302
    assert response["Location"] == detail_url(runaway.arn)
    (message,) = messages_of(response)
    assert message.startswith("Stopped etl-1")
    attempt = StopRequest.objects.get()
    assert (attempt.outcome, attempt.user, attempt.status_before) == (
        "STOPPED",
        operator,
        "RUNNING",
    )
    assert (attempt.error, attempt.cause) == ("Ops.Runaway", "oncall: INC-7 runaway")
    d = sfn.describe_execution(executionArn=runaway.arn)
    assert (d["status"], d["error"], d["cause"]) == (
        "ABORTED",
        "Ops.Runaway",
        "oncall: INC-7 runaway",
    )
    assert calls(fake_aws) == 1


def test_the_redirect_keeps_the_time_zone(
    runaway: Execution, operator_client: Client, fake_aws: Any
) -> None:
    response = operator_client.post(stop_url(runaway.arn) + "?tz=Europe/Berlin", form())
    assert response["Location"] == detail_url(runaway.arn) + "?tz=Europe%2FBerlin"


def test_a_viewer_may_neither_see_the_form_nor_stop(
    runaway: Execution, viewer_client: Client, fake_aws: Any
) -> None:
    page = viewer_client.get(stop_url(runaway.arn))
    assert page.status_code == 403
    assert "executions.stop_execution" in page.content.decode()
    assert viewer_client.post(stop_url(runaway.arn), form()).status_code == 403
    assert calls(fake_aws) == 0
    assert StopRequest.objects.count() == 0


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    ex = execution_row(status="RUNNING")
    for response in (client.get(stop_url(ex.arn)), client.post(stop_url(ex.arn), form())):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert StopRequest.objects.count() == 0


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_not_allowed(operator_client: Client, method: str) -> None:
    ex = execution_row(status="RUNNING")
    assert getattr(operator_client, method)(stop_url(ex.arn)).status_code == 405


def test_csrf_is_enforced(runaway: Execution, operator: Any, fake_aws: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(stop_url(runaway.arn), form()).status_code == 403
    assert calls(fake_aws) == 0
    assert StopRequest.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"error": "E" * 257}, "at most 256 characters"),
        ({"cause": "c" * 32_769}, "at most 32768 characters"),
        ({"error": ""}, "This field is required"),
        ({"request_token": None}, "nothing was sent"),
        ({"request_token": "not-a-uuid"}, "nothing was sent"),
        ({"error": "   ", "cause": "\n\t "}, "This field is required"),
        ({"error": "Ops\x00Runaway"}, "Null characters are not allowed"),
        ({"cause": "oncall\x00"}, "Null characters are not allowed"),
        ({"error": "é" * 257}, "at most 256 characters"),
    ],
)
def test_a_bad_form_is_answered_with_400_and_sends_nothing(
    runaway: Execution,
    operator_client: Client,
    fake_aws: Any,
    overrides: dict[str, Any],
    complaint: str,
) -> None:
    response = operator_client.post(stop_url(runaway.arn), form(**overrides))
    assert response.status_code == 400
    assert complaint in response.content.decode()
    assert calls(fake_aws) == 0
    assert StopRequest.objects.count() == 0


def test_the_longest_error_and_cause_aws_allows_are_accepted(
    runaway: Execution, operator_client: Client, fake_aws: Any, sfn: Any
) -> None:
    response = operator_client.post(
        stop_url(runaway.arn), form(error="E" * 256, cause="c" * 32_768)
    )
    assert response.status_code == 302
    d = sfn.describe_execution(executionArn=runaway.arn)
    assert (len(d["error"]), len(d["cause"])) == (256, 32_768)


def test_an_empty_post_is_a_400(runaway: Execution, operator_client: Client, fake_aws: Any) -> None:
    response = operator_client.post(stop_url(runaway.arn), {})
    assert response.status_code == 400
    # The page offers a fresh, valid form to confirm again.
    assert response.context["form"]["request_token"].value()
    assert calls(fake_aws) == 0


def test_a_replayed_post_stops_once(
    runaway: Execution, operator_client: Client, fake_aws: Any
) -> None:
    data = form()
    first = operator_client.post(stop_url(runaway.arn), data)
    again = operator_client.post(stop_url(runaway.arn), data)
    assert first.status_code == again.status_code == 302
    assert messages_of(again)[-1].startswith("Stopped etl-1")
    assert StopRequest.objects.count() == 1
    assert calls(fake_aws) == 1


def test_it_rechecks_live_and_refuses_what_finished_meanwhile(
    runaway: Execution, operator_client: Client, fake_aws: Any, sfn: Any
) -> None:
    page = operator_client.get(stop_url(runaway.arn))  # still RUNNING in the cache
    assert 'name="request_token"' in page.content.decode()
    sfn.stop_execution(executionArn=runaway.arn, error="Console", cause="someone else")

    response = operator_client.post(stop_url(runaway.arn), form())

    assert response.status_code == 302
    assert response["Location"] == detail_url(runaway.arn)
    (message,) = messages_of(response)
    assert "Already finished" in message
    assert "nothing was sent" in message
    assert StopRequest.objects.get().outcome == "REFUSED"
    assert calls(fake_aws) == 1  # the console's stop only
    assert Execution.objects.get(pk=runaway.pk).status == "ABORTED"


def test_a_finished_execution_has_no_form_and_a_post_sends_nothing(
    operator_client: Client, fake_aws: Any
) -> None:
    ex = execution_row(name="done-1", status="SUCCEEDED")
    page = operator_client.get(stop_url(ex.arn))
    assert page.status_code == 200
    html = page.content.decode()
    assert "already finished" in html
    assert "nothing to stop" in html
    assert 'name="request_token"' not in html

    response = operator_client.post(stop_url(ex.arn), form())
    assert response.status_code == 302
    assert "nothing was sent" in messages_of(response)[0]
    assert StopRequest.objects.get().outcome == "REFUSED"
    assert sum(fake_aws.post("/fakeaws/calls", {})["calls"].values()) == 0


def test_aws_unreachable_is_recorded_and_said_plainly(operator_client: Client) -> None:
    # No fake_aws: nothing listens on the endpoint.
    ex = execution_row(name="etl-9", status="RUNNING")
    response = operator_client.post(stop_url(ex.arn), form())
    assert response.status_code == 302
    # Back to the confirmation, with a fresh form to try again.
    assert response["Location"] == stop_url(ex.arn)
    (message,) = messages_of(response)
    assert "etl-9 was not stopped" in message
    assert "AWS unreachable" in message
    attempt = StopRequest.objects.get()
    assert attempt.outcome == "FAILED"
    page = operator_client.get(stop_url(ex.arn))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Earlier stop attempts" in html
    assert "FAILED" in html


def test_a_malformed_arn_is_a_404(operator_client: Client) -> None:
    response = operator_client.get("/executions/not-an-arn/stop/")
    assert response.status_code == 404
    assert "not a Step Functions execution ARN" in response.content.decode()


def test_an_arn_aws_does_not_know_is_a_404(operator_client: Client, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:ghost:nope"
    response = operator_client.post(stop_url(arn), form())
    assert response.status_code == 404
    assert "does not know" in response.content.decode()
    assert StopRequest.objects.count() == 0


def test_the_page_escapes_hostile_names_and_text(operator_client: Client) -> None:
    sm = state_machine_row("hostile")
    type(sm).objects.filter(pk=sm.pk).update(name=XSS)
    ex = execution_row(sm, name="x-1", status="RUNNING")
    Execution.objects.filter(pk=ex.pk).update(name=XSS)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": XSS, "input": "{}"}),
        ],
    )
    StopRequest.objects.create(
        execution=ex,
        username=XSS,
        error=XSS,
        cause=XSS * 50,
        outcome="FAILED",
        aws_response=XSS,
    )
    html = operator_client.get(stop_url(ex.arn)).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_the_confirmation_costs_a_bounded_number_of_queries(
    operator_client: Client, django_assert_max_num_queries: Any
) -> None:
    ex = execution_row(status="RUNNING")
    history: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})
    ]
    history += [
        ("PassStateEntered", "stateEnteredEventDetails", {"name": f"S{i}"}) for i in range(50)
    ]
    events(
        ex,
        history,
    )
    with django_assert_max_num_queries(12):
        assert operator_client.get(stop_url(ex.arn)).status_code == 200


def test_a_multibyte_reason_at_the_limits_reaches_aws_whole(
    runaway: Execution, operator_client: Client, fake_aws: Any, sfn: Any
) -> None:
    """The limits are characters, not bytes: 256 "é" (512 bytes) and 32,768
    "é" are allowed and reach AWS unchanged."""
    response = operator_client.post(
        stop_url(runaway.arn), form(error="é" * 256, cause="é" * 32_768)
    )
    assert response.status_code == 302
    d = sfn.describe_execution(executionArn=runaway.arn)
    assert (d["error"], d["cause"]) == ("é" * 256, "é" * 32_768)
    assert calls(fake_aws) == 1


def test_every_submission_of_one_form_sends_at_most_one_stop(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    operator_client: Client,
    fake_aws: Any,
) -> None:
    """Any sequence of submissions (the same form again and again, fresh forms,
    invalid ones in between): one StopExecution for the execution, one audit
    row per form that was valid, and every answer says what happened."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    machine = make_state_machine("nightly-etl", LONG_WAIT)
    tokens = [str(uuid.uuid4()) for _ in range(3)]
    submissions = st.lists(
        st.tuples(st.sampled_from(tokens), st.sampled_from(["ok", "too-long", "empty"])),
        min_size=1,
        max_size=6,
    )
    runs = iter(range(1000))

    @settings(
        max_examples=8,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(submissions)
    def run(sequence: list[tuple[str, str]]) -> None:
        ex = flows.import_execution(start(machine, f"etl-{next(runs)}"))
        before = calls(fake_aws)
        fresh = {t: str(uuid.uuid4()) for t in tokens}  # tokens are global: one set per run
        valid_tokens = set()
        for token, kind in sequence:
            data = form(request_token=fresh[token])
            if kind == "too-long":
                data["error"] = "E" * 257
            elif kind == "empty":
                data = {}
            response = operator_client.post(stop_url(ex.arn), data)
            if kind == "ok":
                valid_tokens.add(fresh[token])
                assert response.status_code == 302
                message = messages_of(response)[-1]
                assert message.startswith("Stopped etl-") or "nothing was sent" in message
            else:
                assert response.status_code == 400
        sent = calls(fake_aws) - before
        assert sent == (1 if valid_tokens else 0), sequence
        attempts = StopRequest.objects.filter(execution=ex)
        assert attempts.count() == len(valid_tokens)
        assert attempts.filter(outcome="STOPPED").count() == (1 if valid_tokens else 0)

    run()
