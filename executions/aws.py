"""AWS: the only module that talks to boto3.

A lazily built client per identity and region (and endpoint), explicit
timeouts and botocore's standard retry mode. An identity (`Target`) is the
default one of boto3's chain or an IAM role to assume (SFNUI_ACCOUNTS); a call
about an ARN uses the identity that reads the ARN's account, in its region,
and a region AWS does not have never gets a client. Every Step Functions
HTTP attempt first takes a token from the shared API budget (budget.py) of
its account and region, and is counted per operation. Errors come out as one
of a few AwsError types; results as plain dicts and lists.
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
from dataclasses import dataclass
from typing import Any, overload

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from django.conf import settings

from . import budget
from .arns import NotAnArn

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


_NOT_FOUND = {
    "ExecutionDoesNotExist",
    "StateMachineDoesNotExist",
    "ResourceNotFound",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}
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


# --- Targets: the identities sfnui reads AWS as --------------------------------


@dataclass(frozen=True)
class Target:
    """One identity sfnui reads AWS as, and the regions it reads with it.

    `key` is the account id of `role_arn` (an IAM role to assume, optionally
    with an external id), or "default" for the one identity of boto3's chain
    (environment, profile, instance role). AWS's quotas are per account and
    region: the budget's buckets are named by key and region.
    """

    key: str
    role_arn: str = ""
    external_id: str = ""
    regions: tuple[str, ...] = ()
    name: str = ""

    @property
    def account(self) -> str | None:
        """The account id, when the configuration names it (a role's)."""
        return self.key if self.role_arn else None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"account {self.key}" if self.role_arn else "default identity"


DEFAULT = "default"


class NotConfigured(AwsError):
    """The dashboard does not read this account or region: nothing was sent."""


def targets() -> list[Target]:
    """The configured identities (SFNUI_ACCOUNTS), or the default one in SFNUI_REGIONS."""
    return list(_targets(_freeze(settings.SFNUI_ACCOUNTS), tuple(settings.SFNUI_REGIONS)))


def _freeze(accounts: list[dict[str, Any]]) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(
        tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in entry.items()))
        for entry in accounts
    )


@functools.cache
def _targets(
    accounts: tuple[tuple[tuple[str, Any], ...], ...], regions: tuple[str, ...]
) -> tuple[Target, ...]:
    if not accounts:
        return (Target(key=DEFAULT, regions=regions),)
    out = []
    for frozen in accounts:
        entry = dict(frozen)
        role_arn = str(entry.get("role_arn") or "")
        out.append(
            Target(
                key=role_arn.split(":")[4] if role_arn else DEFAULT,
                role_arn=role_arn,
                external_id=str(entry.get("external_id") or ""),
                regions=tuple(entry.get("regions") or regions),
                name=str(entry.get("name") or ""),
            )
        )
    return tuple(out)


def target(key: str) -> Target:
    for t in targets():
        if t.key == key:
            return t
    raise NotConfigured(f"this dashboard does not read account {key}", "NotConfigured")


def target_for(account: str, region: str) -> Target:
    """Whose credentials read `account` in `region`: the role of that account, else
    the default identity. Raises NotConfigured, sending nothing, for an account
    no configured identity reads, or a region AWS does not have."""
    if region not in known_regions():
        raise NotConfigured(
            f"this dashboard does not read region {region[:64]!r}: AWS has no such region",
            "NotConfigured",
        )
    default = None
    for t in targets():
        if t.role_arn and t.key == account:
            return t
        if not t.role_arn:
            default = t
    if default is None:
        raise NotConfigured(
            f"this dashboard does not read account {account[:16]} (SFNUI_ACCOUNTS names "
            "the accounts it reads)",
            "NotConfigured",
        )
    return default


def key_for(account: str, region: str) -> str:
    """The key of the identity that reads `account` in `region` ("" if none does)."""
    try:
        return target_for(account, region).key
    except NotConfigured:
        return ""


