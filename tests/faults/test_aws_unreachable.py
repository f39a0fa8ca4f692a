"""Fault 3: AWS unreachable, two ways: connection refused (nothing listens),
and a black hole (a socket that accepts connections and never answers, as a
dead load balancer or a firewall that drops packets would).

The sync records the failure and gives up within the configured timeouts;
pages keep serving the cache under an "AWS unreachable since ..." bar; the
stop page says that AWS cannot be reached, and the attempt is in the audit as
FAILED. Wall times are asserted against the configured timeouts: nothing waits
longer than attempts x (connect + read timeout) plus botocore's backoff.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from executions.models import Execution, StateMachine, StopRequest, SyncRun
from executions.sync import flows
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 1.0
ATTEMPTS = 2
# botocore's standard retry mode waits at most 2^(attempt - 1) s (with jitter)
# before a retry: 1 s for the one retry here.
ONE_CALL = ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT) + (ATTEMPTS - 1) * 1.0
# For a loaded machine (two cores, other test runs): it is the order of
# magnitude that matters, a hang would be minutes.
SLACK = 2.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["refused", "black-hole"])
def unreachable(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an endpoint that does not answer, the one way or the other."""
    if request.param == "refused":
        yield f"http://127.0.0.1:{closed_port()}"
        return
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    # Connections complete in the kernel's backlog; nobody ever reads them.
    hole.listen(128)
    try:
        yield f"http://127.0.0.1:{hole.getsockname()[1]}"
    finally:
        hole.close()


@pytest.fixture
def cached(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> dict[str, str]:
    """A cache filled by a good sync: finished executions and a running one."""
    hello = make_state_machine("hello", PASS)
    done = [start(hello, f"hello-{i}") for i in range(4)]
    wait_until_finished(sfn, done)
    running = start(make_state_machine("nightly", LONG_WAIT), "nightly-1")
    sync_cycle()
    assert set(Execution.objects.values_list("arn", flat=True)) == {*done, running}
    return {"finished": done[0], "running": running}


def sync_cycle() -> list[float]:
    """One cycle of what the worker does, task by task (the due executions in
    one batch), timed per task."""
    timings = [timed(lambda: flows.discover_state_machines("us-east-1"))[1]]
    for sm in StateMachine.objects.order_by("pk"):
        timings.append(timed(functools.partial(flows.list_state_machine, sm))[1])
    due = list(Execution.objects.filter(sync_due_at__isnull=False).values_list("pk", flat=True))
    timings.append(timed(lambda: flows.sync_executions(due, "us-east-1"))[1])
    return timings


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_pages_serve_the_cache_and_say_aws_is_unreachable(
    cached: dict[str, str],
    unreachable: str,
    settings: Any,
    operator_client: Client,
    request: pytest.FixtureRequest,
) -> None:
    settings.SFNUI_AWS_CONNECT_TIMEOUT = CONNECT_TIMEOUT
    settings.SFNUI_AWS_READ_TIMEOUT = READ_TIMEOUT
    settings.SFNUI_AWS_MAX_ATTEMPTS = ATTEMPTS
    settings.SFNUI_AWS_ENDPOINT_URL = unreachable
    # Everything is due again: what the schedule would hand out.
    Execution.objects.update(sync_due_at=timezone.now(), needs_describe=True)
    before = {
        row["arn"]: row
        for row in Execution.objects.values("arn", "status", "last_event_id", "output")
    }
    failing_since = timezone.now()

    # The sync: each task gives up within one call's timeouts, and records why.
    timings = sync_cycle()
    assert max(timings) < ONE_CALL + SLACK, timings
    runs = SyncRun.objects.filter(started_at__gte=failing_since)
    assert runs.count() >= 3
    assert all(not run.ok and "AWS unreachable" in run.error for run in runs)
    # Nothing cached was lost or changed by the failures.
    after = {
        row["arn"]: row
        for row in Execution.objects.values("arn", "status", "last_event_id", "output")
    }
    assert after == before
    # Every execution is still due: retried when AWS is back, not dropped.
    assert not Execution.objects.filter(sync_due_at__isnull=True).exists()

    # Pages: the cache, at once, under the bar.
    first_failure = runs.order_by("started_at").first()
    assert first_failure is not None
    since = timezone.localtime(first_failure.started_at).strftime("%Y-%m-%d %H:%M:%S")
    pages = [
        reverse("execution_list"),
        reverse("execution_detail", args=[cached["finished"]]),
        reverse("execution_detail", args=[cached["running"]]),
        reverse("execution_history", args=[cached["finished"]]),
        reverse("state_machine_list"),
        reverse("sync_health"),
        reverse("audit_log"),
        reverse("execution_stop", args=[cached["running"]]),
    ]
    for url in pages:
        response, seconds = timed(functools.partial(operator_client.get, url))
        assert response.status_code == 200, url
        assert seconds < 2.0, (url, seconds)
        html = response.content.decode()
        assert f"AWS unreachable since {since}" in html, url
    for url in (
        reverse("execution_history_text", args=[cached["finished"]]),
        reverse("execution_history_json", args=[cached["finished"]]),
        reverse("api_execution_detail", args=[cached["running"]]),
    ):
        response, seconds = timed(functools.partial(operator_client.get, url))
        assert response.status_code == 200, url
        assert seconds < 2.0, (url, seconds)
    # /healthz stays ready: AWS being away is no reason to stop serving the
    # cache. (On SQLite its write probe cannot take the lock this test's own
    # transaction holds: the database check alone fails there.)
    health = operator_client.get(reverse("healthz")).json()
    assert all(health[name]["ok"] for name in ("broker", "cache", "static")), health
    assert health["database"]["ok"] or "cannot be written" in health["database"]["error"]

    # An execution the cache has never seen cannot be looked up: a clear 503.
    unknown = cached["running"].rsplit(":", 1)[0] + ":never-synced"
    response, seconds = timed(
        lambda: operator_client.get(reverse("execution_detail", args=[unknown]))
    )
    if request.node.callspec.params["unreachable"] == "refused":
        assert response.status_code == 503
        assert "AWS is unreachable" in response.content.decode()
    else:
        # Connected, no answer: the page deadline ran out (a gateway timeout).
        assert response.status_code == 504
        assert "AWS did not answer within" in response.content.decode()
    assert seconds < ONE_CALL + SLACK

    # Stopping: says it cannot reach AWS, sends nothing, and is recorded.
    stop_url = reverse("execution_stop", args=[cached["running"]])
    form = operator_client.get(stop_url).context["form"]
    response, seconds = timed(
        lambda: operator_client.post(
            stop_url,
            {
                "error": "oncall.Stop",
                "cause": "runaway during the outage",
                "request_token": form.initial["request_token"],
            },
            follow=True,
        )
    )
    assert seconds < ONE_CALL + SLACK, seconds
    html = response.content.decode()
    assert "was not stopped" in html
    assert "AWS unreachable" in html
    attempt = StopRequest.objects.get()
    assert attempt.outcome == StopRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS unreachable")
    assert attempt.username == "oncall"
    assert Execution.objects.get(arn=cached["running"]).status == "RUNNING"
    audit = operator_client.get(reverse("audit_log")).content.decode()
    assert "runaway during the outage" in audit
