"""The sync of versions, aliases and the definition each execution ran."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from executions import aws
from executions.models import (
    Definition,
    Execution,
    StateMachine,
    StateMachineAlias,
    StateMachineVersion,
)
from executions.sync import flows, runs
from tests.support.helpers import FAIL, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

TODAY = {"StartAt": "Today", "States": {"Today": {"Type": "Succeed"}}}


def full_cycle() -> runs.Stats:
    total = runs.Stats()
    total.merge(flows.discover_state_machines("us-east-1"))
    for sm in StateMachine.objects.all():
        total.merge(flows.list_state_machine(sm))
    due = Execution.objects.filter(sync_due_at__isnull=False).order_by("pk")
    total.merge(flows.sync_executions(list(due.values_list("pk", flat=True)), "us-east-1"))
    return total


@pytest.fixture
def canary(make_state_machine: Callable[..., str], sfn: Any) -> dict[str, str]:
    """checkout: v1 passes, v2 fails, alias "live" 90/10, today's text a third one."""
    arn = make_state_machine("checkout", PASS)
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn, description="first")
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(FAIL))
    v2 = sfn.publish_state_machine_version(stateMachineArn=arn, description="second")
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(TODAY))
    alias = sfn.create_state_machine_alias(
        name="live",
        description="production traffic",
        routingConfiguration=[
            {"stateMachineVersionArn": v1["stateMachineVersionArn"], "weight": 90},
            {"stateMachineVersionArn": v2["stateMachineVersionArn"], "weight": 10},
        ],
    )
    return {
        "arn": arn,
        "v1": v1["stateMachineVersionArn"],
        "v2": v2["stateMachineVersionArn"],
        "alias": alias["stateMachineAliasArn"],
    }


def test_discovery_stores_versions_and_aliases_with_their_weights(
    canary: dict[str, str],
) -> None:
    flows.discover_state_machines("us-east-1")

    versions = {v.version: v for v in StateMachineVersion.objects.select_related("definition")}
    assert set(versions) == {1, 2}
    assert versions[1].arn == canary["v1"]
    assert versions[1].description == "first"
    assert versions[1].definition is not None
    assert versions[2].definition is not None
    assert json.loads(versions[1].definition.text) == PASS
    assert json.loads(versions[2].definition.text) == FAIL
    assert versions[1].creation_date is not None
    alias = StateMachineAlias.objects.get()
    assert (alias.arn, alias.name, alias.description) == (
        canary["alias"],
        "live",
        "production traffic",
    )
    assert alias.routing == [
        {"stateMachineVersionArn": canary["v1"], "weight": 90},
        {"stateMachineVersionArn": canary["v2"], "weight": 10},
    ]
    assert alias.status == "ACTIVE"


def test_versions_and_aliases_gone_from_aws_are_deleted_and_weights_follow(
    canary: dict[str, str], sfn: Any
) -> None:
    flows.discover_state_machines("us-east-1")
    sfn.update_state_machine_alias(
        stateMachineAliasArn=canary["alias"],
        routingConfiguration=[{"stateMachineVersionArn": canary["v2"], "weight": 100}],
    )
    sfn.delete_state_machine_version(stateMachineVersionArn=canary["v1"])
    sm = StateMachine.objects.get()

    flows.describe_state_machines([sm.pk], "us-east-1")

    statuses = dict(StateMachineVersion.objects.values_list("version", "status"))
    assert statuses == {1: "DELETED", 2: "ACTIVE"}
    assert StateMachineAlias.objects.get().routing == [
        {"stateMachineVersionArn": canary["v2"], "weight": 100}
    ]
    sfn.delete_state_machine_alias(stateMachineAliasArn=canary["alias"])
    flows.describe_state_machines([sm.pk], "us-east-1")
    assert StateMachineAlias.objects.get().status == "DELETED"


def test_a_version_is_described_once_however_often_the_state_machine_is(
    canary: dict[str, str],
) -> None:
    flows.discover_state_machines("us-east-1")
    sm_pk = StateMachine.objects.get().pk
    with aws.count_calls() as calls:
        flows.describe_state_machines([sm_pk], "us-east-1")
    # The state machine itself, and not its two (immutable) versions again.
    assert calls["DescribeStateMachine"] == 1
    assert calls["ListStateMachineVersions"] == 1
    assert calls["ListStateMachineAliases"] == 1
    assert calls["DescribeStateMachineAlias"] == 1


