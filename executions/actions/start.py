"""Starting an execution from the dashboard (a start, or a re-run of another
execution's input), and the audit record of every attempt.

One attempt is one `ActionRequest` row (kind START), claimed by the
confirmation form's `request_token` *before* anything is sent: a replayed or
double-clicked POST finds the row and sends nothing again. The execution's
name, when the person gave none, is made from that token, so that even a
StartExecution that botocore sends twice (the first answer lost) starts ONE
execution of a Standard workflow: AWS answers a second start with the same
name and input as a running execution with that same execution.

Then, in order:

1. StartExecution on the state machine, or on the version or alias chosen:
   DONE with the new execution's ARN, REFUSED when AWS says an execution of
   that name already exists (closed, or with another input), FAILED with
   AWS's answer, or UNKNOWN when the request was sent (or may have been) and
   no answer came: then a DescribeExecution of the ARN the name gives says
   whether it started;
2. for a Standard workflow, the new execution's row, from the answer and a
   DescribeExecution, so that its page exists at once; it is due for the
   sync, and a worker is asked to sync it now. An Express workflow's
   executions have no DescribeExecution or history in the API: the attempt
   keeps the ARN and the start date, and nothing is cached.

The parameters recorded are the name, the input's size and SHA-256, and the
execution it re-runs: never the input itself (it may hold anything).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from executions import aws, signals
from executions.actions import grants
from executions.models import (
    ActionRequest,
    Execution,
    StateMachine,
    StateMachineAlias,
    StateMachineVersion,
)
from executions.redaction import redact
from executions.sync import rows

log = logging.getLogger(__name__)

PERMISSION = grants.START
# AWS's limits (StartExecution): the input is at most 256 KiB of UTF-8, a
# name 1 to 80 characters without whitespace, brackets, wildcards, some
# punctuation or control characters.
INPUT_MAX_BYTES = 256 * 1024
NAME_MAX = 80
_FORBIDDEN_NAME = re.compile(r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]")
# A start made here without a name is called this, plus the form's token.
GENERATED_PREFIX = "sfnui-"

Outcome = ActionRequest.Outcome

# What a claimed attempt says until AWS has answered. If the process dies in
# between, the audit keeps saying exactly this, which is the truth.
IN_FLIGHT = (
    "No outcome recorded: the attempt was interrupted before AWS answered. "
    "The execution may or may not have been started; look for it by its name."
)
DUPLICATE_WAIT_MARGIN = 2.0
_POLL = 0.2
# An execution of our name and input that AWS says exists, started this long
# before our claim at most, is taken for the one an unanswered attempt of
# our own call started (clocks differ a little).
CLOCK_SKEW = dt.timedelta(seconds=5)


def can_start(user: Any) -> bool:
    """Whether the user may; one query for every action permission (grants.py)."""
    return grants.granted(user, PERMISSION)


# --- What may be sent ----------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why AWS would refuse this execution name, or None."""
    if not 1 <= len(name) <= NAME_MAX:
        return f"A name is 1 to {NAME_MAX} characters long (this one has {len(name)})."
    bad = _FORBIDDEN_NAME.search(name)
    if bad:
        char = bad.group(0)
        shown = "a space" if char == " " else ("whitespace" if char.isspace() else repr(char))
        if not char.isprintable() and not char.isspace():
            shown = f"the control character U+{ord(char):04X}"
        return (
            f"A name cannot contain {shown}. AWS forbids whitespace, brackets < > {{ }} [ ], "
            'wildcards ? *, the characters " # % \\ ^ | ~ ` $ & , ; : / and control characters.'
        )
    return None


def generated_name(request_token: uuid.UUID) -> str:
    """The name of a start made without one: the same for every POST of one form."""
    return f"{GENERATED_PREFIX}{request_token}"


