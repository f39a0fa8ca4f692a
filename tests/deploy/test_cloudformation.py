"""The CloudFormation templates of deploy/cloudformation/: cfn-lint finds nothing
in any of them, and deployed into moto's CloudFormation on the fake endpoint
the home stack and the forwarder stacks bring Step Functions status changes
from the home account, another account and another region into the one queue.

What moto cannot show (it deploys neither AWS::SQS::QueuePolicy nor
AWS::Events::EventBusPolicy, skipping them with a warning, and it checks no
IAM or resource policy at all):

- that the queue policy lets EventBridge send only for this stack's rule, and
  that without it nothing is delivered;
- that the bus policy lets the SourceAccountIds put events on the home bus,
  and that an account not listed is refused;
- that EventBridge assumes the forwarder's role (moto forwards without it),
  and that the reader role's trust policy and external id are enforced (moto's
  AssumeRole succeeds for anyone);
- that a forwarded event keeps its own account and region: moto re-puts it on
  the home bus, which stamps the home account and region on the envelope. The
  detail (executionArn) is unchanged either way, and it is what is asserted;
- the home policy with AllowStopExecution=false or ReaderRoleName="": moto
  keeps the AWS::NoValue of an !If in the Statement list as a null item and
  refuses the policy (a strict xfail below; cfn-lint checks that branch).

test_moto_skips_only_the_resource_policies pins the first two: it fails when
moto starts deploying them, or stops deploying something else.
"""

from __future__ import annotations

import ast
import json
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cfnlint.api import ManualArgs, lint
from cfnlint.decode.decode import decode_str

from fakeaws import FakeAwsServer

# moto's note on each resource type it skips (listed in NOT_IN_MOTO).
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")

TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation"
HOME = "sfnui-events.yaml"
FORWARDER = "sfnui-events-forwarder.yaml"
READER = "sfnui-reader-role.yaml"
HOME_ACCOUNT = "123456789012"  # moto's default credentials
OTHER_ACCOUNT = "210987654321"
HOME_REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
HOME_BUS = f"arn:aws:events:{HOME_REGION}:{HOME_ACCOUNT}:event-bus/default"
PATTERN = {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}
NOT_IN_MOTO = {
    HOME: {
        "QueuePolicy": "AWS::SQS::QueuePolicy",
        "ForwardersBusPolicy": "AWS::Events::EventBusPolicy",
    },
    FORWARDER: {},
    READER: {},
}


def test_the_templates_are_the_ones_tested() -> None:
    assert sorted(p.name for p in TEMPLATES.glob("*.yaml")) == sorted(NOT_IN_MOTO)


@pytest.mark.parametrize("name", sorted(NOT_IN_MOTO))
def test_cfn_lint_finds_no_error_or_warning(name: str) -> None:
    matches = lint(
        (TEMPLATES / name).read_text(), config=ManualArgs(regions=[HOME_REGION, OTHER_REGION])
    )
    problems = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]
    assert [p for p in problems if p[0] in "EW"] == []


