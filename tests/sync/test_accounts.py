"""Several accounts and regions (SFNUI_ACCOUNTS): each read with its own
identity (an assumed role, refreshed before it expires), its own budget, and
nothing sent for an account or region no identity reads."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from executions import aws, budget
from executions.models import Execution, StateMachine, SyncRun
from executions.sync import flows
from sfnui.settings import env_accounts
from tests.support.helpers import PASS, wait_until_finished

pytestmark = pytest.mark.django_db

HOME = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{OTHER}:role/sfnui-reader"


def accounts(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role_arn": "", "external_id": "", "name": "", **entry, "regions": entry["regions"]}
        for entry in entries
    ]


@pytest.fixture
def two_accounts(fake_aws: Any, settings: Any) -> Any:
    """The default identity in us-east-1; a role in OTHER in us-east-1 and eu-west-1."""
    settings.SFNUI_ACCOUNTS = accounts(
        {"regions": ["us-east-1"]},
        {"role_arn": ROLE, "external_id": "xyz-123", "regions": ["us-east-1", "eu-west-1"]},
    )
    return fake_aws


def other_account_client(fake_aws: Any, region: str) -> Any:
    """Step Functions in OTHER, as the test's own caller (moto maps assumed
    credentials to the role's account)."""
    sts = boto3.client("sts", region_name=region, endpoint_url=fake_aws.url)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER}:role/test", RoleSessionName="test")[
        "Credentials"
    ]
    return boto3.client(
        "stepfunctions",
        region_name=region,
        endpoint_url=fake_aws.url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def make(client: Any, name: str) -> str:
    arn: str = client.create_state_machine(
        name=name, definition=json.dumps(PASS), roleArn=f"arn:aws:iam::{OTHER}:role/sfn"
    )["stateMachineArn"]
    return arn


# --- The setting ----------------------------------------------------------------------------


def test_the_setting_reads_roles_external_ids_and_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SFNUI_ACCOUNTS",
        json.dumps(
            [
                {"regions": ["us-east-1"]},
                {"role_arn": ROLE, "external_id": "abc", "regions": "eu-west-1, us-west-2"},
            ]
        ),
    )
    assert env_accounts("SFNUI_ACCOUNTS") == [
        {"role_arn": "", "external_id": "", "regions": ["us-east-1"], "name": ""},
        {"role_arn": ROLE, "external_id": "abc", "regions": ["eu-west-1", "us-west-2"], "name": ""},
    ]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not json", "JSON list"),
        ("[]", "non-empty"),
        ('[{"role_arn": "arn:aws:iam::1:user/x"}]', "not an IAM role ARN"),
        ('[{"regions": ["mars-1"]}]', "region names"),
        ('[{"regions": ["us-east-1"], "color": "red"}]', "unknown keys"),
        (json.dumps([{"role_arn": ROLE}, {"role_arn": ROLE}]), "named twice"),
    ],
)
def test_a_bad_setting_says_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("SFNUI_ACCOUNTS", value)
    with pytest.raises(ImproperlyConfigured, match=says):
        env_accounts("SFNUI_ACCOUNTS")


# --- Which identity reads what -------------------------------------------------------------


def test_an_arn_is_read_with_the_identity_of_its_account(two_accounts: Any) -> None:
    assert aws.target_for(OTHER, "eu-west-1").role_arn == ROLE
    assert aws.target_for(HOME, "us-east-1").key == aws.DEFAULT
    # The default identity reads whatever account it can reach.
    assert aws.target_for("999999999999", "us-east-1").key == aws.DEFAULT
    assert [(t.key, r) for t, r in aws.scheduled()] == [
        (aws.DEFAULT, "us-east-1"),
        (OTHER, "us-east-1"),
        (OTHER, "eu-west-1"),
    ]


def test_an_account_no_identity_reads_is_refused_without_a_call(
    fake_aws: Any, settings: Any
) -> None:
    settings.SFNUI_ACCOUNTS = accounts({"role_arn": ROLE, "regions": ["us-east-1"]})
    arn = f"arn:aws:states:us-east-1:{HOME}:execution:hello:run-1"
    with aws.count_calls() as calls, pytest.raises(aws.NotConfigured, match=HOME):
        aws.describe_execution(arn)
    assert not calls
    assert fake_aws.post("/fakeaws/calls", {})["calls"] == {}