def test_each_execution_links_the_definition_it_ran_stored_once_per_text(
    canary: dict[str, str], start: Callable[..., str], sfn: Any
) -> None:
    through_alias = [start(canary["alias"], f"live-{i}") for i in range(20)]
    on_v2 = start(canary["v2"], "on-v2")
    plain = start(canary["arn"], "plain")
    wait_until_finished(sfn, [*through_alias, on_v2, plain])

    stats = full_cycle()

    assert not stats.errors
    rows = {ex.name: ex for ex in Execution.objects.select_related("definition", "state_machine")}
    for name in (f"live-{i}" for i in range(20)):
        ex = rows[name]
        assert ex.state_machine_alias_arn == canary["alias"]
        assert ex.state_machine_version_arn in (canary["v1"], canary["v2"])
        expected = PASS if ex.state_machine_version_arn == canary["v1"] else FAIL
        assert ex.definition is not None
        assert json.loads(ex.definition.text) == expected
        assert ex.status == ("SUCCEEDED" if expected is PASS else "FAILED")
    assert rows["on-v2"].state_machine_version_arn == canary["v2"]
    assert rows["on-v2"].state_machine_alias_arn == ""
    assert rows["plain"].state_machine_version_arn == ""
    assert rows["plain"].definition is not None
    assert json.loads(rows["plain"].definition.text) == TODAY
    # Three texts (v1, v2, today's), each stored once.
    assert Definition.objects.count() == 3
    # Only the execution of the bare state machine asked AWS for its definition.
    assert stats.calls["DescribeStateMachineForExecution"] == 1


def test_an_execution_keeps_the_definition_it_ran_after_an_update(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = make_state_machine("orders", PASS)
    before = start(arn, "before")
    wait_until_finished(sfn, [before])
    full_cycle()
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(FAIL))
    after = start(arn, "after")
    wait_until_finished(sfn, [after])

    full_cycle()

    texts = {
        ex.name: json.loads(ex.definition.text)
        for ex in Execution.objects.select_related("definition")
        if ex.definition is not None
    }
    assert texts == {"before": PASS, "after": FAIL}


