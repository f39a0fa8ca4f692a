"""What every view needs: finding an execution by its ARN, or saying why not."""

from __future__ import annotations

import hashlib
import logging

from django.core.cache import cache

from executions import aws, signals
from executions.arns import NotAnArn, parse_execution_arn, parse_state_machine_arn
from executions.models import Execution, StateMachine
from executions.reads import places
from executions.sync import flows, schedule
from executions.web import ratelimit
from executions.web.errors import PageError

log = logging.getLogger(__name__)

# A link to an execution AWS does not know is answered from memory for this
# long, so that reloading it does not call AWS each time.
UNKNOWN_ARN_MEMORY = 60


def execution_or_404(arn: str, *, lookup: bool = True) -> Execution:
    """The cached execution; one the cache has never seen is looked up in AWS
    once (DescribeExecution, then its history) and stored."""
    try:
        parse_execution_arn(arn)
    except NotAnArn:
        raise PageError(
            404,
            "Not an execution ARN",
            f"{arn[:300]!r} is not a Step Functions execution ARN. It should look like "
            "arn:aws:states:us-east-1:123456789012:execution:StateMachineName:ExecutionName",
        ) from None
    ex = Execution.objects.select_related("state_machine").filter(arn=arn).first()
    if ex is not None:
        return ex
    if not lookup:
        raise PageError(404, "Execution not in the cache", f"{arn} has not been synced.")
    try:
        # Whose credentials would look it up: none, for an account or region
        # this dashboard does not read. Said before anything is sent or
        # recorded (a failed lookup would make every page's bar say so).
        aws.target_for_arn(arn)
    except aws.NotConfigured as exc:
        raise _not_read(arn, exc) from None
    if _remembered_unknown(arn):
        raise _unknown(arn)
    # Each lookup is a DescribeExecution paid from the sync's budget: one
    # person may make SFNUI_LOOKUP_LIMIT a minute, not spend it all.
    ratelimit.spend_lookup()
    try:
        # Someone waits for this page: every attempt of every call together
        # ends within the page deadline.
        with aws.page_deadline():
            return flows.import_execution(arn)
    except aws.NotConfigured as exc:
        raise _not_read(arn, exc) from None
    except aws.NotFound:
        _remember_unknown(arn)
        raise _unknown(arn) from None
    except aws.InvalidArn as exc:
        raise PageError(404, "Not an execution ARN", f"AWS says: {exc.message}") from None
    except aws.Throttled:
        raise PageError(
            503,
            "AWS is throttling",
            "AWS asked us to slow down before this execution could be looked up. "
            "Try again in a few seconds.",
        ) from None
    except aws.Unavailable as exc:
        if exc.deadline is not None:
            raise PageError(
                504,
                "AWS did not answer in time",
                f"This execution is not in the cache, and AWS did not answer within "
                f"{exc.deadline:g} s when asked for it. Try again in a moment.",
            ) from None
        raise PageError(
            503,
            "AWS is unreachable",
            f"This execution is not in the cache and AWS could not be reached to look it up "
            f"({exc.code or 'no answer'}). Try again when AWS is reachable.",
        ) from None
    except aws.AwsError as exc:
        raise PageError(502, "AWS refused the lookup", f"{exc.code}: {exc.message}") from None


def state_machine_or_404(arn: str) -> StateMachine:
    if "/" in arn.rsplit(":", 1)[-1]:
        # A Map Run's child state machine (...:stateMachine:PARENT/LABEL): known
        # from its Map Runs only, never listed by AWS.
        child = StateMachine.objects.filter(arn=arn).first()
        if child is not None:
            return child
    try:
        parse_state_machine_arn(arn)
    except NotAnArn:
        raise PageError(
            404,
            "Not a state machine ARN",
            f"{arn[:300]!r} is not a Step Functions state machine ARN.",
        ) from None
    sm = StateMachine.objects.filter(arn=arn).first()
    if sm is None:
        raise PageError(
            404,
            "Unknown state machine",
            f"{arn} is not among the synced state machines (regions synced: see /sync/).",
        )
    return sm


def _not_read(arn: str, exc: aws.NotConfigured) -> PageError:
    if exc.code != "NotConfigured":
        # The account is configured, its credentials are not there.
        return PageError(502, "AWS refused the lookup", f"{exc.code}: {exc.message}")
    parsed = parse_execution_arn(arn)
    return PageError(
        404,
        "Not an account or region this dashboard reads",
        f"The execution {arn} is in account {parsed.account}, region {parsed.region[:64]}: "
        f"{exc.message}. This dashboard reads {'; '.join(places.where_read())}.",
    )


def _unknown(arn: str) -> PageError:
    return PageError(
        404,
        "Execution not found",
        f"AWS does not know the execution {arn}. Check the ARN and the region.",
    )


def _key(arn: str) -> str:
    return "unknown-arn:" + hashlib.sha256(arn.encode()).hexdigest()


def _remembered_unknown(arn: str) -> bool:
    try:
        return bool(cache.get(_key(arn)))
    except Exception:  # the shared cache (Redis) is down: just ask AWS
        log.warning("shared cache unavailable", exc_info=True)
        return False


def _remember_unknown(arn: str) -> None:
    try:
        cache.set(_key(arn), 1, timeout=UNKNOWN_ARN_MEMORY)
    except Exception:
        log.warning("shared cache unavailable", exc_info=True)


def sync_now(ex: Execution) -> None:
    """Someone is watching a running execution: make it due (schedule.make_due)
    and, if it was not already, ask a worker to sync it now rather than at the
    scheduler's next tick. The page never fails because the broker is down."""
    if not ex.is_open or not schedule.make_due(ex):
        return
    try:
        signals.sync_now_wanted.send(sender=__name__, arn=ex.arn)
    except Exception:
        log.warning(
            "could not enqueue a sync of %s; the scheduler will do it", ex.arn, exc_info=True
        )
