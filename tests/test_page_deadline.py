"""AWS calls made from a page have one short deadline, all attempts included
(SFNUI_AWS_PAGE_DEADLINE), and a page that says so: never a worker held for
30 s, never a 500 (issue 10, item 5). And a stop that got no answer says the
outcome is unknown (item 4)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from executions import aws
from executions.actions import stop
from executions.models import Execution, StopRequest
from executions.sync import flows
from tests.support.aws_faults import Withholding, silent
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db

DEADLINE = 1.5
# What a busy two-core machine adds to the deadline: the order of magnitude
# matters (the issue measured 30.2 s).
SLACK = 1.0
UNKNOWN = "arn:aws:states:us-east-1:123456789012:execution:nightly-etl:never-synced"


@pytest.fixture
def slow_aws_settings(settings: Any) -> Any:
    """Timeouts that, without the page deadline, hold a page 3 x 10 s."""
    settings.SFNUI_AWS_READ_TIMEOUT = 10.0
    settings.SFNUI_AWS_MAX_ATTEMPTS = 3
    settings.SFNUI_AWS_PAGE_DEADLINE = DEADLINE
    return settings


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.parametrize("url_name", ["execution_detail", "api_execution_detail"])
def test_an_unknown_arn_against_a_hanging_aws_is_a_504_within_the_deadline(
    viewer_client: Client, slow_aws_settings: Any, url_name: str
) -> None:
    with silent() as endpoint:
        slow_aws_settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        response, seconds = timed(lambda: viewer_client.get(reverse(url_name, args=[UNKNOWN])))
    assert seconds < DEADLINE + SLACK, seconds
    assert response.status_code == 504
    text = response.content.decode()
    assert "AWS did not answer within 1.5 s" in text
    assert endpoint.url.removeprefix("http://") not in text


@pytest.fixture
def runaway(make_state_machine: Callable[..., str], start: Callable[..., str]) -> Execution:
    return flows.import_execution(start(make_state_machine("nightly-etl", LONG_WAIT), "etl-1"))


def post_stop(client: Client, ex: Execution) -> Any:
    return client.post(
        reverse("execution_stop", args=[ex.arn]),
        {"error": "Ops.Runaway", "cause": "INC-7", "request_token": str(uuid.uuid4())},
    )


def warm(settings: Any, url: str) -> None:
    """Point at `url` with a page's client already built, as a server that has
    served a page before has: what is timed is the waiting for AWS."""
    settings.SFNUI_AWS_ENDPOINT_URL = url
    with aws.page_deadline():
        aws.client("us-east-1")


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_a_stop_aws_got_and_never_answered_says_the_outcome_is_unknown(
    runaway: Execution, operator_client: Client, fake_aws: Any, slow_aws_settings: Any
) -> None:
    with Withholding(fake_aws.url, {"StopExecution"}, deliver=True) as endpoint:
        warm(slow_aws_settings, endpoint.url)
        response, seconds = timed(lambda: post_stop(operator_client, runaway))
    assert seconds < DEADLINE + SLACK, seconds
    assert endpoint.arrived["StopExecution"] == 1
    assert response.status_code == 302
    assert response["Location"] == reverse("execution_detail", args=[runaway.arn])
    (message,) = messages_of(response)
    assert message.startswith("etl-1: Sent, no answer: the outcome is unknown.")
    assert "AWS did not answer within 1.5 s" in message
    assert endpoint.url.removeprefix("http://") not in message
    # The re-check within the same deadline found what AWS did.
    assert "Re-checked at once: AWS says ABORTED" in message
    assert Execution.objects.get(pk=runaway.pk).status == "ABORTED"
    audit = operator_client.get(reverse("audit_log"), {"outcome": "UNKNOWN"})
    assert audit.status_code == 200
    assert 'class="outcome outcome-UNKNOWN"' in audit.content.decode()
    assert StopRequest.objects.get().outcome == "UNKNOWN"


def test_a_stop_against_a_hanging_aws_sends_nothing_and_answers_within_the_deadline(
    runaway: Execution, operator_client: Client, fake_aws: Any, slow_aws_settings: Any
) -> None:
    with silent() as endpoint:
        warm(slow_aws_settings, endpoint.url)
        response, seconds = timed(lambda: post_stop(operator_client, runaway))
    assert seconds < DEADLINE + SLACK, seconds
    # The live re-check before the stop got no answer: the stop was not sent.
    assert endpoint.arrived["StopExecution"] == 0
    (message,) = messages_of(response)
    assert "etl-1 was not stopped" in message
    assert "did not answer within 1.5 s" in message
    assert StopRequest.objects.get().outcome == "FAILED"


# --- The web server outlasts the page deadline ---------------------------------------


def gunicorn_timeouts() -> dict[str, float]:
    root = Path(django_settings.BASE_DIR)
    found = {}
    cmd = re.search(r'^CMD \["gunicorn".*$', (root / "Dockerfile").read_text(), re.M)
    assert cmd, "the Dockerfile starts gunicorn"
    args = cmd.group(0).split('"')[1::2]
    found["Dockerfile"] = float(args[args.index("--timeout") + 1])
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if command[:1] == ["gunicorn"]:
            found[f"compose {name}"] = float(command[command.index("--timeout") + 1])
    return found


def test_gunicorn_outlasts_the_page_deadline_and_a_duplicate_stops_wait() -> None:
    timeouts = gunicorn_timeouts()
    assert set(timeouts) == {"Dockerfile", "compose web"}
    longest_page = max(django_settings.SFNUI_AWS_PAGE_DEADLINE, stop.duplicate_wait())
    for where, seconds in timeouts.items():
        # A margin for the database work around the AWS calls.
        assert seconds >= 2 * longest_page, (where, seconds, longest_page)