def test_a_version_published_after_the_last_describe_is_learned_from_its_execution(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = make_state_machine("orders", PASS)
    full_cycle()
    assert not StateMachineVersion.objects.exists()
    version = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    ran = start(version, "fresh")
    wait_until_finished(sfn, [ran])

    stats = full_cycle()

    stored = StateMachineVersion.objects.get()
    assert stored.arn == version
    assert Execution.objects.get().definition_id == stored.definition_id
    assert stats.calls["DescribeStateMachineForExecution"] == 0


def test_definition_calls_stay_a_fraction_of_the_sync(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    """The API cost: one DescribeStateMachineForExecution per execution of the
    bare state machine, in its life; none for executions of versions or aliases."""
    arn = make_state_machine("orders", PASS)
    plain = [start(arn, f"p-{i}") for i in range(10)]
    wait_until_finished(sfn, plain)

    first = full_cycle()
    second = full_cycle()

    assert first.calls["DescribeStateMachineForExecution"] == 10
    others = sum(n for op, n in first.calls.items() if op != "DescribeStateMachineForExecution")
    assert first.calls["DescribeStateMachineForExecution"] <= others / 2
    assert second.calls["DescribeStateMachineForExecution"] == 0


def test_a_throttled_definition_read_is_retried_and_the_execution_stays_due(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    fake_aws: Any,
    settings: Any,
) -> None:
    # A budget that refills at once after AWS's throttling drained it.
    settings.SFNUI_API_QUOTAS = {
        **settings.SFNUI_API_QUOTAS,
        "DescribeStateMachineForExecution": (1e6, 1e6),
    }
    arn = make_state_machine("orders", PASS)
    ran = start(arn, "r-1")
    wait_until_finished(sfn, [ran])
    only = ["DescribeStateMachineForExecution"]
    fake_aws.app.configure(faults={"throttle_fraction": 1.0, "throttle_operations": only})
    full_cycle()
    ex = Execution.objects.get()
    assert ex.definition_id is None
    assert ex.sync_due_at is not None
    fake_aws.app.configure(faults={})
    # AWS's throttling paused every caller of the operation for a second (budget.drain).
    time.sleep(1.1)

    full_cycle()

    assert Execution.objects.get().definition is not None


def test_the_demo_starts_payments_through_a_canary_alias(sfn: Any, viewer_client: Any) -> None:
    from demo.traffic import Traffic
    from demo.workflows import WORKFLOWS

    traffic = Traffic(sfn, rng=random.Random(7))
    arn = traffic.seed()["payment-capture"]
    again = Traffic(sfn).seed()  # a restarted demo makes no second version
    assert again["payment-capture"] == arn
    payment = next(wf for wf in WORKFLOWS if wf.name == "payment-capture")
    started = [traffic.start(payment) for _ in range(40)]
    assert all(started)
    wait_until_finished(sfn, [a for a in started if a])

    full_cycle()

    assert sorted(StateMachineVersion.objects.values_list("version", flat=True)) == [1, 2]
    alias = StateMachineAlias.objects.get()
    assert [r["weight"] for r in alias.routing] == [90, 10]
    runs = Execution.objects.filter(state_machine__arn=arn)
    assert runs.count() == 40
    assert set(runs.values_list("state_machine_alias_arn", flat=True)) == {alias.arn}
    # 10 % of them, give or take (at least one in 40 is not certain: not asserted).
    assert runs.filter(state_machine_version_arn=f"{arn}:2").count() < 20
    v1, v2 = (v.definition for v in StateMachineVersion.objects.order_by("version"))
    assert v1 is not None
    assert v2 is not None
    assert "NewProviderLimit" in v2.text
    assert "NewProviderLimit" not in v1.text
    # The state machine page, from what the sync stored: the alias's bars and
    # each version's numbers over the last day.
    page = viewer_client.get(reverse("state_machine_detail", args=[arn]))
    assert page.status_code == 200
    shown = page.context["versions"]
    assert [r.weight for r in shown.aliases[0].routes] == [90, 10]
    assert sum(row.stats.runs for row in shown.versions) == 40
    assert 'id="alias-live"' in page.content.decode()


def test_without_budget_the_definition_waits_and_the_execution_sync_does_not(
    settings: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    quotas = dict(settings.SFNUI_API_QUOTAS)
    # One token, refilled once in a thousand seconds.
    settings.SFNUI_API_QUOTAS = {**quotas, "DescribeStateMachineForExecution": (2, 0.001)}
    arn = make_state_machine("orders", PASS)
    runs = [start(arn, f"r-{i}") for i in range(5)]
    wait_until_finished(sfn, runs)

    stats = full_cycle()

    assert stats.calls["DescribeStateMachineForExecution"] == 1
    assert Execution.objects.filter(history_complete=True).count() == 5
    assert Execution.objects.filter(definition__isnull=True).count() == 4
    # The next description of the state machine fills the rest, budget allowing.
    settings.SFNUI_API_QUOTAS = {**quotas, "DescribeStateMachineForExecution": (1e6, 1e6)}
    with aws.count_calls() as calls:
        flows.describe_state_machines([StateMachine.objects.get().pk], "us-east-1")
    assert calls["DescribeStateMachineForExecution"] == 4
    assert not Execution.objects.filter(definition__isnull=True).exists()
    assert Definition.objects.count() == 1


def test_executions_of_a_version_are_backfilled_without_a_call(
    canary: dict[str, str], start: Callable[..., str], sfn: Any
) -> None:
    ran = start(canary["v2"], "on-v2")
    wait_until_finished(sfn, [ran])
    full_cycle()
    Execution.objects.update(definition=None)

    with aws.count_calls() as calls:
        flows.describe_state_machines([StateMachine.objects.get().pk], "us-east-1")

    assert calls["DescribeStateMachineForExecution"] == 0
    ex = Execution.objects.select_related("definition").get()
    assert ex.definition is not None
    assert json.loads(ex.definition.text) == FAIL