def target_for_arn(arn: str) -> Target:
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or parts[2] not in ("states", "sqs"):
        raise NotAnArn(f"{arn[:300]!r} is not a Step Functions ARN")
    return target_for(parts[4], parts[3])


def scheduled() -> list[tuple[Target, str]]:
    """Every (identity, region) the sync reads on its schedule."""
    return [(t, region) for t in targets() for region in t.regions]


@functools.cache
def known_regions() -> frozenset[str]:
    """The regions AWS has (botocore's partition data): the only ones a client is
    ever built for, so that a pasted ARN cannot make this process build one per
    made-up region."""
    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("stepfunctions", partition_name=partition))
    return frozenset(regions)


# --- Clients ---------------------------------------------------------------------


def _before_send(key: str, region: str, event_name: str, **_: Any) -> None:
    # event_name is "before-send.sfn.<Operation>"; runs once per HTTP attempt,
    # retries included, which is what AWS meters.
    operation = event_name.rsplit(".", 1)[-1]
    budget.acquire(region, operation, account=key)
    with _totals_lock:
        _totals[operation] += 1
    for counter in _recorders.get():
        counter[operation] += 1


def _after_attempt(key: str, region: str, event_name: str, response: Any = None, **_: Any) -> None:
    # Runs after every attempt, before botocore decides to retry. A throttled
    # attempt means AWS's bucket is empty: make every process pause, not just
    # this call.
    if response is None:
        return None
    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
    code = (parsed or {}).get("Error", {}).get("Code", "")
    if code in _THROTTLED:
        budget.drain(region, event_name.rsplit(".", 1)[-1], account=key)
    return None


class _AssumedRole(CredentialProvider):
    """The role of a Target, through botocore's own assume-role fetcher: the
    credentials refresh themselves before they expire."""

    METHOD = "sfnui-assume-role"
    CANONICAL_NAME = "SfnuiAssumeRole"

    def __init__(self, fetcher: AssumeRoleCredentialFetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(
            method=self.METHOD, refresh_using=self._fetcher.fetch_credentials
        )


_sessions_lock = threading.Lock()


@functools.cache
def _session(role_arn: str, external_id: str, endpoint_url: str | None, region: str) -> Any:
    """A botocore session for one identity (boto3's default session is not
    thread-safe: one per identity, clients made under a lock)."""
    session = botocore.session.Session()
    if not role_arn:
        return session
    base = botocore.session.Session()
    source = base.get_credentials()
    if source is None:
        raise NotConfigured(
            f"no AWS credentials to assume {role_arn} with (boto3's chain found none)",
            "NoCredentials",
        )
    extra: dict[str, Any] = {"RoleSessionName": "sfnui"}
    if external_id:
        extra["ExternalId"] = external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=functools.partial(
            base.create_client,
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                connect_timeout=settings.SFNUI_AWS_CONNECT_TIMEOUT,
                read_timeout=settings.SFNUI_AWS_READ_TIMEOUT,
                retries={"mode": "standard", "total_max_attempts": settings.SFNUI_AWS_MAX_ATTEMPTS},
            ),
        ),
        source_credentials=source,
        role_arn=role_arn,
        extra_args=extra,
    )
    resolver = session.get_component("credential_provider")
    resolver.insert_before(resolver.providers[0].METHOD, _AssumedRole(fetcher))
    return session


@functools.cache
def _client(
    service: str,
    t: Target,
    region: str,
    endpoint_url: str | None,
    connect: float,
    read: float,
    attempts: int,
) -> Any:
    config = Config(
        region_name=region,
        connect_timeout=connect,
        read_timeout=read,
        retries={"mode": "standard", "total_max_attempts": attempts},
        user_agent_appid="sfnui",  # type: ignore[call-arg]  # (botocore-stubs lag)
    )
    with _sessions_lock:
        session = _session(
            t.role_arn, t.external_id, endpoint_url, t.regions[0] if t.regions else region
        )
        made = session.create_client(service, endpoint_url=endpoint_url, config=config)
    if service == "stepfunctions":
        made.meta.events.register("before-send.sfn", functools.partial(_before_send, t.key, region))
        made.meta.events.register_first(
            "needs-retry.sfn", functools.partial(_after_attempt, t.key, region)
        )
    return made