def input_problem(text: str) -> str | None:
    """Why AWS would refuse this input, or None: JSON text of at most 256 KiB."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > INPUT_MAX_BYTES:
        return (
            f"The input is {size:,} bytes; AWS takes at most {INPUT_MAX_BYTES:,} bytes "
            "(256 KiB) of UTF-8."
        )
    try:
        json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" at line {exc.lineno}, column {exc.colno}"
            return f"The input is not valid JSON: {exc.msg}{where}."
        return f"The input is not valid JSON: {exc}."
    return None


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON (and AWS) does not.
    raise ValueError(f"{name} is not a JSON value")


def input_facts(text: str) -> dict[str, Any]:
    data = text.encode("utf-8", "surrogatepass")
    return {"input_bytes": len(data), "input_sha256": hashlib.sha256(data).hexdigest()}


@dataclass(frozen=True)
class Target:
    """What a start can be sent to: the state machine, one of its versions, or an alias."""

    arn: str
    kind: str  # "state machine" | "version" | "alias"
    label: str


def targets(sm: StateMachine) -> list[Target]:
    """The state machine (its latest definition), then its aliases, then its
    versions, newest first: the cached ones AWS still lists."""
    out = [Target(sm.arn, "state machine", f"{sm.name} (the latest definition, unversioned)")]
    aliases = StateMachineAlias.objects.filter(state_machine=sm).exclude(status="DELETED")
    versions = {
        v.arn: v
        for v in StateMachineVersion.objects.filter(state_machine=sm).exclude(status="DELETED")
    }
    for alias in aliases.order_by("name"):
        routes = []
        for route in alias.routing or []:
            version = versions.get(str(route.get("stateMachineVersionArn", "")))
            number = version.version if version else str(route.get("stateMachineVersionArn", ""))
            routes.append(f"version {number}: {route.get('weight', '?')}%")
        label = f"alias {alias.name}" + (f" ({', '.join(routes)})" if routes else "")
        out.append(Target(alias.arn, "alias", label))
    for version in sorted(versions.values(), key=lambda v: -v.version):
        label = f"version {version.version}" + (
            f": {version.description[:80]}" if version.description else ""
        )
        out.append(Target(version.arn, "version", label))
    return out


def target_for(execution: Execution) -> str:
    """What a re-run of `execution` starts: the alias it ran through, else the
    version it ran, else the state machine."""
    return (
        execution.state_machine_alias_arn
        or execution.state_machine_version_arn
        or execution.state_machine.arn
    )


def execution_arn(sm: StateMachine, name: str) -> str:
    """The ARN AWS gives an execution of `sm` called `name` (whatever version or
    alias it is started through)."""
    kind = "express" if sm.type == "EXPRESS" else "execution"
    return f"{sm.arn.replace(':stateMachine:', f':{kind}:', 1)}:{name}"


# --- The attempt ---------------------------------------------------------------


class TokenReused(ValueError):
    """The form's token was already used for another action or state machine."""


def duplicate_wait() -> float:
    return float(settings.SFNUI_AWS_PAGE_DEADLINE) + DUPLICATE_WAIT_MARGIN


def request_start(
    sm: StateMachine,
    user: AbstractBaseUser | AnonymousUser,
    *,
    target_arn: str,
    name: str,
    input_text: str,
    request_token: uuid.UUID,
    source: Execution | None = None,
) -> ActionRequest:
    """Start an execution of `sm` (through `target_arn`: the state machine, a
    version or an alias of it) on behalf of `user`, at most once per
    `request_token`. `name` "" means one made from the token.

    Always returns the attempt's ActionRequest (DONE, REFUSED, FAILED or
    UNKNOWN); AWS errors are recorded, not raised. Raises PermissionDenied,
    TokenReused, or ValueError for a target that is not of `sm` or a bad
    name or input (the form checks those first).
    """
    if not (isinstance(user, PermissionsMixin) and can_start(user)):
        raise PermissionDenied(f"{user.get_username() or 'anonymous'} may not start executions")
    if target_arn not in {t.arn for t in targets(sm)}:
        raise ValueError(f"{target_arn} is not {sm.name} or one of its versions or aliases")
    name = name or generated_name(request_token)
    problem = name_problem(name) or input_problem(input_text)
    if problem:
        raise ValueError(problem)
    parameters: dict[str, Any] = {
        "name": name,
        "name_generated": name == generated_name(request_token),
        "state_machine": sm.arn,
        **input_facts(input_text),
    }
    existing = ActionRequest.objects.filter(request_token=request_token).first()
    if existing is not None:
        return _settled(_same_start(existing, target_arn, parameters))
    if source is not None:
        parameters["rerun_of"] = source.arn
    try:
        with transaction.atomic():
            attempt = ActionRequest.objects.create(
                kind=ActionRequest.Kind.START,
                target_arn=target_arn,
                user_id=user.pk,
                username=user.get_username(),
                parameters=parameters,
                outcome=Outcome.FAILED,
                aws_response=IN_FLIGHT,
                request_token=request_token,
            )
    except IntegrityError:
        # The same form, posted twice at the same moment: the other request
        # claimed it first and is the one that talks to AWS.
        existing = ActionRequest.objects.get(request_token=request_token)
        return _settled(_same_start(existing, target_arn, parameters))

    try:
        _attempt(attempt, sm, name, input_text)
    except Exception as exc:
        # Not an AWS answer (the shared cache that meters the budget is down,
        # say): still a recorded attempt, saying what is known.
        log.exception("start of %s failed", target_arn)
        _internal_error(attempt, exc)
    attempt.save(update_fields=["outcome", "aws_response", "result_arn", "execution", "parameters"])
    log.info(
        "start %s of %s by %s: %s",
        attempt.outcome,
        target_arn,
        attempt.username,
        attempt.aws_response[:200],
    )
    return attempt