def test_a_region_aws_does_not_have_is_refused_without_a_call(fake_aws: Any) -> None:
    clients = aws._client.cache_info().currsize
    for i in range(20):
        arn = f"arn:aws:states:aa-nowhere-{i}:{HOME}:execution:hello:run-1"
        with aws.count_calls() as calls, pytest.raises(aws.NotConfigured, match="no such region"):
            aws.describe_execution(arn)
        assert not calls
    # No client was built for any of them: a pasted ARN cannot grow the process.
    assert aws._client.cache_info().currsize == clients


# --- Syncing two accounts ------------------------------------------------------------------


def test_each_account_and_region_is_discovered_listed_and_synced_with_its_identity(
    two_accounts: Any, sfn: Any, make_state_machine: Any, start: Any, settings: Any
) -> None:
    # A bucket that does not refill while the test looks at it.
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "GetExecutionHistory": (100, 0.01)}
    home_sm = make_state_machine("home-hello", PASS)
    home_run = start(home_sm, "home-1")
    other = other_account_client(two_accounts, "eu-west-1")
    other_sm = make(other, "other-hello")
    other_run = other.start_execution(stateMachineArn=other_sm, name="other-1", input="{}")[
        "executionArn"
    ]
    wait_until_finished(sfn, [home_run])
    wait_until_finished(other, [other_run])

    for t, region in aws.scheduled():
        assert not flows.discover_state_machines(region, t.key).errors
    machines = {sm.arn: (sm.account, sm.region) for sm in StateMachine.objects.all()}
    assert machines == {home_sm: (HOME, "us-east-1"), other_sm: (OTHER, "eu-west-1")}
    for sm in StateMachine.objects.all():
        assert not flows.list_state_machine(sm).errors
    due = list(
        Execution.objects.values_list("pk", "state_machine__account", "state_machine__region")
    )
    for pk, account, region in due:
        assert not flows.sync_executions([pk], region, aws.key_for(account, region)).errors

    ex = Execution.objects.get(arn=other_run)
    assert (ex.status, ex.history_complete) == ("SUCCEEDED", True)
    assert Execution.objects.get(arn=home_run).status == "SUCCEEDED"
    # Each run says whose budget it spent.
    runs = set(SyncRun.objects.values_list("kind", "account", "region"))
    assert ("discover", OTHER, "eu-west-1") in runs
    assert ("list", OTHER, "eu-west-1") in runs
    assert ("list", aws.DEFAULT, "us-east-1") in runs
    # The calls about OTHER's execution were paid from OTHER's bucket.
    other_level, capacity = budget.level("eu-west-1", "GetExecutionHistory", OTHER)
    assert other_level < capacity
    untouched, capacity = budget.level("eu-west-1", "GetExecutionHistory", aws.DEFAULT)
    assert untouched == capacity


def test_a_pasted_arn_of_the_other_account_is_looked_up_with_its_role(two_accounts: Any) -> None:
    other = other_account_client(two_accounts, "us-east-1")
    run = other.start_execution(stateMachineArn=make(other, "pasted"), name="pasted-1", input="{}")[
        "executionArn"
    ]
    wait_until_finished(other, [run])
    ex = flows.import_execution(run)
    assert (ex.status, ex.state_machine.account) == ("SUCCEEDED", OTHER)
    assert SyncRun.objects.get(kind="lookup").account == OTHER


def test_the_assumed_role_is_refreshed_before_it_expires(two_accounts: Any) -> None:
    t = aws.target(OTHER)
    client = aws.client("us-east-1", t)
    credentials = client._request_signer._credentials  # botocore's refreshable credentials
    first = credentials.get_frozen_credentials()
    assert first.access_key
    # Still valid: the same credentials, no new AssumeRole.
    assert credentials.get_frozen_credentials().access_key == first.access_key
    # Two hours on, moto's one-hour credentials have expired: botocore's fetcher
    # assumes the role again by itself.
    with time_machine.travel(timezone.now() + dt.timedelta(hours=2)):
        second = credentials.get_frozen_credentials()
        assert second.access_key != first.access_key
        list(aws.list_state_machines("us-east-1", t))
