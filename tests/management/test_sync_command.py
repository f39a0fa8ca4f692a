"""`python manage.py sync`: one full cycle in the foreground, a summary, exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from executions.models import Execution, StateMachine
from tests.support.aws_faults import silent
from tests.support.factories import execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, PASS, assert_cache_equals_aws, wait_until_finished
from tests.support.workers import database_url

pytestmark = pytest.mark.django_db


def run_sync(*args: str) -> str:
    out = StringIO()
    call_command("sync", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def calls(summary: str) -> dict[str, int]:
    found = re.search(r"API calls: (.*) \(total (\d+)\)", summary)
    assert found, summary
    if found.group(1) == "none":
        return {}
    return {op: int(n) for op, n in (item.rsplit(" ", 1) for item in found.group(1).split(", "))}


@pytest.fixture
def scenario(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> dict[str, Any]:
    hello = make_state_machine("hello", PASS)
    nightly = make_state_machine("nightly", LONG_WAIT)
    done = [start(hello, f"hello-{i}") for i in range(3)]
    running = start(nightly, "nightly-1")
    wait_until_finished(sfn, done)
    return {"hello": hello, "nightly": nightly, "done": done, "running": running}


def test_a_first_and_a_second_sync(scenario: dict[str, Any], sfn: Any) -> None:
    first = run_sync()
    assert "state machines: 2" in first
    assert "executions: 4 new" in first
    assert calls(first) == {
        "DescribeExecution": 4,
        "DescribeStateMachine": 2,
        "GetExecutionHistory": 4,
        # One per machine: the first listing sees every execution with its
        # status, so no ListExecutions(RUNNING) is needed yet.
        "ListExecutions": 2,
        "ListStateMachines": 1,
        # Once in each execution's life: the definition it ran (sync/versions.py).
        "DescribeStateMachineForExecution": 4,
        # With each state machine's description: its versions and aliases.
        "ListStateMachineVersions": 2,
        "ListStateMachineAliases": 2,
    }
    assert_cache_equals_aws(sfn, [*scenario["done"], scenario["running"]])

    Execution.objects.filter(arn=scenario["running"]).update(sync_due_at=None)
    second = calls(run_sync())
    assert "DescribeExecution" not in second
    assert "GetExecutionHistory" not in second
    assert second == {"ListExecutions": 2, "ListStateMachines": 1}


def test_it_narrows_to_one_state_machine(scenario: dict[str, Any]) -> None:
    out = run_sync("--state-machine", scenario["hello"])
    assert set(Execution.objects.values_list("state_machine__name", flat=True)) == {"hello"}
    assert calls(out)["DescribeExecution"] == 3


def test_it_syncs_one_execution_even_one_it_never_saw(scenario: dict[str, Any], sfn: Any) -> None:
    out = run_sync("--execution", scenario["done"][0])
    assert calls(out) == {
        "DescribeExecution": 1,
        "GetExecutionHistory": 1,
        "DescribeStateMachineForExecution": 1,
    }
    assert list(Execution.objects.values_list("arn", flat=True)) == [scenario["done"][0]]
    assert_cache_equals_aws(sfn, [scenario["done"][0]])
    # Settled: asking again costs nothing.
    assert calls(run_sync("--execution", scenario["done"][0])) == {}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--execution", "not-an-arn", "is not a Step Functions execution ARN"),
        (
            "--state-machine",
            "arn:aws:states:us-east-1:123456789012:execution:a:b",
            "state machine ARN",
        ),
        (
            "--execution",
            "arn:aws:states:us-east-1:123456789012:execution:nope:never",
            "does not know",
        ),
    ],
)
def test_it_refuses_bad_arns_clearly(fake_aws: Any, option: str, value: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_sync(option, value)


def test_it_fails_clearly_when_aws_is_unreachable(settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    err = StringIO()
    with pytest.raises(CommandError, match="did nothing"):
        call_command("sync", stdout=StringIO(), stderr=err)
    assert "AWS unreachable" in err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_manage_py_sync_exits_0_and_prints_its_calls(
    scenario: dict[str, Any], fake_aws: Any
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SFNUI_AWS_ENDPOINT_URL": fake_aws.url,
        "SFNUI_REGIONS": "us-east-1",
        "DJANGO_DEBUG": "true",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "sync"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "API calls: " in done.stdout
    assert Execution.objects.count() == 4


# --- Bounded: per call and per cycle (issue 10, item 5) ---------------------------------


def test_a_hanging_aws_ends_the_cycle_within_one_call_deadline(settings: Any) -> None:
    settings.SFNUI_AWS_CONNECT_TIMEOUT = 0.4
    # Far above the deadline, so that the bound below tells them apart with
    # room for a loaded machine.
    settings.SFNUI_AWS_READ_TIMEOUT = 30.0
    settings.SFNUI_AWS_CALL_DEADLINE = 2.0
    for i in range(5):
        sm = state_machine_row(f"machine-{i}")
        execution_row(sm, status="RUNNING", sync_due_at=None)
    Execution.objects.update(sync_due_at=timezone.now())
    err = StringIO()
    with silent() as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        started = time.monotonic()
        with pytest.raises(CommandError, match="did nothing"):
            call_command("sync", stdout=StringIO(), stderr=err)
        elapsed = time.monotonic() - started
    # One call found AWS away; the rest of that region was not tried again.
    assert elapsed < 2.0 + 5.0, elapsed
    assert "AWS did not answer within 2 s" in err.getvalue()
    assert "skipped 5 state machines and 5 executions of default identity in us-east-1" in (
        err.getvalue()
    )
    # Not a call per state machine: the first one's attempts, no more.
    assert 1 <= sum(endpoint.arrived.values()) <= 2, (endpoint.arrived, err.getvalue())


# (1 s, 1.6 s): the deadline runs out in the middle of the first listing, as
# it did on a loaded CI machine with (0.3 s, 1 s), where it was then reported
# as "AWS unreachable" and not as the deadline. (1 s, 0.8 s): it cuts the
# very first call, as (1 s, 1.6 s) did on a loaded CI machine, where the
# command then failed with "did nothing".
@pytest.mark.parametrize(("latency", "deadline"), [(0.3, 1.0), (1.0, 1.6), (1.0, 0.8)])
def test_a_slow_aws_ends_the_cycle_at_its_deadline_and_says_what_is_left(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    settings: Any,
    latency: float,
    deadline: float,
) -> None:
    for i in range(12):
        make_state_machine(f"machine-{i}", PASS)
    call_command("sync", stdout=StringIO(), stderr=StringIO())
    assert StateMachine.objects.count() == 12
    fake_aws.app.configure(faults={"latency_seconds": latency})
    settings.SFNUI_AWS_CONNECT_TIMEOUT = 0.2
    settings.SFNUI_SYNC_CYCLE_DEADLINE = deadline
    StateMachine.objects.update(list_due_at=timezone.now())
    out, err = StringIO(), StringIO()
    started = time.monotonic()
    call_command("sync", stdout=out, stderr=err)
    elapsed = time.monotonic() - started
    # That the deadline stopped the cycle is what it says below (state
    # machines not listed: what the code decided; how many depends on the
    # machine's speed, and a call the deadline cut is the deadline's, not
    # "AWS unreachable"); the time, with room for a loaded machine, only that
    # nothing waited far past it.
    assert elapsed < deadline + 5.0, elapsed
    said = re.search(
        rf"cycle deadline \({deadline:g} s\) reached: (\d+) state machines not listed",
        out.getvalue(),
    )
    assert said, (out.getvalue(), err.getvalue())
    assert 1 <= int(said.group(1)) <= 12
    assert "AWS unreachable: skipped" not in err.getvalue()