def in_flight(attempt: ActionRequest) -> bool:
    return attempt.aws_response == IN_FLIGHT


def express(attempt: ActionRequest) -> bool:
    """A start whose execution is not in the cache because its workflow is Express."""
    return bool(attempt.parameters.get("express"))


def _same_start(
    attempt: ActionRequest, target_arn: str, parameters: dict[str, Any]
) -> ActionRequest:
    """The attempt this form already made, if it asked for the same start: the
    same form sent again after its fields were changed (back, edit, confirm)
    is not a double click, and must not pass for one."""
    asked = attempt.parameters
    if attempt.kind != ActionRequest.Kind.START or attempt.target_arn != target_arn:
        raise TokenReused(f"request token {attempt.request_token} belongs to another action")
    for key in ("state_machine", "name", "input_sha256"):
        if asked.get(key) != parameters[key]:
            raise TokenReused(
                f"request token {attempt.request_token} was used for another start ({key} differs)"
            )
    return attempt


def _settled(attempt: ActionRequest) -> ActionRequest:
    """The attempt, once whoever claimed it has recorded AWS's answer (bounded wait)."""
    deadline = time.monotonic() + duplicate_wait()
    while in_flight(attempt) and time.monotonic() < deadline:
        time.sleep(_POLL)
        attempt.refresh_from_db()
    return attempt


_SENDING = "sending"
_ANSWERED = "answered"


def _attempt(attempt: ActionRequest, sm: StateMachine, name: str, input_text: str) -> None:
    """Fill in the attempt's outcome; the only place that talks to AWS."""
    if sm.type == "EXPRESS":
        attempt.parameters["express"] = True
    try:
        attempt._sfnui_stage = _SENDING  # type: ignore[attr-defined]
        answer = aws.start_execution(attempt.target_arn, name=name, input=input_text)
    except aws.AlreadyExists as exc:
        _already_exists(attempt, sm, name, input_text, exc)
        return
    except aws.NoAnswer as exc:
        _unknown(attempt, sm, name, input_text, exc)
        return
    except aws.AwsError as exc:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = failure_text(exc)
        attempt.parameters["aws_error"] = {"code": exc.code, "kind": error_kind(exc)}
        return
    attempt._sfnui_stage = _ANSWERED  # type: ignore[attr-defined]
    attempt.outcome = Outcome.DONE
    attempt.result_arn = str(answer["executionArn"])
    attempt.aws_response = json.dumps(answer, default=_json_default, sort_keys=True)
    _record(attempt, sm, name, input_text, aws.utc(answer.get("startDate")))


