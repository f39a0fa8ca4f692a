"""Redriving an execution from the dashboard, and the audit record of every attempt.

AWS redrives a Standard execution that is FAILED, TIMED_OUT or ABORTED and
started less than 14 days ago: it runs again from the unsuccessful step,
with the same ARN, as a new attempt (`redriveCount` + 1, an
`ExecutionRedriven` event in its history).

One attempt is one `ActionRequest` (kind REDRIVE), claimed by the
confirmation form's `request_token` *before* anything is sent: a replayed
or double-clicked POST finds the row and sends nothing again. The same
token is AWS's `clientToken`, so even a RedriveExecution that botocore
retries after a lost answer redrives once. Then, in order:

1. an execution started 14 days ago or more is REFUSED from the cache (that
   never changes); nothing is sent;
2. a live DescribeExecution: an execution that is not FAILED, TIMED_OUT or
   ABORTED now, or that AWS says is NOT_REDRIVABLE, is REFUSED with AWS's
   reason, and nothing is sent;
3. RedriveExecution: DONE, or REFUSED (`ExecutionNotRedrivable`), FAILED
   with AWS's answer, or UNKNOWN when it was sent (or may have been) and no
   answer came, followed at once by a DescribeExecution saying what AWS did;
4. the execution is made RUNNING in the cache and due for sync at once (a
   task, or the scheduler if the broker is down).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from executions import aws
from executions.actions import grants, stop
from executions.models import ActionRequest, Execution
from executions.redaction import redact

log = logging.getLogger(__name__)

PERMISSION = grants.REDRIVE
# What AWS redrives, and for how long after the start.
REDRIVABLE_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
WINDOW = dt.timedelta(days=14)

IN_FLIGHT = (
    "No outcome recorded: the attempt was interrupted before AWS answered. "
    "The execution may or may not have been redriven; check its status."
)
_POLL = 0.2


class TokenReused(ValueError):
    """The form's token was already used to redrive another execution."""


def can_redrive(user: Any) -> bool:
    """Whether the user may; one query for every action permission (grants.py)."""
    return grants.granted(user, PERMISSION)


def redrivable_until(ex: Execution) -> dt.datetime:
    """AWS redrives an execution started less than 14 days ago."""
    return ex.start_date + WINDOW


def why_not(ex: Execution, now: dt.datetime | None = None) -> str:
    """Why the cache says this execution cannot be redriven ("" if it may be).
    AWS has the last word: the action checks it live first."""
    now = now or timezone.now()
    if ex.status not in REDRIVABLE_STATUSES:
        return f"It is {ex.status}: only failed, timed-out or aborted executions can be redriven."
    if now >= redrivable_until(ex):
        return (
            "It started more than 14 days ago: AWS redrives only executions started "
            "within the last 14 days."
        )
    if ex.redrive_status and ex.redrive_status != "REDRIVABLE":
        reason = ex.redrive_status_reason or "no reason given"
        return f"AWS says it is {ex.redrive_status}: {reason}"
    return ""


def may_redrive(ex: Execution, now: dt.datetime | None = None) -> bool:
    return not why_not(ex, now)


def request_redrive(
    execution: Execution,
    user: AbstractBaseUser | AnonymousUser,
    request_token: uuid.UUID,
    *,
    batch_id: uuid.UUID | None = None,
) -> ActionRequest:
    """Redrive `execution` on behalf of `user`, at most once per `request_token`.

    Always returns the attempt's ActionRequest (DONE, REFUSED, FAILED or
    UNKNOWN); AWS errors are recorded, not raised.
    """
    if not (isinstance(user, PermissionsMixin) and can_redrive(user)):
        raise PermissionDenied(f"{user.get_username() or 'anonymous'} may not redrive executions")
    existing = ActionRequest.objects.filter(request_token=request_token).first()
    if existing is not None:
        return _settled(_same_execution(existing, execution))
    try:
        with transaction.atomic():
            attempt = ActionRequest.objects.create(
                kind=ActionRequest.Kind.REDRIVE,
                target_arn=execution.arn,
                execution=execution,
                user_id=user.pk,
                username=user.get_username(),
                parameters={
                    "status_before": execution.status,
                    "redrive_count_before": execution.redrive_count,
                    "client_token": str(request_token),
                },
                outcome=ActionRequest.Outcome.FAILED,
                aws_response=IN_FLIGHT,
                request_token=request_token,
                batch_id=batch_id,
            )
    except IntegrityError:
        # The same form, posted twice at the same moment: the other one sends it.
        existing = ActionRequest.objects.get(request_token=request_token)
        return _settled(_same_execution(existing, execution))

    try:
        _attempt(attempt, execution)
    except Exception as exc:
        # Not an AWS answer (say, the budget's cache is down): still a
        # recorded attempt, saying only what is known.
        log.exception("redrive of %s failed", execution.arn)
        sent = bool(getattr(attempt, "_sfnui_sending", False))
        what = redact(f"internal error ({type(exc).__name__}: {exc})")
        if sent:
            attempt.outcome = ActionRequest.Outcome.UNKNOWN
            attempt.aws_response = (
                f"The redrive may have been sent: an {what} came while sending it. "
                "The outcome is unknown; the next sync checks the execution."
            )[:2000]
        else:
            attempt.outcome = ActionRequest.Outcome.FAILED
            attempt.aws_response = f"Not sent: {what}"[:2000]
    attempt.save(update_fields=["parameters", "outcome", "aws_response", "result_arn"])
    log.info(
        "redrive %s of %s by %s: %s",
        attempt.outcome,
        execution.arn,
        attempt.username,
        attempt.aws_response[:200],
    )
    return attempt


def in_flight(attempt: ActionRequest) -> bool:
    return attempt.aws_response == IN_FLIGHT


