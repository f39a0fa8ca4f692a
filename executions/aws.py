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
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, overload

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as ConnectPhaseError
from botocore.parsers import ResponseParserError
from django.conf import settings

from executions import budget

from .arns import NotAnArn
from .redaction import redact

log = logging.getLogger(__name__)


class AwsError(Exception):
    """Something went wrong talking to AWS; `code` is AWS's error code when it gave one.
    The message is shown to people (pages, the audit): credentials are blanked out.

    `unanswered`: an attempt of the call reached AWS, or may have, and got no
    answer (botocore retries: the error is the last attempt's, this is any's).
    """

    def __init__(self, message: str, code: str = "", operation: str = "") -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.code = code
        self.operation = operation
        self.unanswered = False


class NotFound(AwsError):
    """AWS does not know this execution or state machine."""


class InvalidArn(AwsError):
    """AWS refused the request as malformed (ARN, name, parameter)."""


class Throttled(AwsError):
    """AWS, or our own share of its quota, says: slow down. Not a failure."""


class Unavailable(AwsError):
    """AWS could not be reached, timed out, or failed on its side.

    As such (not a NoAnswer), nothing was sent: every attempt failed before
    the request left (connection refused or timed out, DNS, no time left).
    `deadline`: the seconds the call was given, when it ended for lack of time.
    """

    deadline: float | None = None

    @property
    def sent(self) -> bool:
        """The request may have reached AWS: what it did is unknown."""
        return self.unanswered


class NoAnswer(Unavailable):
    """The request was sent (or may have been: an attempt got past connecting)
    and no usable answer came back: a read timeout, a connection closed or
    reset, a broken response, or AWS failing on its side (5xx). AWS may have
    acted on it."""


class AlreadyFinished(AwsError):
    """StopExecution on an execution that is no longer running."""


class NotRedrivable(AwsError):
    """RedriveExecution on an execution AWS will not redrive (running, succeeded,
    started 14 days ago or more, too many redrives): nothing changed."""


class AlreadyExists(AwsError):
    """StartExecution: an execution of that name exists, closed or with another
    input (AWS's ExecutionAlreadyExists). `arn` is that execution's, when AWS said."""

    arn: str = ""


class InvalidInput(InvalidArn):
    """StartExecution: AWS refused the input (InvalidExecutionInput)."""


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


# --- Deadlines, and what a call's attempts sent ----------------------------------
# botocore's timeouts are per attempt (3 attempts x 10 s read timeout: 30 s).
# A deadline is for all the attempts of every call inside it: an attempt
# starts only with time left to connect and wait MIN_READ for its answer, and
# waits for its answer no longer than what is left.

MIN_READ = 0.25
# Clients give up connecting after this share of a call's (or a page's) deadline.
CONNECT_SHARE = 0.2

# (time.monotonic() at which the innermost deadline ends, the seconds to name
# when it is missed).
_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "sfnui_aws_deadline", default=None
)
_page: contextvars.ContextVar[bool] = contextvars.ContextVar("sfnui_aws_page", default=False)