def _already_exists(
    attempt: ActionRequest, sm: StateMachine, name: str, input_text: str, exc: aws.AlreadyExists
) -> None:
    arn = exc.arn or execution_arn(sm, name)
    ours = False
    live: dict[str, Any] | None = None
    if sm.type != "EXPRESS":
        with contextlib.suppress(aws.AwsError):
            live = aws.describe_execution(arn)
    if live is not None and exc.unanswered:
        # An earlier attempt of this very call got through, and its answer was
        # lost: an execution of our name and input, started since our claim,
        # is the one it started (e.g. it already finished, so AWS no longer
        # answers the repeat with it).
        started = aws.utc(live.get("startDate"))
        ours = (
            live.get("input") == input_text
            and started is not None
            and started >= attempt.requested_at - CLOCK_SKEW
        )
    if ours and live is not None:
        attempt.outcome = Outcome.DONE
        attempt.aws_response = (
            f"Started: the first attempt's answer was lost and AWS then said "
            f"“{exc.message}”; DescribeExecution shows it is this start's execution "
            f"(same name and input, started {aws.utc(live['startDate']):%Y-%m-%d %H:%M:%S} UTC)."
        )
        attempt.result_arn = arn
        _record(attempt, sm, name, input_text, aws.utc(live.get("startDate")), live=live)
        return
    attempt.outcome = Outcome.REFUSED
    # Not a result: the execution that holds the name (the page links to it).
    attempt.parameters["existing_execution"] = arn
    same_input = live is not None and live.get("input") == input_text
    why = (
        f"it is {live.get('status')}, and a name cannot be used again for 90 days"
        if live is not None and live.get("status") not in ("RUNNING", "PENDING_REDRIVE")
        else "with a different input"
        if live is not None and not same_input
        else "names are unique per state machine for 90 days"
    )
    attempt.aws_response = (
        f"Not started: an execution named {name} already exists ({why}). "
        f"AWS says: {exc.message} ({exc.code})"
    )[:2000]
    if live is not None:
        with contextlib.suppress(Exception):
            _ensure_row(sm, arn, name, live)


def _unknown(
    attempt: ActionRequest, sm: StateMachine, name: str, input_text: str, exc: aws.AwsError
) -> None:
    """Sent, or maybe sent, and no answer: the name says which ARN it would have;
    ask AWS at once whether that execution exists."""
    arn = execution_arn(sm, name)
    attempt.outcome = Outcome.UNKNOWN
    said = f"Sent, no answer: the outcome is unknown. {exc.message} ({exc.code})."
    if sm.type == "EXPRESS":
        attempt.aws_response = (
            f"{said} An Express execution cannot be looked up in the API: check the "
            f"state machine's logs for an execution named {name}."
        )[:2000]
        return
    try:
        live = aws.describe_execution(arn)
    except aws.NotFound:
        attempt.aws_response = (
            f"{said} Re-checked at once: AWS does not know an execution named {name} "
            "(yet: AWS is eventually consistent). Starting again with the same name and "
            "input cannot start a second one while the first runs."
        )[:2000]
        return
    except aws.AwsError as recheck:
        attempt.aws_response = (
            f"{said} The re-check failed too ({recheck.code}: {recheck.message})."
        )[:2000]
        return
    if live.get("input") == input_text:
        attempt.outcome = Outcome.DONE
        attempt.aws_response = (
            f"{said} Re-checked at once: AWS has the execution {name}, started "
            f"{aws.utc(live['startDate']):%Y-%m-%d %H:%M:%S} UTC with this input."
        )[:2000]
        _record(attempt, sm, name, input_text, aws.utc(live.get("startDate")), live=live)
    else:
        attempt.aws_response = (
            f"{said} Re-checked at once: an execution named {name} exists with another input."
        )[:2000]


