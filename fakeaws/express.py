"""StartExecution of an Express workflow, as AWS answers it, where moto does not.

moto runs every execution as a Standard one: an Express start gets an
`...:execution:SM:NAME` ARN that DescribeExecution, GetExecutionHistory and
ListExecutions then know. AWS (Step Functions API reference, StartExecution,
DescribeExecution, ListExecutions):

- answers an Express start with `executionArn` `...:express:SM:NAME:ID` (ID a
  fresh UUID) and `startDate`;
- is not idempotent by name for Express workflows (StartExecution's
  idempotency is for STANDARD only): the same name twice is two executions;
- keeps nothing of them in the API: DescribeExecution and GetExecutionHistory
  refuse an Express execution ARN ("not supported by EXPRESS state machines",
  unless a Map Run dispatched it), ListExecutions does not list them.

What is faked here: the answer above, after AWS's checks (the state machine,
version or alias exists; the name: 1 to 80 characters without whitespace,
brackets, wildcards, `" # % \\ ^ | ~ ` $ & , ; : /` or control characters,
else InvalidName; the input: JSON of at most 262,144 bytes, else
InvalidExecutionInput). The workflow itself is not run: nothing of an
Express execution is observable through the Step Functions API, which is
all this fake serves (no CloudWatch Logs). DescribeExecution and
GetExecutionHistory of an `express:` ARN are left to moto, which answers
InvalidArn as AWS does (with its own message).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

INPUT_MAX_BYTES = 262_144
_FORBIDDEN_NAME = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")


class ExpressError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def start(params: dict[str, Any]) -> dict[str, Any] | None:
    """AWS's answer to StartExecution of an Express workflow (or its version or
    alias); None when the target is not an Express state machine (moto answers).
    Raises ExpressError as AWS would refuse it."""
    target = str(params.get("stateMachineArn") or "")
    parts = target.split(":")
    if len(parts) not in (7, 8) or parts[5] != "stateMachine":
        return None
    machine = _machine(":".join(parts[:7]))
    if machine is None or str(getattr(machine, "type", "STANDARD")) != "EXPRESS":
        return None
    if len(parts) == 8:
        qualifier = parts[7]
        known = (
            int(qualifier) in getattr(machine, "versions", {})
            if qualifier.isdigit()
            else qualifier in getattr(machine, "aliases", {})
        )
        if not known:
            raise ExpressError(
                "StateMachineDoesNotExist" if qualifier.isdigit() else "ResourceNotFound",
                f"State Machine Does Not Exist: '{target}'",
            )
    name = str(params.get("name") or uuid.uuid4())
    if not 1 <= len(name) <= 80 or _FORBIDDEN_NAME.search(name):
        raise ExpressError("InvalidName", f"Invalid Name: '{name}'")
    text = str(params.get("input") if params.get("input") is not None else "{}")
    if len(text.encode("utf-8", "surrogatepass")) > INPUT_MAX_BYTES:
        raise ExpressError(
            "InvalidExecutionInput",
            f"Invalid State Machine Execution Input: input is larger than {INPUT_MAX_BYTES} bytes",
        )
    try:
        json.loads(text)
    except ValueError as exc:
        raise ExpressError(
            "InvalidExecutionInput", f"Invalid State Machine Execution Input: '{exc}'"
        ) from None
    base = parts[:5]
    return {
        "executionArn": ":".join([*base, "express", parts[6], name, str(uuid.uuid4())]),
        "startDate": round(time.time(), 3),
    }


def _machine(arn: str) -> Any:
    from moto.stepfunctions.exceptions import StateMachineDoesNotExist
    from moto.stepfunctions.responses import get_backend

    parts = arn.split(":")
    try:
        return get_backend(parts[4], parts[3]).describe_state_machine(arn)
    except StateMachineDoesNotExist:
        return None
    except Exception:
        return None


def respond_or_none(params: dict[str, Any], start_response: Any) -> Iterable[bytes] | None:
    """The hook `_op_StartExecution` calls first."""
    from .app import _error, _respond

    try:
        answer = start(params)
    except ExpressError as exc:
        return _error(start_response, exc.code, exc.message)
    if answer is None:
        return None
    return _respond(start_response, 200, answer)
