"""Stopping an execution from the dashboard, and the audit record of every attempt.

One attempt is one `StopRequest` row, claimed by the confirmation form's
`request_token` *before* anything is sent: a replayed or double-clicked POST
finds the row and sends nothing again. Then, in order:

1. a live DescribeExecution (the cache may be seconds old): an execution
   that already finished is REFUSED and nothing is sent;
2. StopExecution with the person's `error` and `cause`, so that AWS's own
   history says who stopped it and why: STOPPED, or FAILED with AWS's answer,
   or UNKNOWN when the request was sent (or may have been) and no answer came:
   then a DescribeExecution at once says what AWS did, as far as it can tell;
3. an immediate re-sync of the execution (Celery), or, if the broker is
   down, the execution stays due for the scheduler.

From a page all of it happens within the page's deadline (aws.page_deadline):
the stop leaves part of it for the re-check after a stop that got no answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from executions import aws, signals
from executions.actions import grants
from executions.models import Execution, StopRequest
from executions.redaction import redact
from executions.sync import rows

log = logging.getLogger(__name__)

PERMISSION = grants.STOP


def can_stop(user: Any) -> bool:
    """Whether the user may; one query for every action permission (grants.py)."""
    return grants.granted(user, PERMISSION)


# What a claimed attempt says until AWS has answered. If the process dies
# in between, the audit keeps saying exactly this, which is the truth.
IN_FLIGHT = (
    "No outcome recorded: the attempt was interrupted before AWS answered. "
    "The execution may or may not have been stopped; check its status."
)
# A duplicate POST waits for the first one to get AWS's answer, so that the
# page it shows tells the outcome: the first one's page deadline, and this
# much for the database work around its calls (see duplicate_wait()).
DUPLICATE_MARGIN = 2.0
_POLL = 0.2
# Of the time left when the stop is sent, the share it may take: the rest is
# for the re-check if it gets no answer.
STOP_SHARE = 0.55


def duplicate_wait() -> float:
    return float(settings.SFNUI_AWS_PAGE_DEADLINE) + DUPLICATE_MARGIN


class TokenReused(ValueError):
    """The form's token was already used to stop another execution."""


def request_stop(
    execution: Execution,
    user: AbstractBaseUser | AnonymousUser,
    error: str,
    cause: str,
    request_token: uuid.UUID,
    *,
    batch_id: uuid.UUID | None = None,
) -> StopRequest:
    """Stop `execution` on behalf of `user`, at most once per `request_token`.

    Always returns the attempt's StopRequest (STOPPED, REFUSED or FAILED);
    AWS errors are recorded, not raised.
    """
    if not (isinstance(user, PermissionsMixin) and can_stop(user)):
        raise PermissionDenied(f"{user.get_username() or 'anonymous'} may not stop executions")
    existing = StopRequest.objects.filter(request_token=request_token).first()
    if existing is not None:
        return _settled(_same_execution(existing, execution))
    try:
        with transaction.atomic():
            attempt = StopRequest.objects.create(
                execution=execution,
                user_id=user.pk,
                username=user.get_username(),
                error=error,
                cause=cause,
                status_before=execution.status,
                outcome=StopRequest.Outcome.FAILED,
                aws_response=IN_FLIGHT,
                request_token=request_token,
                batch_id=batch_id,
            )
    except IntegrityError:
        # The same form, posted twice at the same moment: the other request
        # claimed it first and is the one that talks to AWS.
        existing = StopRequest.objects.get(request_token=request_token)
        return _settled(_same_execution(existing, execution))

    try:
        _attempt(attempt, execution)
    except Exception as exc:
        # Not an AWS answer (say, the shared cache that meters the API budget
        # is down): still a recorded attempt, never a half-written row, and
        # it says only what is known of whether the stop went out.
        log.exception("stop of %s failed", execution.arn)
        _internal_error(attempt, execution, exc)
    attempt.save(update_fields=["status_before", "outcome", "aws_response"])
    log.info(
        "stop %s of %s by %s: %s",
        attempt.outcome,
        execution.arn,
        attempt.username,
        attempt.aws_response[:200],
    )
    return attempt