class Identity:
    """boto3 clients on the fake endpoint for one set of credentials (one account)."""

    def __init__(self, url: str, **credentials: Any) -> None:
        self.url = url
        # Any: boto3's stubs type client() by literal service names only.
        self.session: Any = boto3.session.Session(**credentials)

    def client(self, service: str, region: str = HOME_REGION) -> Any:
        return self.session.client(service, region_name=region, endpoint_url=self.url)

    def assume(self, role_arn: str, **extra: str) -> Identity:
        # moto maps the session credentials to the role's account.
        creds = self.client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName="sfnui-test", **extra
        )["Credentials"]
        return Identity(
            self.url,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def account(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])

    def deploy(self, region: str, stack: str, template: str, **parameters: str) -> dict[str, str]:
        cfn = self.client("cloudformation", region)
        cfn.create_stack(
            StackName=stack,
            TemplateBody=(TEMPLATES / template).read_text(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        cfn.get_waiter("stack_create_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        (described,) = cfn.describe_stacks(StackName=stack)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


@pytest.fixture
def home(fake_aws: FakeAwsServer) -> Identity:
    identity = Identity(fake_aws.url)
    assert identity.account() == HOME_ACCOUNT
    return identity


@pytest.fixture
def other(home: Identity) -> Identity:
    identity = home.assume(f"arn:aws:iam::{OTHER_ACCOUNT}:role/deployer")
    assert identity.account() == OTHER_ACCOUNT
    return identity


def status_change(events: Any, execution_arn: str, status: str) -> None:
    state_machine = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
    detail = {
        "executionArn": execution_arn,
        "stateMachineArn": state_machine,
        "name": execution_arn.rsplit(":", 1)[1],
        "status": status,
        "startDate": 1767225600000,
        "stopDate": None,
        "input": "{}",
        "inputDetails": {"included": True},
        "output": None,
        "outputDetails": None,
    }
    put(events, "Step Functions Execution Status Change", detail, [execution_arn])


def put(events: Any, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
    entry = {
        "Source": "aws.states",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "Resources": resources,
    }
    answer = events.put_events(Entries=[entry])
    assert answer["FailedEntryCount"] == 0, answer


def receive(sqs: Any, queue_url: str, count: int, within: float = 15.0) -> list[dict[str, Any]]:
    """Long-poll until `count` messages arrived (each deleted once read) or time is up."""
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while len(bodies) < count and (left := deadline - time.monotonic()) > 0:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=max(1, min(5, int(left)))
        )
        for message in answer.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_status_changes_from_every_account_and_region_reach_the_home_queue(
    home: Identity, other: Identity
) -> None:
    outputs = home.deploy(HOME_REGION, "sfnui-events", HOME, SourceAccountIds=OTHER_ACCOUNT)
    bus = outputs["EventBusArn"]
    assert bus == HOME_BUS
    assert outputs["QueueArn"] == f"arn:aws:sqs:{HOME_REGION}:{HOME_ACCOUNT}:sfnui-events"
    # Another account and region, as a StackSet instance would be; and another
    # region of the home account.
    forwarders = {
        (OTHER_ACCOUNT, OTHER_REGION): other.deploy(
            OTHER_REGION, "sfnui-forwarder", FORWARDER, HomeEventBusArn=bus
        ),
        (HOME_ACCOUNT, OTHER_REGION): home.deploy(
            OTHER_REGION, "sfnui-forwarder", FORWARDER, HomeEventBusArn=bus
        ),
    }
    for (account, region), out in forwarders.items():
        assert out["RuleArn"].startswith(f"arn:aws:events:{region}:{account}:rule/")
        identity = other if account == OTHER_ACCOUNT else home
        events = identity.client("events", region)
        rule = out["RuleArn"].rsplit("/", 1)[1]
        assert json.loads(events.describe_rule(Name=rule)["EventPattern"]) == PATTERN
        (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert (target["Arn"], target["RoleArn"]) == (bus, out["RoleArn"])

    sqs = home.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="sfnui-events")["QueueUrl"]
    sent = {}
    for identity, account, region in [
        (home, HOME_ACCOUNT, HOME_REGION),
        (other, OTHER_ACCOUNT, OTHER_REGION),
        (home, HOME_ACCOUNT, OTHER_REGION),
    ]:
        events = identity.client("events", region)
        # Not a status change: neither forwarded nor queued.
        put(events, "AWS API Call via CloudTrail", {"eventSource": "states.amazonaws.com"}, [])
        arn = f"arn:aws:states:{region}:{account}:execution:order-pipeline:{uuid.uuid4()}"
        status_change(events, arn, "RUNNING")
        sent[arn] = "RUNNING"

    bodies = receive(sqs, queue_url, count=len(sent))
    assert {b["detail"]["executionArn"]: b["detail"]["status"] for b in bodies} == sent
    assert {(b["source"], b["detail-type"]) for b in bodies} == {
        ("aws.states", "Step Functions Execution Status Change")
    }
    # moto delivers within put_events: had the CloudTrail events matched, they
    # would be in the queue already.
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", []) == []


def test_the_queue_and_its_rule_are_configured_as_designed(home: Identity) -> None:
    outputs = home.deploy(HOME_REGION, "sfnui-events", HOME, QueueName="sfnui-events-prod")
    assert outputs["QueueUrl"].endswith(f"/{HOME_ACCOUNT}/sfnui-events-prod")
    attributes = home.client("sqs").get_queue_attributes(
        QueueUrl=outputs["QueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert attributes["MessageRetentionPeriod"] == str(4 * 24 * 3600)
    assert attributes["VisibilityTimeout"] == "60"
    assert attributes["SqsManagedSseEnabled"] == "true"
    events = home.client("events")
    rule = outputs["RuleArn"].rsplit("/", 1)[1]
    assert json.loads(events.describe_rule(Name=rule)["EventPattern"]) == PATTERN
    (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
    # An SQS target is authorized by the queue policy, never by a role.
    assert target["Arn"] == outputs["QueueArn"]
    assert "RoleArn" not in target


def policy_document(iam: Any, policy_arn: str) -> dict[str, Any]:
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]
    return dict(document["Document"])


def inline_policy(iam: Any, role: str, name: str) -> dict[str, Any]:
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):
        # moto answers the inline policies of a role that CloudFormation made
        # with the Python repr of the document, not its JSON.
        document = ast.literal_eval(document)
    return dict(document)


def actions(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


READ = {
    "states:ListStateMachines",
    "states:DescribeStateMachine",
    "states:ListExecutions",
    "states:DescribeExecution",
    "states:GetExecutionHistory",
}
CONSUME = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}


def test_the_reader_policy_is_attached_to_sfnuis_role(home: Identity) -> None:
    iam = home.client("iam")
    iam.create_role(RoleName="sfnui", AssumeRolePolicyDocument="{}")
    outputs = home.deploy(HOME_REGION, "sfnui-events", HOME, SfnuiRoleName="sfnui")
    attached = iam.list_attached_role_policies(RoleName="sfnui")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [outputs["ReaderPolicyArn"]]
    document = policy_document(iam, outputs["ReaderPolicyArn"])
    assert actions(document) == READ | CONSUME | {"states:StopExecution", "sts:AssumeRole"}
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["ConsumeEvents"]["Resource"] == outputs["QueueArn"]
    assert by_sid["AssumeReaderRoles"]["Resource"] == "arn:aws:iam::*:role/sfnui-reader"


@pytest.mark.xfail(
    strict=True,
    raises=ClientError,
    reason="moto keeps an !If's AWS::NoValue as a null item of the Statement list and "
    "refuses the policy (MalformedPolicyDocument), where CloudFormation drops the item",
)
def test_a_read_only_reader_policy_without_roles_to_assume(home: Identity) -> None:
    outputs = home.deploy(
        HOME_REGION, "sfnui-events", HOME, AllowStopExecution="false", ReaderRoleName=""
    )
    document = policy_document(home.client("iam"), outputs["ReaderPolicyArn"])
    assert actions(document) == READ | CONSUME


def test_no_reader_policy_when_not_wanted(home: Identity) -> None:
    outputs = home.deploy(HOME_REGION, "sfnui-events", HOME, CreateReaderPolicy="false")
    assert "ReaderPolicyArn" not in outputs
    assert home.client("iam").list_policies(Scope="Local")["Policies"] == []


def test_the_reader_role_in_another_account(home: Identity, other: Identity) -> None:
    trusted = f"arn:aws:iam::{HOME_ACCOUNT}:role/sfnui"
    outputs = other.deploy(
        HOME_REGION, "sfnui-reader", READER, TrustedPrincipalArn=trusted, ExternalId="incident-42"
    )
    assert outputs["RoleArn"] == f"arn:aws:iam::{OTHER_ACCOUNT}:role/sfnui-reader"
    iam = other.client("iam")
    role = iam.get_role(RoleName="sfnui-reader")["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": trusted}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "incident-42"}}
    granted: set[str] = set()
    for name in iam.list_role_policies(RoleName="sfnui-reader")["PolicyNames"]:
        granted |= actions(inline_policy(iam, "sfnui-reader", name))
    assert granted == READ | {"states:StopExecution"}
    # What SFNUI_ACCOUNTS makes sfnui do (moto does not check the trust policy).
    reader = home.assume(outputs["RoleArn"], ExternalId="incident-42")
    assert reader.account() == OTHER_ACCOUNT


def test_a_read_only_reader_role_without_external_id(other: Identity) -> None:
    other.deploy(
        HOME_REGION,
        "sfnui-reader",
        READER,
        TrustedPrincipalArn=f"arn:aws:iam::{HOME_ACCOUNT}:root",
        RoleName="sfnui-reader-ro",
        AllowStopExecution="false",
    )
    iam = other.client("iam")
    (trust,) = iam.get_role(RoleName="sfnui-reader-ro")["Role"]["AssumeRolePolicyDocument"][
        "Statement"
    ]
    assert "Condition" not in trust
    assert iam.list_role_policies(RoleName="sfnui-reader-ro")["PolicyNames"] == [
        "sfnui-read-step-functions"
    ]


@pytest.mark.parametrize("name", sorted(NOT_IN_MOTO))
def test_moto_skips_only_the_resource_policies(home: Identity, name: str) -> None:
    template, errors = decode_str((TEMPLATES / name).read_text())
    assert not errors
    assert template is not None
    wanted = {k: v["Type"] for k, v in template["Resources"].items()}
    parameters = {
        HOME: {"SourceAccountIds": OTHER_ACCOUNT},
        FORWARDER: {"HomeEventBusArn": HOME_BUS},
        READER: {"TrustedPrincipalArn": f"arn:aws:iam::{HOME_ACCOUNT}:root"},
    }[name]
    home.deploy(OTHER_REGION, "stack", name, **parameters)
    resources = home.client("cloudformation", OTHER_REGION).describe_stack_resources(
        StackName="stack"
    )["StackResources"]
    # moto lists a skipped resource as an entry without id or type.
    created = {r["LogicalResourceId"]: r["ResourceType"] for r in resources if "ResourceType" in r}
    assert {k: v for k, v in wanted.items() if k not in created} == NOT_IN_MOTO[name]