def forget_clients() -> None:
    """Build clients and assumed-role credentials afresh (tests, after the fake
    endpoint forgot every credential it had handed out)."""
    with _sessions_lock:
        _client.cache_clear()
        _session.cache_clear()


def client(region: str, t: Target | None = None, service: str = "stepfunctions") -> Any:
    if t is None:
        t = _default_for(region)
    if region not in known_regions():
        raise NotConfigured(f"AWS has no region {region[:64]!r}", "NotConfigured")
    read = settings.SFNUI_AWS_READ_TIMEOUT
    if service == "sqs":
        # A long poll answers after up to LONG_POLL_SECONDS by design.
        read = max(read, LONG_POLL_SECONDS + 10)
    return _client(
        service,
        t,
        region,
        settings.SFNUI_AWS_ENDPOINT_URL,
        settings.SFNUI_AWS_CONNECT_TIMEOUT,
        read,
        settings.SFNUI_AWS_MAX_ATTEMPTS,
    )


def _default_for(region: str) -> Target:
    """The identity that reads `region` when no ARN says which account: the first
    configured one that reads the region, else the first one."""
    configured = targets()
    for t in configured:
        if region in t.regions:
            return t
    return configured[0]


def _call(
    region: str,
    operation: str,
    t: Target | None = None,
    service: str = "stepfunctions",
    **params: Any,
) -> dict[str, Any]:
    try:
        method = getattr(client(region, t, service), _snake(operation))
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


def list_state_machines(region: str, t: Target | None = None) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"maxResults": 1000}
        if token:
            params["nextToken"] = token
        page = _call(region, "ListStateMachines", t, **params)
        yield from page.get("stateMachines", [])
        token = page.get("nextToken")
        if not token:
            return


def _by_arn(arn: str, operation: str, **params: Any) -> dict[str, Any]:
    """A call about one ARN, with the credentials of its account, in its region."""
    t = target_for_arn(arn)
    return _call(arn.split(":")[3], operation, t, **params)


def describe_state_machine(arn: str) -> dict[str, Any]:
    return _by_arn(arn, "DescribeStateMachine", stateMachineArn=arn)


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
        page = _by_arn(state_machine_arn, "ListExecutions", **params)
        token = page.get("nextToken")
        yield Page(page.get("executions", []), more=bool(token))
        if not token:
            return


def describe_execution(arn: str) -> dict[str, Any]:
    return _by_arn(arn, "DescribeExecution", executionArn=arn)


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
        page = _by_arn(arn, "GetExecutionHistory", **params)
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
        return _by_arn(arn, "StopExecution", **params)
    except AwsError as exc:
        # AWS answers ValidationException "Execution Is Not Running" (older
        # SDKs: ExecutionNotRunning) for an execution that already finished.
        if exc.code in {"ExecutionNotRunning"} or "not running" in exc.message.lower():
            raise AlreadyFinished(exc.message, exc.code, "StopExecution") from exc
        raise


# --- Events: SQS, EventBridge and STS -----------------------------------------
# Not Step Functions calls: no budget (their quotas are far larger), the same
# timeouts, and the same error types.

