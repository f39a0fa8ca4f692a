"""/state-machines/<arn>/start/: the form, the confirmation, the start, the
re-run of another execution's input, and the result page."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from executions.models import (
    ActionRequest,
    Execution,
    StateMachine,
    StateMachineAlias,
    StateMachineVersion,
)
from executions.sync import flows
from tests.conftest import ROLE
from tests.support.factories import execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db


def calls(fake_aws: Any, operation: str = "StartExecution") -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


def start_url(arn: str) -> str:
    return reverse("state_machine_start", args=[arn])


def detail_url(arn: str) -> str:
    return reverse("execution_detail", args=[arn])


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def form(sm: StateMachine, step: str = "confirm", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "target": sm.arn,
        "name": "",
        "input": '{\r\n  "day": "2026-12-03"\r\n}',
        "request_token": str(uuid.uuid4()),
        step: "1",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def starter(django_user_model: Any) -> Any:
    from django.contrib.auth.models import Permission

    person = django_user_model.objects.create_user(username="deployer", password="deploy-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="start_execution"))
    return person


@pytest.fixture
def starter_client(client: Client, starter: Any) -> Client:
    client.force_login(starter)
    return client


@pytest.fixture
def etl(make_state_machine: Callable[..., str]) -> StateMachine:
    return flows.state_machine_for(make_state_machine("nightly-etl", LONG_WAIT))


def test_the_form_offers_the_state_machine_its_aliases_and_versions(
    starter_client: Client, etl: StateMachine
) -> None:
    v1 = StateMachineVersion.objects.create(
        arn=f"{etl.arn}:1", state_machine=etl, version=1, description="first"
    )
    v2 = StateMachineVersion.objects.create(arn=f"{etl.arn}:2", state_machine=etl, version=2)
    StateMachineVersion.objects.create(
        arn=f"{etl.arn}:3", state_machine=etl, version=3, status="DELETED"
    )
    StateMachineAlias.objects.create(
        arn=f"{etl.arn}:live",
        state_machine=etl,
        name="live",
        routing=[
            {"stateMachineVersionArn": v1.arn, "weight": 90},
            {"stateMachineVersionArn": v2.arn, "weight": 10},
        ],
    )
    page = starter_client.get(start_url(etl.arn))
    assert page.status_code == 200
    choices = [value for value, _ in page.context["form"].fields["target"].choices]
    assert choices == [etl.arn, f"{etl.arn}:live", v2.arn, v1.arn]
    html = page.content.decode()
    assert "alias live (version 1: 90%, version 2: 10%)" in html
    assert "version 1: first" in html
    assert f"{etl.arn}:3" not in html
    assert 'name="request_token"' in html


def test_review_then_confirm_starts_it_and_opens_its_page(
    starter_client: Client, etl: StateMachine, fake_aws: Any, sfn: Any
) -> None:
    data = form(etl, step="review", name="etl-by-hand")
    review = starter_client.post(start_url(etl.arn), data)
    assert review.status_code == 200
    html = review.content.decode()
    assert "Start this execution?" in html
    assert "etl-by-hand" in html
    assert "SHA-256" in html
    assert calls(fake_aws) == 0  # nothing yet
    # The confirmation carries everything, as typed, in hidden fields.
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert hidden["name"] == "etl-by-hand"
    assert hidden["request_token"] == data["request_token"]

    data.pop("review")
    response = starter_client.post(
        start_url(etl.arn) + "?tz=Europe/Berlin", {**data, "confirm": "1"}
    )

    attempt = ActionRequest.objects.get()
    assert attempt.outcome == "DONE"
    assert response.status_code == 302
    assert response["Location"] == detail_url(attempt.result_arn) + "?tz=Europe%2FBerlin"
    assert messages_of(response) == ["Started etl-by-hand. Syncing it now."]
    assert sfn.describe_execution(executionArn=attempt.result_arn)["input"] == (
        '{\n  "day": "2026-12-03"\n}'
    )
    page = starter_client.get(response["Location"])
    assert page.status_code == 200
    assert "etl-by-hand" in page.content.decode()


def test_confirming_twice_starts_one_execution(
    starter_client: Client, etl: StateMachine, fake_aws: Any, sfn: Any
) -> None:
    data = form(etl)
    first = starter_client.post(start_url(etl.arn), data)
    second = starter_client.post(start_url(etl.arn), data)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert calls(fake_aws) == 1
    assert len(sfn.list_executions(stateMachineArn=etl.arn)["executions"]) == 1
    assert ActionRequest.objects.count() == 1
    assert ActionRequest.objects.get().parameters["name"] == f"sfnui-{data['request_token']}"


def test_bad_json_is_said_on_the_form_keeping_what_was_typed(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    typed = '{"day": 2026-12-03}'
    response = starter_client.post(start_url(etl.arn), form(etl, input=typed))
    assert response.status_code == 400
    html = response.content.decode()
    assert "The input is not valid JSON" in html
    assert "line 1, column" in html
    assert "{&quot;day&quot;: 2026-12-03}" in html  # still in the textarea
    assert calls(fake_aws) == 0
    assert ActionRequest.objects.count() == 0


def test_an_input_over_256_kib_is_refused_on_the_form(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    big = json.dumps({"blob": "x" * (256 * 1024)})
    response = starter_client.post(start_url(etl.arn), form(etl, input=big))
    assert response.status_code == 400
    assert "AWS takes at most 262,144 bytes" in response.content.decode()
    assert calls(fake_aws) == 0


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("has space", "cannot contain a space"),
        ("a/b", "cannot contain &#x27;/&#x27;"),
        ("n" * 81, "1 to 80"),
    ],
)
def test_a_bad_name_is_refused_on_the_form(
    starter_client: Client, etl: StateMachine, fake_aws: Any, name: str, complaint: str
) -> None:
    response = starter_client.post(start_url(etl.arn), form(etl, name=name))
    assert response.status_code == 400
    assert complaint in response.content.decode()
    assert calls(fake_aws) == 0


def test_a_target_of_another_state_machine_is_refused(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:other"
    response = starter_client.post(start_url(etl.arn), form(etl, target=other))
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert calls(fake_aws) == 0


def test_a_name_in_use_with_another_input_is_a_409(
    starter_client: Client, etl: StateMachine, fake_aws: Any, start: Callable[..., str]
) -> None:
    existing = start(etl.arn, "etl-42", {"day": 1})
    response = starter_client.post(start_url(etl.arn), form(etl, name="etl-42", input='{"day": 2}'))
    assert response.status_code == 409
    html = response.content.decode()
    assert "already exists (with a different input)" in html
    assert detail_url(existing) in html  # a link to the one that has the name
    assert "{&quot;day&quot;: 2}" in html
    assert ActionRequest.objects.get().outcome == "REFUSED"


def test_a_throttled_start_is_a_503_with_the_form_kept(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["StartExecution"]}
    )
    data = form(etl, name="etl-busy")
    response = starter_client.post(start_url(etl.arn), data)
    assert response.status_code == 503
    html = response.content.decode()
    assert "AWS is throttling: nothing was started" in html
    assert 'value="etl-busy"' in html
    # A fresh token: trying again is a new attempt (with the same name).
    assert response.context["form"]["request_token"].value() != data["request_token"]


def test_aws_unreachable_is_a_503(starter_client: Client) -> None:
    sm = state_machine_row("offline")
    response = starter_client.post(start_url(sm.arn), form(sm, name="o-1"))
    assert response.status_code == 503
    assert "AWS unreachable: nothing was started" in response.content.decode()
    assert ActionRequest.objects.get().outcome == "FAILED"


def test_a_viewer_may_neither_see_the_form_nor_start(
    viewer_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    page = viewer_client.get(start_url(etl.arn))
    assert page.status_code == 403
    assert "executions.start_execution" in page.content.decode()
    assert viewer_client.post(start_url(etl.arn), form(etl)).status_code == 403
    assert calls(fake_aws) == 0
    assert ActionRequest.objects.count() == 0


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    sm = state_machine_row()
    for response in (client.get(start_url(sm.arn)), client.post(start_url(sm.arn), form(sm))):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_csrf_is_enforced(starter: Any, etl: StateMachine, fake_aws: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(starter)
    assert strict.post(start_url(etl.arn), form(etl)).status_code == 403
    assert calls(fake_aws) == 0


def test_other_methods_are_not_allowed(starter_client: Client) -> None:
    sm = state_machine_row()
    assert starter_client.put(start_url(sm.arn)).status_code == 405


def test_an_unknown_state_machine_is_a_404(starter_client: Client) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:ghost"
    response = starter_client.get(start_url(arn))
    assert response.status_code == 404
    assert "not among the synced state machines" in response.content.decode()
    assert starter_client.get("/state-machines/not-an-arn/start/").status_code == 404


def test_rerun_prefills_the_input_and_the_alias_it_ran_through(
    starter_client: Client, etl: StateMachine
) -> None:
    alias = StateMachineAlias.objects.create(arn=f"{etl.arn}:live", state_machine=etl, name="live")
    source = execution_row(
        etl,
        name="failed-1",
        status="FAILED",
        input='{"order":7}',
        state_machine_alias_arn=alias.arn,
    )
    page = starter_client.get(start_url(etl.arn), {"source": source.arn})
    assert page.status_code == 200
    f = page.context["form"]
    assert f["input"].value() == '{\n  "order": 7\n}'
    assert f["target"].value() == alias.arn
    assert f["source"].value() == source.arn
    html = page.content.decode()
    assert "Re-run failed-1" in html


def test_rerun_of_an_execution_the_cache_has_no_input_for_fetches_it(
    starter_client: Client, etl: StateMachine, fake_aws: Any, start: Callable[..., str]
) -> None:
    arn = start(etl.arn, "undescribed", {"order": 9})
    ex = execution_row(etl, name="undescribed", status="RUNNING", input=None, described_at=None)
    assert ex.arn == arn
    page = starter_client.get(start_url(etl.arn), {"source": arn})
    assert page.status_code == 200
    assert page.context["form"]["input"].value() == '{\n  "order": 9\n}'
    assert "it was fetched from AWS just now" in page.content.decode()
    assert Execution.objects.get(pk=ex.pk).input == '{"order": 9}'


def test_rerun_says_so_when_the_input_cannot_be_fetched(starter_client: Client) -> None:
    sm = state_machine_row("offline")
    ex = execution_row(sm, name="gone", input=None, described_at=None)
    page = starter_client.get(start_url(sm.arn), {"source": ex.arn})
    assert page.status_code == 200
    assert "fetching it from AWS failed" in page.content.decode()
    assert page.context["form"]["input"].value() == ""


def test_rerun_from_another_state_machine_or_a_bad_arn_is_a_400(
    starter_client: Client, etl: StateMachine
) -> None:
    other = execution_row(state_machine_row("other"), name="o-1")
    response = starter_client.get(start_url(etl.arn), {"source": other.arn})
    assert response.status_code == 400
    assert "re-run it from its own state machine" in response.content.decode()
    assert starter_client.get(start_url(etl.arn), {"source": "nope"}).status_code == 400


def test_the_rerun_button_is_for_those_who_may_start(
    starter_client: Client, etl: StateMachine
) -> None:
    ex = execution_row(etl, name="done-1")
    link = start_url(etl.arn) + "?source="
    assert link in starter_client.get(detail_url(ex.arn)).content.decode()
    sm_page = starter_client.get(reverse("state_machine_detail", args=[etl.arn]))
    assert start_url(etl.arn) in sm_page.content.decode()


def test_viewers_see_no_start_buttons(viewer_client: Client, etl: StateMachine) -> None:
    ex = execution_row(etl, name="done-2")
    assert "Re-run with this input" not in viewer_client.get(detail_url(ex.arn)).content.decode()
    sm_page = viewer_client.get(reverse("state_machine_detail", args=[etl.arn]))
    assert start_url(etl.arn) not in sm_page.content.decode()


def test_an_express_start_lands_on_a_page_that_says_what_can_be_shown(
    starter_client: Client, fake_aws: Any, sfn: Any
) -> None:
    arn = sfn.create_state_machine(
        name="clicks",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
        roleArn=ROLE,
        type="EXPRESS",
    )["stateMachineArn"]
    sm = flows.state_machine_for(arn)
    StateMachine.objects.filter(pk=sm.pk).update(type="EXPRESS")
    sm.refresh_from_db()
    assert "Express workflow" in starter_client.get(start_url(arn)).content.decode()

    data = form(sm, name="click-1")
    response = starter_client.post(start_url(arn), data)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "state_machine_start_result", args=[arn, data["request_token"]]
    )
    page = starter_client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "Started click-1" in html
    assert ActionRequest.objects.get().result_arn in html
    assert "What can be shown of an Express execution" in html
    assert "DescribeExecution and GetExecutionHistory do not answer" in html
    assert not Execution.objects.exists()


def test_the_result_page_of_an_unknown_start_is_a_404(
    starter_client: Client, etl: StateMachine
) -> None:
    response = starter_client.get(
        reverse("state_machine_start_result", args=[etl.arn, uuid.uuid4()])
    )
    assert response.status_code == 404
    assert "No start of nightly-etl" in response.content.decode()


def test_a_used_form_sent_again_with_another_input_sends_nothing(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    data = form(etl)
    assert starter_client.post(start_url(etl.arn), data).status_code == 302
    again = starter_client.post(start_url(etl.arn), {**data, "input": '{"day": "other"}'})
    assert again.status_code == 400
    assert (
        "already used to start something else (another name, input or target). Nothing was sent"
        in again.content.decode()
    )
    assert again.context["form"]["request_token"].value() != data["request_token"]
    assert calls(fake_aws) == 1


def test_a_start_that_got_no_answer_lands_on_a_page_that_says_so(
    starter_client: Client, etl: StateMachine, fake_aws: Any, settings: Any
) -> None:
    from tests.support.aws_faults import Withholding

    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    data = form(etl, name="etl-lost")
    with Withholding(fake_aws.url, {"StartExecution"}, deliver=False) as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        response = starter_client.post(start_url(etl.arn), data)
    result = reverse("state_machine_start_result", args=[etl.arn, data["request_token"]])
    assert response.status_code == 302
    assert response["Location"] == result
    assert "the outcome is unknown" in messages_of(response)[0]
    page = starter_client.get(result)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Outcome unknown" in html
    assert "AWS does not know an execution named etl-lost" in html


def test_the_rerun_link_keeps_the_time_zone(starter_client: Client, etl: StateMachine) -> None:
    ex = execution_row(etl, name="done-3")
    html = starter_client.get(detail_url(ex.arn), {"tz": "Europe/Berlin"}).content.decode()
    link = re.search(r'id="rerun" href="([^"]+)"', html)
    assert link is not None
    assert "tz=Europe%2FBerlin" in link.group(1)
    assert "source=arn%3Aaws%3Astates" in link.group(1)
    page = starter_client.get(link.group(1).replace("&amp;", "&"))
    assert page.status_code == 200
    assert "CET" in page.content.decode() or "CEST" in page.content.decode()


def test_back_to_the_form_keeps_what_was_typed_and_sends_nothing(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    data = form(etl, step="edit", name="etl-back", input='{"keep": "me"}')
    page = starter_client.post(start_url(etl.arn), data)
    assert page.status_code == 200
    f = page.context["form"]
    assert (f["name"].value(), f["input"].value()) == ("etl-back", '{"keep": "me"}')
    assert f["request_token"].value() == data["request_token"]
    assert "Review…" in page.content.decode()
    assert calls(fake_aws) == 0
    assert not ActionRequest.objects.exists()


def test_a_post_far_over_the_limit_is_a_400_not_a_500(
    starter_client: Client, etl: StateMachine, fake_aws: Any
) -> None:
    huge = json.dumps({"blob": "x" * (3 * 1024 * 1024)})  # past Django's 2.5 MB for a form
    response = starter_client.post(start_url(etl.arn), form(etl, input=huge))
    assert response.status_code == 400
    assert calls(fake_aws) == 0
    assert not ActionRequest.objects.exists()
