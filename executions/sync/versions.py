"""Versions and aliases of a state machine, and the definition each execution ran.

Versions and aliases are read when the state machine is described (on
discovery, then every DESCRIBE_STATE_MACHINE_EVERY), not on every tick, and
only when the budget has a token for both listings (else at the next one):
ListStateMachineVersions and ListStateMachineAliases (a page each for any
state machine with fewer than 1,000), DescribeStateMachine of each version the
cache has not described yet (a version never changes, so once), and
DescribeStateMachineAlias of each alias (its weights change). What the lists
no longer return is DELETED; its executions keep their ARNs.

The definition an execution ran is stored once per distinct text
(`Definition`, by SHA-256) and linked from `Execution.definition`, once per
execution, when the sync first describes it:

- started through a version or an alias: the version's definition (a version
  is immutable), read once per version, so no call per execution;
- started on the state machine itself: DescribeStateMachineForExecution, one
  call per execution in its life (the state machine may have been updated
  since, and only AWS knows which revision the execution started on), and
  only while its budget has a token: the sync of executions never waits for
  it. What was left for want of budget is filled when the state machine is
  next described (backfill_definitions: at most BACKFILL calls, newest first,
  within the budget), as are executions of versions (no call);
- an Express execution, or a Map Run's child (which runs its parent's
  ItemProcessor: thousands of calls for one text): nothing.

A throttled or unreachable AWS stops the execution's sync as the other calls
do (it is rescheduled and the definition read next time); any other refusal
leaves the definition unknown, and the pages show the state machine's
current one, labelled as such.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from executions import aws, budget
from executions.models import (
    Definition,
    Execution,
    StateMachine,
    StateMachineAlias,
    StateMachineVersion,
)
from executions.sync.rows import without_nul

log = logging.getLogger(__name__)

# DescribeStateMachineForExecution calls a description of the state machine
# may spend on executions whose definition is not known yet.
BACKFILL = 200
# AWS keeps a closed execution's details for 90 days.
KEPT = dt.timedelta(days=90)


def definition_for(text: str, revision_id: str = "") -> Definition:
    """The one Definition row of this text (made on first sight)."""
    text = without_nul(text) or ""
    sha = hashlib.sha256(text.encode()).hexdigest()
    found = Definition.objects.filter(sha256=sha).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return Definition.objects.create(sha256=sha, text=text, revision_id=revision_id)
    except IntegrityError:
        # Another worker stored the same text a moment before.
        return Definition.objects.get(sha256=sha)


def version_number(arn: str) -> int | None:
    qualifier = arn.rpartition(":")[2]
    return int(qualifier) if qualifier.isdigit() else None


# --- Versions and aliases of a state machine ----------------------------------


def refresh_versions(sm: StateMachine) -> None:
    """Versions and aliases of `sm` as AWS lists them now (see the module docstring).

    Raises aws.Throttled and aws.Unavailable; any other refusal (an identity
    not allowed to list versions, say) leaves the rows as they were, and so
    does a budget without a token for the two listings: they wait for the
    state machine's next description rather than hold up discovery."""
    listings = ("ListStateMachineVersions", "ListStateMachineAliases")
    if all(_budget_left(sm.arn, operation) for operation in listings):
        try:
            _refresh_versions(sm)
        except (aws.Throttled, aws.Unavailable):
            raise
        except aws.AwsError as exc:
            log.info("versions and aliases of %s not read: %s", sm.arn, exc)
    else:
        log.info("versions and aliases of %s left for its next description: no budget", sm.arn)
    backfill_definitions(sm)


def _refresh_versions(sm: StateMachine) -> None:
    now = timezone.now()
    listed: set[str] = set()
    for item in aws.list_state_machine_versions(sm.arn):
        arn = str(item["stateMachineVersionArn"])
        listed.add(arn)
        known = StateMachineVersion.objects.filter(arn=arn).first()
        if known is None or known.definition_id is None:
            remember_version(sm, arn)
        elif known.status != "ACTIVE":
            StateMachineVersion.objects.filter(pk=known.pk).update(status="ACTIVE")
    StateMachineVersion.objects.filter(state_machine=sm).exclude(arn__in=listed).update(
        status="DELETED"
    )
    listed = set()
    for item in aws.list_state_machine_aliases(sm.arn):
        arn = str(item["stateMachineAliasArn"])
        listed.add(arn)
        remember_alias(sm, arn, now=now)
    StateMachineAlias.objects.filter(state_machine=sm).exclude(arn__in=listed).update(
        status="DELETED"
    )


def remember_version(sm: StateMachine, arn: str) -> StateMachineVersion | None:
    """DescribeStateMachine of a version ARN, stored; None if AWS does not know it."""
    number = version_number(arn)
    if number is None:
        return None
    try:
        d = aws.describe_state_machine(arn)
    except aws.NotFound:
        StateMachineVersion.objects.filter(arn=arn).update(status="DELETED")
        return None
    definition = definition_for(d.get("definition", ""), d.get("revisionId", ""))
    fields: dict[str, Any] = {
        "state_machine": sm,
        "version": number,
        "description": without_nul(d.get("description", "")) or "",
        "creation_date": aws.utc(d.get("creationDate")),
        "definition": definition,
        "described_at": timezone.now(),
        "status": "ACTIVE",
    }
    try:
        version, _ = StateMachineVersion.objects.update_or_create(arn=arn, defaults=fields)
    except IntegrityError:
        # Stored meanwhile by another worker: the same immutable answer.
        return StateMachineVersion.objects.filter(arn=arn).first()
    return version