def _same_execution(attempt: ActionRequest, execution: Execution) -> ActionRequest:
    if attempt.kind != ActionRequest.Kind.REDRIVE or attempt.target_arn != execution.arn:
        raise TokenReused(f"request token {attempt.request_token} belongs to another request")
    return attempt


def _settled(attempt: ActionRequest) -> ActionRequest:
    deadline = time.monotonic() + stop.duplicate_wait()
    while in_flight(attempt) and time.monotonic() < deadline:
        time.sleep(_POLL)
        attempt.refresh_from_db()
    return attempt


def _attempt(attempt: ActionRequest, ex: Execution) -> None:
    """Fill in the attempt's outcome; the only place that talks to AWS."""
    Outcome = ActionRequest.Outcome
    now = timezone.now()
    if now >= redrivable_until(ex):
        attempt.outcome = Outcome.REFUSED
        attempt.aws_response = (
            f"Not redrivable: it started at {aws.utc(ex.start_date):%Y-%m-%d %H:%M:%S} UTC, "
            "more than 14 days ago; nothing was sent."
        )
        return

    try:
        live = aws.describe_execution(ex.arn)
    except aws.Throttled:
        # The re-check is a courtesy; AWS refuses a redrive it cannot do anyway.
        live = None
    except aws.AwsError as exc:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = _failure_text(exc, checking=True)
        return
    if live is not None:
        stop._store(ex, live)
        status = str(live.get("status", ex.status))
        attempt.parameters["status_before"] = status
        attempt.parameters["redrive_count_before"] = int(live.get("redriveCount") or 0)
        redrive_status = str(live.get("redriveStatus") or "")
        if status not in REDRIVABLE_STATUSES or redrive_status == "NOT_REDRIVABLE":
            reason = live.get("redriveStatusReason") or f"Execution is {status}"
            attempt.outcome = Outcome.REFUSED
            attempt.aws_response = (
                f"Not redrivable: AWS says {status}, {redrive_status or 'no redrive status'} "
                f"({reason}; live DescribeExecution); nothing was sent."
            )[:2000]
            return

    try:
        attempt._sfnui_sending = True  # type: ignore[attr-defined]
        answer = aws.redrive_execution(ex.arn, client_token=str(attempt.request_token))
    except aws.NotRedrivable as exc:
        if exc.unanswered:
            # An earlier attempt of this very call may be what redrove it.
            _unknown(attempt, ex, exc)
            return
        attempt.outcome = Outcome.REFUSED
        attempt.aws_response = f"Not redrivable: AWS says {exc.message} ({exc.code})"[:2000]
        stop._resync(ex)
        return
    except aws.NoAnswer as exc:
        _unknown(attempt, ex, exc)
        return
    except aws.AwsError as exc:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = _failure_text(exc)
        return
    attempt._sfnui_sending = False  # type: ignore[attr-defined]
    redrive_date = aws.utc(answer.get("redriveDate"))
    attempt.outcome = Outcome.DONE
    attempt.result_arn = ex.arn
    attempt.aws_response = json.dumps(answer, default=stop._json_default, sort_keys=True)
    _record_running(ex, redrive_date or timezone.now())
    stop._resync(ex)


def _record_running(ex: Execution, redrive_date: dt.datetime) -> None:
    """AWS accepted the redrive: the execution runs again, as its next attempt.

    Stored right away so that the page we redirect to shows it running;
    compare-and-set on what the live re-check stored, so a sync that knows
    better wins, and `needs_describe` makes the next sync confirm it.
    """
    Execution.objects.filter(pk=ex.pk, status=ex.status, redrive_count=ex.redrive_count).update(
        status="RUNNING",
        stop_date=None,
        output=None,
        error=None,
        cause=None,
        redrive_count=ex.redrive_count + 1,
        redrive_date=redrive_date,
        # Unknown until the sync describes it: a listing that learns this
        # attempt's end keeps it, and a stale "RUNNING" reason would hide the
        # Redrive button of a failed execution.
        redrive_status="",
        redrive_status_reason="",
        needs_describe=True,
        history_complete=False,
    )


def _unknown(attempt: ActionRequest, ex: Execution, exc: aws.AwsError) -> None:
    attempt.outcome = ActionRequest.Outcome.UNKNOWN
    attempt.aws_response = (
        f"Sent, no answer: the outcome is unknown. {exc.message} ({exc.code}). {_recheck(ex)}"
    )[:2000]
    stop._resync(ex)


def _recheck(ex: Execution) -> str:
    try:
        live = aws.describe_execution(ex.arn)
    except aws.AwsError as exc:
        return f"The re-check failed ({exc.code}: {exc.message}); the next sync checks it again."
    before = ex.redrive_count
    stop._store(ex, live)
    count = int(live.get("redriveCount") or 0)
    status = str(live.get("status", ""))
    if count > before:
        return f"Re-checked at once: AWS says {status}, redriven (attempt {count + 1})."
    return f"Re-checked at once: AWS says {status}, not redriven (still attempt {count + 1})."


def _failure_text(exc: aws.AwsError, *, checking: bool = False) -> str:
    if isinstance(exc, aws.Unavailable):
        if checking:
            return (
                "AWS unreachable: the redrive was not sent, the live check before it got "
                f"no answer ({exc.code or 'no answer'}: {exc.message})"
            )
        return f"AWS unreachable: nothing could be sent ({exc.code or 'no answer'}: {exc.message})"
    if isinstance(exc, aws.Throttled):
        return f"AWS is throttling, try again in a few seconds ({exc.code}: {exc.message})"
    if isinstance(exc, aws.NotFound):
        return f"AWS does not know this execution ({exc.code}: {exc.message})"
    code = f"{exc.code}: " if exc.code else ""
    return f"AWS refused: {code}{exc.message}"
