"""`manage.py forget --account`: drops one account's cached rows, nothing else."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from executions.models import Execution, HistoryEvent, StateMachine
from tests.support.factories import events, execution_row, state_machine_row

pytestmark = pytest.mark.django_db


def test_it_forgets_one_accounts_state_machines_executions_and_history() -> None:
    demo = state_machine_row("order-pipeline")
    ex = execution_row(demo, status="RUNNING")
    events(ex, [("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})])
    execution_row(demo)
    elsewhere = state_machine_row("payments", account="210987654321")
    kept = execution_row(elsewhere)
    eu = state_machine_row("eu-orders", region="eu-west-1")

    out = io.StringIO()
    call_command("forget", "--account", "123456789012", "--region", "us-east-1", stdout=out)

    assert out.getvalue().strip() == (
        "forgot 1 state machines and 2 executions of account 123456789012"
    )
    assert set(StateMachine.objects.values_list("pk", flat=True)) == {elsewhere.pk, eu.pk}
    assert list(Execution.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not HistoryEvent.objects.exists()

    call_command("forget", "--account", "123456789012", stdout=io.StringIO())
    assert list(StateMachine.objects.values_list("pk", flat=True)) == [elsewhere.pk]
