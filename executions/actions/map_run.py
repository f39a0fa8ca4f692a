"""Changing a running Distributed Map run's limits from the dashboard
(UpdateMapRun: maxConcurrency, toleratedFailurePercentage,
toleratedFailureCount): the way to slow a runaway without stopping it.

One attempt is one `ActionRequest` (kind UPDATE_MAP_RUN), claimed by the
confirmation form's `request_token` before anything is sent: a replayed or
double-clicked POST finds the row and sends nothing again. Then:

1. a live DescribeMapRun (the cache may be seconds old): a Map Run that is
   not RUNNING is REFUSED and nothing is sent; its limits as AWS has them now
   are the "old" values in the row's `parameters`;
2. UpdateMapRun with the new values: DONE, REFUSED when AWS says the Map Run
   is no longer running, FAILED with AWS's answer, or UNKNOWN when it was
   sent (or may have been) and no answer came;
3. a DescribeMapRun after it, so that the page shows what AWS has now, and
   the Map Run is due for the sync at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from executions import aws
from executions.actions import grants
from executions.models import ActionRequest, MapRun
from executions.redaction import redact
from executions.sync import map_runs as map_run_sync

log = logging.getLogger(__name__)

PERMISSION = grants.UPDATE_MAP_RUN
IN_FLIGHT = (
    "No outcome recorded: the attempt was interrupted before AWS answered. "
    "The Map Run's limits may or may not have changed; check its page."
)
# AWS's ranges (UpdateMapRun): maxConcurrency >= 0 (0: no limit, up to
# 10,000 children at once), the percentage 0..100, the count >= 0.
MAX_CONCURRENCY_MAX = 10_000


class TokenReused(ValueError):
    """The form's token was already used for another Map Run."""


def can_update(user: Any) -> bool:
    """Whether the user may; one query for every action permission (grants.py)."""
    return grants.granted(user, PERMISSION)


def limits(run: MapRun) -> dict[str, Any]:
    return {
        "maxConcurrency": run.max_concurrency,
        "toleratedFailurePercentage": run.tolerated_failure_percentage,
        "toleratedFailureCount": run.tolerated_failure_count,
    }


def request_update(
    run: MapRun,
    user: AbstractBaseUser | AnonymousUser,
    *,
    max_concurrency: int | None,
    tolerated_failure_percentage: float | None,
    tolerated_failure_count: int | None,
    request_token: uuid.UUID,
) -> ActionRequest:
    """Change `run`'s limits on behalf of `user`, at most once per `request_token`.
    Always returns the attempt (DONE, REFUSED, FAILED or UNKNOWN)."""
    if not (isinstance(user, PermissionsMixin) and can_update(user)):
        raise PermissionDenied(f"{user.get_username() or 'anonymous'} may not update Map Runs")
    new = {
        "maxConcurrency": max_concurrency,
        "toleratedFailurePercentage": tolerated_failure_percentage,
        "toleratedFailureCount": tolerated_failure_count,
    }
    new = {k: v for k, v in new.items() if v is not None}
    existing = ActionRequest.objects.filter(request_token=request_token).first()
    if existing is not None:
        return _same_run(existing, run)
    try:
        with transaction.atomic():
            attempt = ActionRequest.objects.create(
                kind=ActionRequest.Kind.UPDATE_MAP_RUN,
                target_arn=run.arn,
                execution_id=run.execution_id,
                user_id=user.pk,
                username=user.get_username(),
                parameters={"new": new, "old": limits(run), "old_source": "cache"},
                outcome=ActionRequest.Outcome.FAILED,
                aws_response=IN_FLIGHT,
                request_token=request_token,
            )
    except IntegrityError:
        return _same_run(ActionRequest.objects.get(request_token=request_token), run)
    try:
        _attempt(attempt, run, new)
    except Exception as exc:
        log.exception("update of Map Run %s failed", run.arn)
        attempt.outcome = ActionRequest.Outcome.UNKNOWN
        attempt.aws_response = redact(
            f"internal error ({type(exc).__name__}: {exc}) during the update: "
            "whether AWS changed the limits is unknown; check the Map Run's page."
        )[:2000]
    attempt.save(update_fields=["parameters", "outcome", "aws_response"])
    log.info("Map Run update %s of %s by %s", attempt.outcome, run.arn, attempt.username)
    return attempt


def in_flight(attempt: ActionRequest) -> bool:
    return attempt.aws_response == IN_FLIGHT


def _same_run(attempt: ActionRequest, run: MapRun) -> ActionRequest:
    if attempt.target_arn != run.arn or attempt.kind != ActionRequest.Kind.UPDATE_MAP_RUN:
        raise TokenReused(f"request token {attempt.request_token} belongs to another action")
    return attempt


def _attempt(attempt: ActionRequest, run: MapRun, new: dict[str, Any]) -> None:
    Outcome = ActionRequest.Outcome
    try:
        live = aws.describe_map_run(run.arn)
    except aws.Throttled:
        # The re-check is a courtesy: AWS refuses to update a closed Map Run anyway.
        live = None
    except aws.AwsError as exc:
        attempt.outcome = Outcome.FAILED
        attempt.aws_response = f"The live check (DescribeMapRun) failed: {_text(exc)}"
        return
    if live is not None:
        map_run_sync.store_description(run, live)
        attempt.parameters = {"new": new, "old": limits(run), "old_source": "DescribeMapRun"}
        if run.status != "RUNNING":
            attempt.outcome = Outcome.REFUSED
            attempt.aws_response = (
                f"The Map Run is {run.status} (live DescribeMapRun): only a running Map Run's "
                "limits can be changed. Nothing was sent."
            )
            return
    try:
        answer = aws.update_map_run(
            run.arn,
            max_concurrency=new.get("maxConcurrency"),
            tolerated_failure_percentage=new.get("toleratedFailurePercentage"),
            tolerated_failure_count=new.get("toleratedFailureCount"),
        )
    except aws.NoAnswer as exc:
        attempt.outcome = Outcome.UNKNOWN
        attempt.aws_response = (
            f"The update was sent and no answer came ({_text(exc)}): AWS may or may not "
            "have changed the limits."
        )
        _refresh(run)
        return
    except aws.AwsError as exc:
        closed = "not running" in exc.message.lower() or "not in running" in exc.message.lower()
        attempt.outcome = Outcome.REFUSED if closed else Outcome.FAILED
        attempt.aws_response = _text(exc)
        return
    attempt.outcome = Outcome.DONE
    attempt.aws_response = json.dumps(answer, sort_keys=True, default=str) or "{}"
    _refresh(run)


def _refresh(run: MapRun) -> None:
    """What AWS has now, on the page at once; the sync looks again soon."""
    try:
        map_run_sync.store_description(run, aws.describe_map_run(run.arn))
    except aws.AwsError:
        log.info("could not re-read Map Run %s after the update", run.arn)
    MapRun.objects.filter(pk=run.pk).update(sync_due_at=timezone.now())


def _text(exc: aws.AwsError) -> str:
    if isinstance(exc, aws.Throttled):
        return f"AWS is throttling ({exc.code}); nothing changed. Try again in a few seconds."
    if isinstance(exc, aws.Unavailable) and not exc.unanswered:
        return f"AWS could not be reached ({exc.code or 'no answer'}); nothing was sent."
    if isinstance(exc, aws.NotFound):
        return f"AWS does not know this Map Run: {exc.message}"
    return f"{exc.code or 'Error'}: {exc.message}"
