"""AWS Step Functions: the only module that talks to boto3.

A lazily built client per region (and endpoint), explicit timeouts and
botocore's standard retry mode. Every HTTP attempt first takes a token from
the shared API budget (budget.py) and is counted per operation. Errors come
out as one of a few AwsError types; results as plain dicts and lists.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, overload

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from django.conf import settings

from . import budget
from .arns import region_of

# What an error message may carry that no page or audit row may show: the
# password of an endpoint or proxy URL (http://user:pw@host), an access key id.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"']*@")
_ACCESS_KEY_ID = re.compile(r"\b((?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{4})[A-Z0-9]{12}\b")


def redact(text: str) -> str:
    return _ACCESS_KEY_ID.sub(r"\1************", _URL_CREDENTIALS.sub(r"\1***@", text))


class AwsError(Exception):
    """Something went wrong talking to AWS; `code` is AWS's error code when it gave one.
    The message is shown to people (pages, the audit): credentials are blanked out."""

    def __init__(self, message: str, code: str = "", operation: str = "") -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.code = code
        self.operation = operation


class NotFound(AwsError):
    """AWS does not know this execution or state machine."""


class InvalidArn(AwsError):
    """AWS refused the request as malformed (ARN, name, parameter)."""


class Throttled(AwsError):
    """AWS, or our own share of its quota, says: slow down. Not a failure."""


class Unavailable(AwsError):
    """AWS could not be reached, timed out, or failed on its side."""


class AlreadyFinished(AwsError):
    """StopExecution on an execution that is no longer running."""


_NOT_FOUND = {"ExecutionDoesNotExist", "StateMachineDoesNotExist", "ResourceNotFound"}
_INVALID = {
    "InvalidArn",
    "InvalidName",
    "InvalidToken",
    "ValidationException",
    "InvalidParameterValue",
    "MissingRequiredParameter",
}
_THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
}

# Calls made, per operation: for the whole process, and for whoever is
# recording with `count_calls()` in this thread or task.
_totals: Counter[str] = Counter()
_totals_lock = threading.Lock()
_recorders: contextvars.ContextVar[tuple[Counter[str], ...]] = contextvars.ContextVar(
    "sfnui_aws_recorders", default=()
)


def total_calls() -> Counter[str]:
    with _totals_lock:
        return Counter(_totals)


@contextlib.contextmanager
def count_calls() -> Iterator[Counter[str]]:
    """Count the API calls (HTTP attempts) made inside the block, per operation."""
    counter: Counter[str] = Counter()
    token = _recorders.set((*_recorders.get(), counter))
    try:
        yield counter
    finally:
        _recorders.reset(token)


def _before_send(region: str, event_name: str, **_: Any) -> None:
    # event_name is "before-send.sfn.<Operation>"; runs once per HTTP attempt,
    # retries included, which is what AWS meters.
    operation = event_name.rsplit(".", 1)[-1]
    budget.acquire(region, operation)
    with _totals_lock:
        _totals[operation] += 1
    for counter in _recorders.get():
        counter[operation] += 1


def _after_attempt(region: str, event_name: str, response: Any = None, **_: Any) -> None:
    # Runs after every attempt, before botocore decides to retry. A throttled
    # attempt means AWS's bucket is empty: make every process pause, not just
    # this call.
    if response is None:
        return None
    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
    code = (parsed or {}).get("Error", {}).get("Code", "")
    if code in _THROTTLED:
        budget.drain(region, event_name.rsplit(".", 1)[-1])
    return None


@functools.cache
def _client(
    region: str, endpoint_url: str | None, connect: float, read: float, attempts: int
) -> Any:
    config = Config(
        region_name=region,
        connect_timeout=connect,
        read_timeout=read,
        retries={"mode": "standard", "total_max_attempts": attempts},
        user_agent_appid="sfnui",  # type: ignore[call-arg]  # (botocore-stubs lag)
    )
    # A session per client: boto3's default session is not thread-safe.
    client = boto3.session.Session().client(
        "stepfunctions", endpoint_url=endpoint_url, config=config
    )
    client.meta.events.register("before-send.sfn", functools.partial(_before_send, region))
    client.meta.events.register_first("needs-retry.sfn", functools.partial(_after_attempt, region))
    return client


def client(region: str) -> Any:
    return _client(
        region,
        settings.SFNUI_AWS_ENDPOINT_URL,
        settings.SFNUI_AWS_CONNECT_TIMEOUT,
        settings.SFNUI_AWS_READ_TIMEOUT,
        settings.SFNUI_AWS_MAX_ATTEMPTS,
    )


def _call(region: str, operation: str, **params: Any) -> dict[str, Any]:
    method = getattr(client(region), _snake(operation))
    try:
        response: dict[str, Any] = method(**params)
    except budget.BudgetExhausted as exc:
        raise Throttled(str(exc), "BudgetExhausted", operation) from exc
    except ClientError as exc:
        raise _translate(exc, operation) from exc
    except ParamValidationError as exc:
        raise InvalidArn(str(exc), "ParamValidationError", operation) from exc
    except BotoCoreError as exc:
        # Connection refused, DNS, timeouts, broken responses: AWS is not
        # reachable from here right now.
        raise Unavailable(f"AWS is unreachable: {exc}", type(exc).__name__, operation) from exc
    response.pop("ResponseMetadata", None)
    return response


def _translate(exc: ClientError, operation: str) -> AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _THROTTLED:
        return Throttled(message, code, operation)
    if code in _NOT_FOUND:
        return NotFound(message, code, operation)
    if code in _INVALID:
        return InvalidArn(message, code, operation)
    if status >= 500 or code in {"ServiceUnavailable", "InternalFailure", "InternalServerError"}:
        return Unavailable(message, code, operation)
    return AwsError(message, code, operation)


@functools.cache
def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# --- The operations ----------------------------------------------------------


def list_state_machines(region: str) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"maxResults": 1000}
        if token:
            params["nextToken"] = token
        page = _call(region, "ListStateMachines", **params)
        yield from page.get("stateMachines", [])
        token = page.get("nextToken")
        if not token:
            return


def describe_state_machine(arn: str) -> dict[str, Any]:
    return _call(region_of(arn), "DescribeStateMachine", stateMachineArn=arn)


class Page(list[dict[str, Any]]):
    """One page of results; `more` says whether AWS has another after it."""

    def __init__(self, items: list[dict[str, Any]], more: bool) -> None:
        super().__init__(items)
        self.more = more


def list_executions(
    state_machine_arn: str, *, status: str | None = None, page_size: int = 1000
) -> Iterator[Page]:
    """Pages of executions, newest first. Stop iterating to stop paging."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": page_size}
        if status:
            params["statusFilter"] = status
        if token:
            params["nextToken"] = token
        page = _call(region_of(state_machine_arn), "ListExecutions", **params)
        token = page.get("nextToken")
        yield Page(page.get("executions", []), more=bool(token))
        if not token:
            return


