"""Step Functions ARNs: parsing, validation, and links to the AWS console."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

# AWS names: 1-80 characters, no white space, brackets, wildcards, control
# characters or any of " # % \ ^ | ~ ` $ & , ; : /
_NAME = r"[^\s\x00-\x1f\x7f-\x9f<>{}\[\]?*\"#%\\^|~`$&,;:/]{1,80}"
# arn:aws:states:us-east-1:123456789012:execution:OrderPipeline:run-42
# arn:aws:states:us-east-1:123456789012:execution:OrderPipeline/MapLabel:uuid
#   (a child execution of a distributed Map run)
# arn:aws:states:us-east-1:123456789012:express:OrderPipeline:name:uuid
_EXECUTION_RE = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):states:"
    r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):(?P<account>\d{12}):"
    rf"(?P<kind>execution|express):(?P<state_machine>{_NAME})"
    rf"(?:/(?P<map_label>{_NAME}))?:(?P<name>{_NAME})(?::(?P<express_id>{_NAME}))?$"
)
_STATE_MACHINE_RE = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):states:"
    r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):(?P<account>\d{12}):"
    rf"stateMachine:(?P<name>{_NAME})(?::(?P<qualifier>{_NAME}))?$"
)
# An execution ARN somewhere inside pasted text or a console URL.
_EMBEDDED_RE = re.compile(r"arn:aws[a-z-]*:states:[^\s\"'<>#?&]+")


@dataclass(frozen=True)
class ExecutionArn:
    arn: str
    partition: str
    region: str
    account: str
    state_machine_name: str
    name: str
    map_run_label: str | None
    express: bool

    @property
    def state_machine_arn(self) -> str:
        return (
            f"arn:{self.partition}:states:{self.region}:{self.account}"
            f":stateMachine:{self.state_machine_name}"
        )


@dataclass(frozen=True)
class StateMachineArn:
    arn: str
    partition: str
    region: str
    account: str
    name: str


class NotAnArn(ValueError):
    pass


def parse_execution_arn(value: str) -> ExecutionArn:
    match = _EXECUTION_RE.match(value)
    if not match:
        raise NotAnArn(f"{value[:300]!r} is not a Step Functions execution ARN")
    express = match["kind"] == "express"
    if express != bool(match["express_id"]) or (express and match["map_label"]):
        raise NotAnArn(f"{value[:300]!r} is not a Step Functions execution ARN")
    return ExecutionArn(
        arn=value,
        partition=match["partition"],
        region=match["region"],
        account=match["account"],
        state_machine_name=match["state_machine"],
        name=match["name"],
        map_run_label=match["map_label"],
        express=express,
    )


def parse_state_machine_arn(value: str) -> StateMachineArn:
    match = _STATE_MACHINE_RE.match(value)
    if not match or match["qualifier"]:
        raise NotAnArn(f"{value[:300]!r} is not a Step Functions state machine ARN")
    return StateMachineArn(
        arn=value,
        partition=match["partition"],
        region=match["region"],
        account=match["account"],
        name=match["name"],
    )


# arn:aws:states:us-east-1:123456789012:mapRun:StateMachine/MapLabel:id
_MAP_RUN_RE = re.compile(
    r"^arn:(?:aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):states:"
    r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}:\d{12}:mapRun:"
    rf"{_NAME}/{_NAME}:[^\s/:]{{1,128}}$"
)


def is_map_run_arn(value: str) -> bool:
    """A Distributed Map run's ARN (its page's URL holds it as it is)."""
    return bool(_MAP_RUN_RE.match(value))


def region_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or parts[2] != "states":
        raise NotAnArn(f"{arn[:300]!r} is not a Step Functions ARN")
    return parts[3]


def find_execution_arn(text: str) -> str | None:
    """The execution ARN in a pasted ARN or AWS console URL, if there is one."""
    text = text.strip()
    for candidate in (text, unquote(text), unquote(unquote(text))):
        for found in _EMBEDDED_RE.findall(candidate):
            try:
                return parse_execution_arn(found.rstrip("/.,;)")).arn
            except NotAnArn:
                continue
    return None


def console_host(partition: str, region: str) -> str:
    if partition == "aws-cn":
        return f"https://{region}.console.amazonaws.cn"
    if partition == "aws-us-gov":
        return f"https://{region}.console.amazonaws-us-gov.com"
    return f"https://{region}.console.aws.amazon.com"


def execution_console_url(arn: str) -> str:
    parsed = parse_execution_arn(arn)
    return (
        f"{console_host(parsed.partition, parsed.region)}/states/home?region={parsed.region}"
        f"#/v2/executions/details/{quote(arn, safe=':/')}"
    )


def state_machine_console_url(arn: str) -> str:
    parsed = parse_state_machine_arn(arn)
    return (
        f"{console_host(parsed.partition, parsed.region)}/states/home?region={parsed.region}"
        f"#/statemachines/view/{quote(arn, safe=':/')}"
    )


def console_url(arn: str) -> str:
    """The AWS console's page of an execution or a state machine ARN; "" for
    anything else, so that a page shows no link rather than failing."""
    for page in (execution_console_url, state_machine_console_url):
        try:
            return page(arn)
        except NotAnArn:
            continue
    return ""


def state_machine_name(arn: str) -> str:
    """A state machine ARN's name, for a label; anything else as it is."""
    try:
        return parse_state_machine_arn(arn).name
    except NotAnArn:
        return arn