@contextlib.contextmanager
def deadline(seconds: float, *, label: float | None = None) -> Iterator[None]:
    """Every call inside the block ends within `seconds` from now, retries
    included (or by the enclosing deadline, if that is sooner). A call that
    misses it says "AWS did not answer within `label` s" (default: seconds)."""
    end = time.monotonic() + max(seconds, 0.0)
    outer = _deadline.get()
    if outer is not None and outer[0] <= end:
        yield
        return
    token = _deadline.set((end, seconds if label is None else label))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def page_deadline() -> Iterator[None]:
    """Calls made for a page that someone waits for: SFNUI_AWS_PAGE_DEADLINE for
    all of them together, on clients that give up connecting sooner."""
    token = _page.set(True)
    try:
        with deadline(settings.SFNUI_AWS_PAGE_DEADLINE):
            yield
    finally:
        _page.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (None: no deadline)."""
    current = _deadline.get()
    return None if current is None else current[0] - time.monotonic()


def out_of_time() -> bool:
    """Whether the current deadline leaves too little to start a call."""
    left = remaining()
    return left is not None and left < _connect_timeout() + MIN_READ


def _connect_timeout() -> float:
    """SFNUI_AWS_CONNECT_TIMEOUT, at most a fifth of the deadline of a call (or
    of a page's calls): a connection AWS does not accept by then leaves time
    for another attempt."""
    limit = settings.SFNUI_AWS_PAGE_DEADLINE if _page.get() else settings.SFNUI_AWS_CALL_DEADLINE
    return float(min(settings.SFNUI_AWS_CONNECT_TIMEOUT, CONNECT_SHARE * limit))


def deadline_seconds() -> float | None:
    """The seconds the current deadline names (None: no deadline)."""
    current = _deadline.get()
    return None if current is None else current[1]


class _OutOfTime(Exception):
    """Raised before an attempt is sent: the deadline leaves it no time."""


@dataclass
class _Attempts:
    maybe_sent: bool = False


_attempts: contextvars.ContextVar[_Attempts | None] = contextvars.ContextVar(
    "sfnui_aws_attempts", default=None
)


def _may_have_been_sent(exc: BaseException) -> bool:
    """Whether an attempt that failed with `exc` may have reached AWS."""
    if isinstance(exc, ConnectPhaseError):
        # Refused, DNS, connect timeout, TLS handshake, proxy: before a byte
        # of the request left.
        return False
    # Read timeout, connection closed or reset after sending, a broken
    # response: sent. Anything else (credentials, validation, our own
    # deadline and budget) fails before sending.
    return isinstance(exc, HTTPClientError | ResponseParserError)


def _attempt_window(connect: float, read: float) -> float | None:
    """How long the next attempt may wait for its answer; raises _OutOfTime
    when the deadline leaves too little to start one."""
    left = remaining()
    if left is None:
        return None
    wait = left - connect
    if wait < MIN_READ:
        raise _OutOfTime(f"less than {connect + MIN_READ:g} s left before the deadline")
    return min(read, wait)


def _within_deadline(connect: float, read: float, request: Any, **_: Any) -> None:
    # before-send: a per-request read timeout (botocore reads it from the
    # request's context) that ends with the deadline.
    wait = _attempt_window(connect, read)
    if wait is not None:
        request.context["read_timeout"] = wait


def _after_any_attempt(
    connect: float,
    track: bool,
    response: Any = None,
    caught_exception: BaseException | None = None,
    **_: Any,
) -> bool | None:
    # needs-retry, registered first: record whether the attempt may have
    # reached AWS, and veto a retry (False) the deadline leaves no time for.
    record = _attempts.get() if track else None
    if record is not None:
        if caught_exception is not None:
            record.maybe_sent = record.maybe_sent or _may_have_been_sent(caught_exception)
        elif response is not None and getattr(response[0], "status_code", 0) >= 500:
            # AWS failed on its side: it may have done part or all of it.
            record.maybe_sent = True
    left = remaining()
    if left is not None and left < connect + MIN_READ:
        return False
    return None


def _bound(made: Any, connect: float, read: float, track: bool) -> None:
    """Deadlines (and, with `track`, what was sent) on a client. On the service's
    own event names, first: the more specific name runs before a generic one,
    and the first handler of needs-retry to answer decides."""
    service = made.meta.service_model.service_id.hyphenize()
    made.meta.events.register_first(
        f"needs-retry.{service}", functools.partial(_after_any_attempt, connect, track)
    )
    made.meta.events.register_first(
        f"before-send.{service}", functools.partial(_within_deadline, connect, read)
    )


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


def _before_send(
    key: str, region: str, connect: float, read: float, event_name: str, request: Any, **_: Any
) -> None:
    # event_name is "before-send.sfn.<Operation>"; runs once per HTTP attempt,
    # retries included, which is what AWS meters. Waits for budget only as
    # long as the deadline leaves room for the attempt, whose wait for its
    # answer then shrinks by as much.
    operation = event_name.rsplit(".", 1)[-1]
    left = remaining()
    max_wait = None
    if left is not None:
        max_wait = max(0.0, min(settings.SFNUI_API_MAX_WAIT, left - connect - MIN_READ))
    if budget.acquire(region, operation, max_wait=max_wait, account=key):
        _within_deadline(connect, read, request)
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
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
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
    connect, read = settings.SFNUI_AWS_CONNECT_TIMEOUT, settings.SFNUI_AWS_READ_TIMEOUT

    def sts_client(service: str, **kwargs: Any) -> Any:
        # The role's credentials are (re)fetched inside a call: within its deadline.
        options = {
            **kwargs,
            "endpoint_url": endpoint_url,
            "region_name": region,
            "config": Config(
                connect_timeout=connect,
                read_timeout=read,
                retries={"mode": "standard", "total_max_attempts": settings.SFNUI_AWS_MAX_ATTEMPTS},
            ),
        }
        made = base.create_client(service, **options)
        _bound(made, connect, read, track=False)
        return made

    fetcher = AssumeRoleCredentialFetcher(
        client_creator=sts_client,
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
        made.meta.events.register(
            "before-send.sfn", functools.partial(_before_send, t.key, region, connect, read)
        )
        made.meta.events.register_first(
            "needs-retry.sfn", functools.partial(_after_attempt, t.key, region)
        )
    _bound(made, connect, read, track=True)
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
        _connect_timeout(),
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
    attempts = _Attempts()
    token = _attempts.set(attempts)
    try:
        try:
            # Built (once per process) before the call's deadline starts.
            method = getattr(client(region, t, service), _snake(operation))
        except BotoCoreError as exc:
            raise Unavailable(f"AWS is unreachable: {exc}", type(exc).__name__, operation) from exc
        with deadline(_call_deadline(operation)):
            limit = _deadline.get()
            try:
                response: dict[str, Any] = method(**params)
            except budget.BudgetExhausted as exc:
                raise Throttled(str(exc), "BudgetExhausted", operation) from exc
            except ClientError as exc:
                raise _translate(exc, operation, attempts.maybe_sent) from exc
            except ParamValidationError as exc:
                raise InvalidArn(str(exc), "ParamValidationError", operation) from exc
            except (BotoCoreError, _OutOfTime) as exc:
                # Connection refused, DNS, timeouts, broken responses, no time
                # left: AWS is not reachable from here right now. Where the
                # endpoint is goes to the log only.
                log.warning("%s in %s: %s: %s", operation, region, type(exc).__name__, exc)
                raise _unreachable(exc, operation, attempts.maybe_sent, limit) from exc
    finally:
        _attempts.reset(token)
    response.pop("ResponseMetadata", None)
    return response


def _call_deadline(operation: str) -> float:
    seconds: float = settings.SFNUI_AWS_CALL_DEADLINE
    if operation == "ReceiveMessage":
        # A long poll answers after up to LONG_POLL_SECONDS by design.
        seconds += LONG_POLL_SECONDS
    return seconds


def _unreachable(
    exc: BaseException, operation: str, maybe_sent: bool, limit: tuple[float, float] | None
) -> Unavailable:
    unanswered = maybe_sent or _may_have_been_sent(exc)
    code = "DeadlineExceeded" if isinstance(exc, _OutOfTime) else type(exc).__name__
    out_of_time = limit is not None and (
        isinstance(exc, _OutOfTime | ReadTimeoutError | ConnectTimeoutError)
        or time.monotonic() >= limit[0] - MIN_READ
    )
    if out_of_time and limit is not None:
        # The code says which timeout; botocore's text only repeats it.
        message = f"AWS did not answer within {limit[1]:g} s"
    else:
        message = f"AWS is unreachable: {exc}"
    error = (NoAnswer if unanswered else Unavailable)(message, code, operation)
    error.unanswered = unanswered
    if out_of_time and limit is not None:
        error.deadline = limit[1]
    return error


def _translate(exc: ClientError, operation: str, unanswered: bool = False) -> AwsError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    out: AwsError
    if code in _THROTTLED:
        out = Throttled(message, code, operation)
    elif code in _NOT_FOUND:
        out = NotFound(message, code, operation)
    elif code in _INVALID:
        out = InvalidArn(message, code, operation)
    elif status >= 500 or code in {"ServiceUnavailable", "InternalFailure", "InternalServerError"}:
        # AWS failed on its side: it may have acted on it, or part of it.
        out = NoAnswer(message, code, operation)
        unanswered = True
    else:
        out = AwsError(message, code, operation)
    out.unanswered = unanswered
    return out


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


def list_state_machine_versions(arn: str) -> Iterator[dict[str, Any]]:
    """A state machine's published versions, newest first."""
    yield from _pages(arn, "ListStateMachineVersions", "stateMachineVersions")


def list_state_machine_aliases(arn: str) -> Iterator[dict[str, Any]]:
    yield from _pages(arn, "ListStateMachineAliases", "stateMachineAliases")


def describe_state_machine_alias(arn: str) -> dict[str, Any]:
    """An alias with its routing weights (routingConfiguration)."""
    return _by_arn(arn, "DescribeStateMachineAlias", stateMachineAliasArn=arn)


def describe_state_machine_for_execution(arn: str) -> dict[str, Any]:
    """The state machine as the execution ran it: its definition then, not today's."""
    return _by_arn(arn, "DescribeStateMachineForExecution", executionArn=arn)


def _pages(arn: str, operation: str, key: str) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"stateMachineArn": arn, "maxResults": 1000}
        if token:
            params["nextToken"] = token
        page = _by_arn(arn, operation, **params)
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return