def describe_execution(arn: str) -> dict[str, Any]:
    return _call(region_of(arn), "DescribeExecution", executionArn=arn)


def execution_history(
    arn: str, *, reverse: bool = True, page_size: int = 1000
) -> Iterator[list[dict[str, Any]]]:
    """Pages of history events (newest first by default). Stop iterating to stop paging."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {
            "executionArn": arn,
            "maxResults": page_size,
            "reverseOrder": reverse,
            "includeExecutionData": True,
        }
        if token:
            params["nextToken"] = token
        page = _call(region_of(arn), "GetExecutionHistory", **params)
        yield page.get("events", [])
        token = page.get("nextToken")
        if not token:
            return


def stop_execution(arn: str, *, error: str = "", cause: str = "") -> dict[str, Any]:
    params: dict[str, Any] = {"executionArn": arn}
    if error:
        params["error"] = error
    if cause:
        params["cause"] = cause
    try:
        return _call(region_of(arn), "StopExecution", **params)
    except AwsError as exc:
        # AWS answers ValidationException "Execution Is Not Running" (older
        # SDKs: ExecutionNotRunning) for an execution that already finished.
        if exc.code in {"ExecutionNotRunning"} or "not running" in exc.message.lower():
            raise AlreadyFinished(exc.message, exc.code, "StopExecution") from exc
        raise


@overload
def utc(value: dt.datetime) -> dt.datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: dt.datetime | None) -> dt.datetime | None:
    """boto3 gives aware datetimes in the local zone; the cache keeps UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