def in_flight(attempt: StopRequest) -> bool:
    """The attempt was claimed but AWS's answer was never recorded (yet)."""
    return attempt.aws_response == IN_FLIGHT


def _same_execution(attempt: StopRequest, execution: Execution) -> StopRequest:
    if attempt.execution_id != execution.pk:
        raise TokenReused(f"request token {attempt.request_token} belongs to another execution")
    return attempt


def _settled(attempt: StopRequest) -> StopRequest:
    """The attempt, once whoever claimed it has recorded AWS's answer (bounded wait)."""
    deadline = time.monotonic() + duplicate_wait()
    while in_flight(attempt) and time.monotonic() < deadline:
        time.sleep(_POLL)
        attempt.refresh_from_db()
    return attempt


def _attempt(attempt: StopRequest, ex: Execution) -> None:
    """Fill in the attempt's outcome; the only place that talks to AWS."""
    Outcome = StopRequest.Outcome
    if not ex.is_open:
        # Finished in the cache: a finished execution only runs again after
        # a redrive, which the sync would have seen. Nothing is sent.
        attempt.outcome = Outcome.REFUSED
        attempt.aws_response = f"Already finished ({ex.status}) in the cache: nothing was sent."
        return

    try:
        live = aws.describe_execution(ex.arn)
    except aws.Throttled:
        # The re-check is a courtesy; the stop must still go out mid-incident.
        # StopExecution has its own, much larger quota, and AWS refuses to
        # stop a finished execution anyway.
        live = None
    except aws.AwsError as exc:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = _failure_text(exc)
        return
    if live is not None:
        _store(ex, live)
        attempt.status_before = str(live.get("status", ex.status))
        if attempt.status_before not in ("RUNNING", "PENDING_REDRIVE"):
            attempt.outcome = Outcome.REFUSED
            attempt.aws_response = (
                f"Already finished: AWS says {attempt.status_before} "
                "(live DescribeExecution); nothing was sent."
            )
            _resync(ex)
            return

    try:
        attempt._sfnui_stage = _SENDING  # type: ignore[attr-defined]
        with _stop_window():
            answer = aws.stop_execution(ex.arn, error=attempt.error, cause=attempt.cause)
    except aws.AlreadyFinished as exc:
        if exc.unanswered:
            # An earlier attempt of this call may be what finished it.
            _unknown(attempt, ex, exc)
            return
        attempt.outcome = Outcome.REFUSED
        attempt.aws_response = f"Already finished: AWS says {exc.message}"
        _resync(ex)
        return
    except aws.NoAnswer as exc:
        _unknown(attempt, ex, exc)
        return
    except aws.AwsError as exc:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = _failure_text(exc)
        return

    attempt._sfnui_stage = _ANSWERED  # type: ignore[attr-defined]
    attempt.outcome = Outcome.STOPPED
    attempt.aws_response = json.dumps(answer, default=_json_default, sort_keys=True)
    _record_aborted(ex, attempt, aws.utc(answer.get("stopDate")))
    _resync(ex)


# How far an attempt got, for an error that is not AWS's answer: before
# StopExecution nothing was sent; during it, it may have been; after it, AWS's
# answer is already recorded on the attempt.
_SENDING = "sending"
_ANSWERED = "answered"


def _internal_error(attempt: StopRequest, ex: Execution, exc: Exception) -> None:
    what = redact(f"internal error ({type(exc).__name__}: {exc})")
    stage = getattr(attempt, "_sfnui_stage", None)
    if stage == _ANSWERED and not in_flight(attempt):
        # AWS answered and its answer is kept; what failed came after it (the
        # re-sync, say). The next sync corrects the cache.
        attempt.aws_response = f"{attempt.aws_response} (then an {what})"[:2000]
    elif stage in (_SENDING, _ANSWERED):
        attempt.outcome = StopRequest.Outcome.UNKNOWN
        attempt.aws_response = (
            f"The stop may have been sent: an {what} came while sending it, before AWS's "
            "answer was read. The outcome is unknown; the next sync checks the execution."
        )[:2000]
        with contextlib.suppress(Exception):
            Execution.objects.filter(pk=ex.pk).update(
                needs_describe=True, sync_due_at=timezone.now()
            )
    else:
        attempt.outcome = StopRequest.Outcome.FAILED
        attempt.aws_response = f"Not sent: {what}"[:2000]