def remember_alias(sm: StateMachine, arn: str, now: Any = None) -> StateMachineAlias | None:
    """DescribeStateMachineAlias, stored with its routing; None if AWS does not know it."""
    try:
        d = aws.describe_state_machine_alias(arn)
    except aws.NotFound:
        StateMachineAlias.objects.filter(arn=arn).update(status="DELETED")
        return None
    routing = [
        {"stateMachineVersionArn": str(r["stateMachineVersionArn"]), "weight": int(r["weight"])}
        for r in d.get("routingConfiguration", [])
    ]
    fields: dict[str, Any] = {
        "state_machine": sm,
        "name": d.get("name") or arn.rpartition(":")[2],
        "description": without_nul(d.get("description", "")) or "",
        "routing": routing,
        "creation_date": aws.utc(d.get("creationDate")),
        "update_date": aws.utc(d.get("updateDate")),
        "described_at": now or timezone.now(),
        "status": "ACTIVE",
    }
    try:
        alias, _ = StateMachineAlias.objects.update_or_create(arn=arn, defaults=fields)
    except IntegrityError:
        return StateMachineAlias.objects.filter(arn=arn).first()
    return alias


# --- The definition an execution ran ----------------------------------------------


def link_definition(ex: Execution) -> None:
    """Store and link the definition `ex` ran, if not yet known (see the module docstring).

    Raises aws.Throttled, BudgetExhausted and aws.Unavailable as every call of
    the sync does; other AWS refusals leave it unknown."""
    if ex.definition_id is not None or ex.map_run_arn:
        # A Map Run's child runs its parent's ItemProcessor: no call for each of thousands.
        return
    sm = ex.state_machine
    definition: Definition | None = None
    try:
        if ex.state_machine_version_arn:
            definition = _version_definition(sm, ex)
        if definition is None and sm.type != "EXPRESS":
            if not _budget_left(ex.arn, "DescribeStateMachineForExecution"):
                # Left for backfill_definitions: the execution's sync goes on.
                return
            d = aws.describe_state_machine_for_execution(ex.arn)
            definition = definition_for(d.get("definition", ""), d.get("revisionId", ""))
    except (aws.Throttled, aws.Unavailable):
        raise
    except aws.AwsError as exc:
        log.info("the definition %s ran is unknown: %s", ex.arn, exc)
        return
    if definition is None:
        return
    Execution.objects.filter(pk=ex.pk, definition__isnull=True).update(definition=definition)
    ex.definition = definition


def backfill_definitions(sm: StateMachine, limit: int = BACKFILL) -> int:
    """Link the definitions the sync left unknown: executions of a version
    from the version's (no call), others by DescribeStateMachineForExecution,
    newest first, at most `limit`, while the budget lasts. Returns how many
    executions it asked AWS about."""
    for version in StateMachineVersion.objects.filter(state_machine=sm, definition__isnull=False):
        Execution.objects.filter(
            state_machine_version_arn=version.arn, definition__isnull=True
        ).update(definition_id=version.definition_id)
    if sm.type == "EXPRESS":
        return 0
    pending = (
        Execution.objects.filter(
            state_machine=sm,
            definition__isnull=True,
            state_machine_version_arn="",
            map_run_arn="",
            start_date__gte=timezone.now() - KEPT,
        )
        .select_related("state_machine")
        .order_by("-start_date", "-id")[:limit]
    )
    calls = 0
    for ex in pending:
        if not _budget_left(ex.arn, "DescribeStateMachineForExecution"):
            break
        try:
            link_definition(ex)
        except (aws.Throttled, aws.Unavailable):
            break
        calls += 1
    return calls


def _budget_left(arn: str, operation: str) -> bool:
    """Whether a call about `arn` would be sent without waiting for budget."""
    try:
        key = aws.target_for_arn(arn).key
        tokens, _ = budget.level(arn.split(":")[3], operation, key)
    except aws.AwsError:
        return False
    except Exception:
        # The budget's store is away: aws.py then calls unmetered, as everywhere.
        return True
    return tokens >= 1


def _version_definition(sm: StateMachine, ex: Execution) -> Definition | None:
    arn = ex.state_machine_version_arn
    version = StateMachineVersion.objects.filter(arn=arn).select_related("definition").first()
    if version is None or version.definition is None:
        # A version published since the state machine was last described.
        version = remember_version(sm, arn)
    alias = ex.state_machine_alias_arn
    if alias and not StateMachineAlias.objects.filter(arn=alias).exists():
        remember_alias(sm, alias)
    return version.definition if version is not None else None