def _record(
    attempt: ActionRequest,
    sm: StateMachine,
    name: str,
    input_text: str,
    start_date: dt.datetime | None,
    *,
    live: dict[str, Any] | None = None,
) -> None:
    """The new execution's row (Standard workflows), so that its page opens at
    once: from the answer, then DescribeExecution, then due for the sync."""
    arn = attempt.result_arn or execution_arn(sm, name)
    attempt.result_arn = arn
    if sm.type == "EXPRESS":
        return
    version = alias = ""
    if attempt.target_arn != sm.arn:
        is_alias = StateMachineAlias.objects.filter(arn=attempt.target_arn).exists()
        alias, version = (attempt.target_arn, "") if is_alias else ("", attempt.target_arn)
    Execution.objects.bulk_create(
        [
            Execution(
                arn=arn,
                name=name,
                state_machine=sm,
                status="RUNNING",
                start_date=start_date or timezone.now(),
                input=input_text,
                state_machine_version_arn=version,
                state_machine_alias_arn=alias,
                needs_describe=True,
                sync_due_at=timezone.now(),
            )
        ],
        ignore_conflicts=True,
    )
    ex = Execution.objects.get(arn=arn)
    attempt.execution = ex
    if live is None:
        try:
            live = aws.describe_execution(arn)
        except aws.AwsError as exc:
            # Just started: AWS may not describe it for a moment (eventually
            # consistent), or be busy. The row is there; the sync fills it.
            log.info("describe of the new execution %s: %s", arn, exc)
    if live is not None and ex.needs_describe:
        rows.store_description(ex, live)
    _resync(ex)


def _ensure_row(sm: StateMachine, arn: str, name: str, live: dict[str, Any]) -> None:
    """The execution AWS says exists, in the cache, so the refusal can link to it."""
    Execution.objects.bulk_create(
        [
            Execution(
                arn=arn,
                name=name,
                state_machine=sm,
                status=str(live["status"]),
                start_date=aws.utc(live["startDate"]),
                needs_describe=True,
                sync_due_at=timezone.now(),
            )
        ],
        ignore_conflicts=True,
    )
    ex = Execution.objects.get(arn=arn)
    if ex.needs_describe:
        rows.store_description(ex, live)


def _resync(ex: Execution) -> None:
    """Due at once for the scheduler (durable), and a task for a worker
    (immediate) once this transaction commits."""
    Execution.objects.filter(pk=ex.pk).update(sync_due_at=timezone.now())
    transaction.on_commit(lambda: _enqueue_resync(ex.arn))


def _enqueue_resync(arn: str) -> None:
    try:
        signals.resync_wanted.send(sender=__name__, arn=arn)
    except Exception:
        # The broker is down: the start is done and recorded, the execution
        # stays due, and the scheduler syncs it when things are back.
        log.warning("could not enqueue the sync of %s; it stays due", arn, exc_info=True)


def _internal_error(attempt: ActionRequest, exc: Exception) -> None:
    what = redact(f"internal error ({type(exc).__name__}: {exc})")
    stage = getattr(attempt, "_sfnui_stage", None)
    if stage == _ANSWERED and not in_flight(attempt):
        attempt.aws_response = f"{attempt.aws_response} (then an {what})"[:2000]
    elif stage == _SENDING:
        attempt.outcome = Outcome.UNKNOWN
        attempt.aws_response = (
            f"The start may have been sent: an {what} came while sending it, before AWS's "
            "answer was read. The outcome is unknown; look for the execution by its name."
        )[:2000]
    else:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = f"Not sent: {what}"[:2000]


def error_kind(exc: aws.AwsError) -> str:
    """What kind of failure, for the page's status code: throttled,
    unreachable, not_found, invalid or refused."""
    if isinstance(exc, aws.Throttled):
        return "throttled"
    if isinstance(exc, aws.Unavailable):
        return "unreachable"
    if isinstance(exc, aws.NotFound):
        return "not_found"
    if isinstance(exc, aws.InvalidArn):
        return "invalid"
    return "refused"


def failure_text(exc: aws.AwsError) -> str:
    if isinstance(exc, aws.Unavailable):
        return f"AWS unreachable: nothing was started ({exc.code or 'no answer'}: {exc.message})"
    if isinstance(exc, aws.Throttled):
        return (
            f"AWS is throttling: nothing was started; try again in a few seconds "
            f"({exc.code}: {exc.message})"
        )
    if isinstance(exc, aws.NotFound):
        return f"AWS does not know this state machine, version or alias ({exc.code}: {exc.message})"
    if isinstance(exc, aws.InvalidInput):
        return f"AWS refused the input ({exc.code}: {exc.message})"
    code = f"{exc.code}: " if exc.code else ""
    return f"AWS refused: {code}{exc.message}"


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return aws.utc(value).isoformat()
    return str(value)