def _stop_window() -> contextlib.AbstractContextManager[None]:
    """Within a deadline, the stop leaves time for the re-check after it."""
    left = aws.remaining()
    if left is None:
        return contextlib.nullcontext()
    return aws.deadline(left * STOP_SHARE, label=aws.deadline_seconds())


def _unknown(attempt: StopRequest, ex: Execution, exc: aws.AwsError) -> None:
    """The stop was sent, or may have been, and no answer came: say so, and
    ask AWS at once what the execution is doing now."""
    attempt.outcome = StopRequest.Outcome.UNKNOWN
    attempt.aws_response = (
        f"Sent, no answer: the outcome is unknown. {exc.message} ({exc.code}). {_recheck(ex)}"
    )[:2000]
    _resync(ex)


def _recheck(ex: Execution) -> str:
    try:
        live = aws.describe_execution(ex.arn)
    except aws.Unavailable as exc:
        return (
            f"The re-check got no answer either ({exc.code}: {exc.message}); "
            "the next sync checks it again."
        )
    except aws.AwsError as exc:
        return f"The re-check failed ({exc.code}: {exc.message}); the next sync checks it again."
    _store(ex, live)
    status = str(live.get("status", ""))
    said = f"Re-checked at once: AWS says {status}"
    if status == "ABORTED":
        stopped = aws.utc(live.get("stopDate"))
        said += f", stopped at {stopped:%Y-%m-%d %H:%M:%S} UTC" if stopped else ""
        said += f" with error {live.get('error') or '(none)'}"
    return f"{said}; the next sync checks it again."


def _failure_text(exc: aws.AwsError) -> str:
    if isinstance(exc, aws.NoAnswer):
        # Only the live re-check before the stop can get here.
        return (
            "AWS unreachable: the stop was not sent, the live check before it got no answer "
            f"({exc.code}: {exc.message})"
        )
    if isinstance(exc, aws.Unavailable):
        return f"AWS unreachable: nothing could be sent ({exc.code or 'no answer'}: {exc.message})"
    if isinstance(exc, aws.Throttled):
        return f"AWS is throttling, try again in a few seconds ({exc.code}: {exc.message})"
    if isinstance(exc, aws.NotFound):
        return f"AWS does not know this execution ({exc.code}: {exc.message})"
    code = f"{exc.code}: " if exc.code else ""
    return f"AWS refused: {code}{exc.message}"


def _store(ex: Execution, live: dict[str, Any]) -> None:
    """Keep what the live re-check said, as the sync would (compare-and-set)."""
    if not rows.store_description(ex, live):
        ex.refresh_from_db()
        rows.store_description(ex, live)


def _record_aborted(ex: Execution, attempt: StopRequest, stop_date: dt.datetime | None) -> None:
    """AWS accepted the stop: the execution is ABORTED with our error and cause.

    Stored right away so that the page we redirect to does not show it
    running; compare-and-set on what the live re-check stored, so a sync
    that knows better wins, and `needs_describe` makes the next sync
    confirm it from AWS.
    """
    Execution.objects.filter(pk=ex.pk, status=ex.status, redrive_count=ex.redrive_count).update(
        status="ABORTED",
        stop_date=stop_date or timezone.now(),
        error=attempt.error,
        cause=attempt.cause,
        needs_describe=True,
        history_complete=False,
    )


def _resync(ex: Execution) -> None:
    """Sync the execution now: due at once for the scheduler (durable), and a
    task for a worker (immediate) once this transaction commits."""
    Execution.objects.filter(pk=ex.pk).update(needs_describe=True, sync_due_at=timezone.now())
    transaction.on_commit(lambda: _enqueue_resync(ex.arn))


def _enqueue_resync(arn: str) -> None:
    try:
        signals.resync_wanted.send(sender=__name__, arn=arn)
    except Exception:
        # The broker (Redis) is down. The stop itself is done and recorded;
        # the execution is due, so the scheduler syncs it when things are back.
        log.warning("could not enqueue the re-sync of %s; it stays due", arn, exc_info=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return aws.utc(value).isoformat()
    return str(value)