class Page(list[dict[str, Any]]):
    """One page of results; `more` says whether AWS has another after it."""

    def __init__(self, items: list[dict[str, Any]], more: bool) -> None:
        super().__init__(items)
        self.more = more


def list_executions(
    state_machine_arn: str,
    *,
    status: str | None = None,
    page_size: int = 1000,
    map_run_arn: str = "",
) -> Iterator[Page]:
    """Pages of executions, newest first. Stop iterating to stop paging.
    With `map_run_arn`: that Map Run's child executions (state_machine_arn "")."""
    token: str | None = None
    scope = {"mapRunArn": map_run_arn} if map_run_arn else {"stateMachineArn": state_machine_arn}
    while True:
        params: dict[str, Any] = {**scope, "maxResults": page_size}
        if status:
            params["statusFilter"] = status
        if token:
            params["nextToken"] = token
        page = _by_arn(map_run_arn or state_machine_arn, "ListExecutions", **params)
        token = page.get("nextToken")
        yield Page(page.get("executions", []), more=bool(token))
        if not token:
            return


def describe_execution(arn: str) -> dict[str, Any]:
    return _by_arn(arn, "DescribeExecution", executionArn=arn)


# Distributed Map runs.


def list_map_runs(execution_arn: str) -> Iterator[dict[str, Any]]:
    """The Map Runs of an execution (ListMapRuns, every page)."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            params["nextToken"] = token
        page = _by_arn(execution_arn, "ListMapRuns", **params)
        yield from page.get("mapRuns", [])
        token = page.get("nextToken")
        if not token:
            return


def describe_map_run(arn: str) -> dict[str, Any]:
    return _by_arn(arn, "DescribeMapRun", mapRunArn=arn)


def update_map_run(
    arn: str,
    *,
    max_concurrency: int | None = None,
    tolerated_failure_percentage: float | None = None,
    tolerated_failure_count: int | None = None,
) -> dict[str, Any]:
    """UpdateMapRun with the limits given (None: unchanged)."""
    params: dict[str, Any] = {"mapRunArn": arn}
    if max_concurrency is not None:
        params["maxConcurrency"] = max_concurrency
    if tolerated_failure_percentage is not None:
        params["toleratedFailurePercentage"] = tolerated_failure_percentage
    if tolerated_failure_count is not None:
        params["toleratedFailureCount"] = tolerated_failure_count
    return _by_arn(arn, "UpdateMapRun", **params)


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
            finished = AlreadyFinished(exc.message, exc.code, "StopExecution")
            # Not running, maybe because an earlier attempt of this call stopped it.
            finished.unanswered = exc.unanswered
            raise finished from exc
        raise


def start_execution(target_arn: str, *, name: str, input: str) -> dict[str, Any]:
    """StartExecution of a state machine, a version or an alias ARN:
    {"executionArn", "startDate"}. A Standard workflow's start is idempotent by
    name: the same name and input as a running execution answers with that one."""
    try:
        return _by_arn(
            target_arn, "StartExecution", stateMachineArn=target_arn, name=name, input=input
        )
    except AwsError as exc:
        out: AwsError
        if exc.code == "ExecutionAlreadyExists":
            out = AlreadyExists(exc.message, exc.code, "StartExecution")
            found = re.search(r"'(arn:[^']+)'", exc.message)
            out.arn = found.group(1) if found else ""
        elif exc.code == "InvalidExecutionInput":
            out = InvalidInput(exc.message, exc.code, "StartExecution")
        else:
            raise
        out.unanswered = exc.unanswered
        raise out from exc


def redrive_execution(arn: str, *, client_token: str) -> dict[str, Any]:
    """RedriveExecution; `client_token` makes a repeated call redrive once."""
    try:
        return _by_arn(arn, "RedriveExecution", executionArn=arn, clientToken=client_token)
    except AwsError as exc:
        if exc.code == "ExecutionNotRedrivable":
            refused = NotRedrivable(exc.message, exc.code, "RedriveExecution")
            refused.unanswered = exc.unanswered
            raise refused from exc
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


# Seconds since the epoch, as a string: botocore's reading, not ISO's (20261204).
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def parse_timestamp(value: Any) -> dt.datetime:
    """A timestamp of a response as an aware UTC datetime (the sessions'
    parser). AWS's JSON protocol sends seconds since the epoch, which botocore
    turns into the local zone through dateutil's tzlocal; an ISO-8601 string
    (moto, the fake endpoint) it parses with dateutil's general parser, about
    90 microseconds a timestamp: a third of the sync's own time per event.
    Anything else goes to botocore's parser, as before."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return utc(botocore.utils.parse_timestamp(value))
        return utc(parsed)
    return utc(botocore.utils.parse_timestamp(value))


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