# SQS long polling holds a request open this long at most (AWS's maximum).
LONG_POLL_SECONDS = 20
_QUEUE_URL = re.compile(
    r"^https?://(?:sqs\.(?P<r1>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"|(?P<r2>[a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?"
    r"|[^/]+)/(?P<account>\d{12})/(?P<name>[\w-]{1,80}(?:\.fifo)?)/?$"
)


@dataclass(frozen=True)
class Queue:
    """An SQS queue, and the identity and region to read it with."""

    url: str
    account: str
    region: str
    name: str
    target: Target

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.name}"


def queue(url: str) -> Queue:
    """Parse an SQS queue URL. AWS's URLs name their region; an endpoint's
    (moto, LocalStack) do not: those are read in the identity's first region."""
    match = _QUEUE_URL.match(url.strip())
    if not match:
        raise InvalidArn(f"{url[:300]!r} is not an SQS queue URL", "InvalidQueueUrl")
    account = match["account"]
    region = match["r1"] or match["r2"] or ""
    if not region:
        for t in targets():
            if t.role_arn and t.key == account:
                region = t.regions[0]
                break
        else:
            region = _default_for(settings.SFNUI_REGIONS[0]).regions[0]
    return Queue(url.strip(), account, region, match["name"], target_for(account, region))


def _sqs(q: Queue, operation: str, **params: Any) -> dict[str, Any]:
    return _call(q.region, operation, q.target, "sqs", **params)


def receive_messages(
    q: Queue, wait_seconds: int = LONG_POLL_SECONDS, max_messages: int = 10
) -> list[dict[str, Any]]:
    """Up to `max_messages` messages, waiting up to `wait_seconds` for the first."""
    answer = _sqs(
        q,
        "ReceiveMessage",
        QueueUrl=q.url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
    )
    return list(answer.get("Messages", []))


def delete_messages(q: Queue, receipts: dict[str, str]) -> list[str]:
    """Delete messages (id -> receipt handle); returns the ids SQS did not delete."""
    failed: list[str] = []
    items = list(receipts.items())
    for start in range(0, len(items), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": r} for i, (_, r) in enumerate(items[start : start + 10])
        ]
        answer = _sqs(q, "DeleteMessageBatch", QueueUrl=q.url, Entries=entries)
        for failure in answer.get("Failed", []):
            failed.append(items[start + int(failure["Id"])][0])
    return failed


def queue_depth(q: Queue) -> tuple[int, int]:
    """(messages waiting, messages received and not yet deleted), approximately."""
    attributes = _sqs(
        q,
        "GetQueueAttributes",
        QueueUrl=q.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    ).get("Attributes", {})
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def caller_account(t: Target, region: str) -> str:
    """The account id an identity is in (STS GetCallerIdentity)."""
    return str(_call(region, "GetCallerIdentity", t, "sts")["Account"])


def create_queue(t: Target, region: str, name: str, attributes: dict[str, str]) -> str:
    """Create the queue (or find it: same name, same attributes); returns its URL."""
    url = str(_call(region, "CreateQueue", t, "sqs", QueueName=name)["QueueUrl"])
    _call(region, "SetQueueAttributes", t, "sqs", QueueUrl=url, Attributes=attributes)
    return url


def put_rule(t: Target, region: str, name: str, pattern: str, description: str) -> str:
    """Create or update an EventBridge rule on the default bus; returns its ARN."""
    answer = _call(
        region,
        "PutRule",
        t,
        "events",
        Name=name,
        EventPattern=pattern,
        State="ENABLED",
        Description=description,
    )
    return str(answer["RuleArn"])


def put_target(
    t: Target, region: str, rule: str, target_id: str, arn: str, role_arn: str = ""
) -> None:
    spec: dict[str, Any] = {"Id": target_id, "Arn": arn}
    if role_arn:
        spec["RoleArn"] = role_arn
    answer = _call(region, "PutTargets", t, "events", Rule=rule, Targets=[spec])
    if answer.get("FailedEntryCount"):
        entry = answer.get("FailedEntries", [{}])[0]
        raise AwsError(
            str(entry.get("ErrorMessage", "PutTargets failed")),
            str(entry.get("ErrorCode", "")),
            "PutTargets",
        )


def allow_put_events(t: Target, region: str, account: str) -> None:
    """Let another account put events on this identity's default bus."""
    _call(
        region,
        "PutPermission",
        t,
        "events",
        Action="events:PutEvents",
        Principal=account,
        StatementId=f"sfnui-{account}",
    )


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
