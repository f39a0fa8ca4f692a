"""`python manage.py sync`: one full sync cycle in the foreground, without Celery."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from executions import aws
from executions.arns import NotAnArn, parse_execution_arn, parse_state_machine_arn
from executions.models import Execution, StateMachine
from executions.sync import flows, map_runs, plan, runs

log = logging.getLogger(__name__)

# Give up after this many throttled batches in a row (with growing pauses).
MAX_THROTTLED_BATCHES = 12


class Command(BaseCommand):
    help = (
        "Run one full sync cycle in the foreground: discover state machines, list their "
        "executions, describe what changed and fetch new history events. Prints what it did."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--state-machine", metavar="ARN", help="sync only this state machine")
        parser.add_argument("--execution", metavar="ARN", help="sync only this execution")

    def handle(self, *args: Any, **options: Any) -> None:
        total = runs.Stats()
        # What the cycle's deadline, or an AWS that cannot be reached, left
        # for the next sync: per (identity key, region), machines and executions.
        self.not_listed: Counter[tuple[str, str]] = Counter()
        self.not_synced: Counter[tuple[str, str]] = Counter()
        self.unreachable: set[tuple[str, str]] = set()
        seconds = float(settings.SFNUI_SYNC_CYCLE_DEADLINE)
        with aws.deadline(seconds):
            if options["execution"]:
                self._one_execution(options["execution"], total)
            else:
                self._cycle(options["state_machine"], total)
            # A cycle the deadline cut before anything was done did nothing
            # for lack of time, which _report_left says, not for its errors.
            cut = aws.out_of_time()
        self.stdout.write(total.summary())
        self._report_left(seconds, total)
        for error in total.errors:
            self.stderr.write(f"error: {error}")
        if total.errors and not total.executions_synced and not total.state_machines and not cut:
            raise CommandError("the sync did nothing: see the errors above")

    def _one_execution(self, arn: str, total: runs.Stats) -> None:
        try:
            parse_execution_arn(arn)
        except NotAnArn as exc:
            raise CommandError(str(exc)) from None
        ex = Execution.objects.filter(arn=arn).first()
        if ex is None:
            try:
                with aws.count_calls() as calls:
                    flows.import_execution(arn)
            except aws.NotFound:
                raise CommandError(f"AWS does not know the execution {arn}") from None
            except aws.AwsError as exc:
                raise CommandError(f"could not look up {arn}: {exc.message}") from None
            total.calls.update(calls)
            total.executions_new += 1
            total.executions_synced += 1
            return
        if ex.is_open:
            # Asked for by name: read its status now rather than trust the cache.
            Execution.objects.filter(pk=ex.pk).update(needs_describe=True)
        self._executions([ex.pk], ex.state_machine.region, total, ex.state_machine.account)

    def _cycle(self, state_machine_arn: str | None, total: runs.Stats) -> None:
        if state_machine_arn:
            try:
                parsed = parse_state_machine_arn(state_machine_arn)
            except NotAnArn as exc:
                raise CommandError(str(exc)) from None
            sm = StateMachine.objects.filter(arn=state_machine_arn).first()
            if sm is None:
                try:
                    account = aws.target_for(parsed.account, parsed.region).key
                except aws.NotConfigured as exc:
                    raise CommandError(exc.message) from None
                self._patiently(
                    functools.partial(flows.discover_state_machines, parsed.region, account),
                    total,
                )
                sm = StateMachine.objects.filter(arn=state_machine_arn).first()
                if sm is None:
                    raise CommandError(f"AWS has no state machine {state_machine_arn}")
            machines = [sm]
        else:
            machines = []
            for t, region in aws.scheduled():
                if not aws.out_of_time():
                    stats = self._patiently(
                        functools.partial(flows.discover_state_machines, region, t.key), total
                    )
                    if stats.unreachable and not aws.out_of_time():
                        self.unreachable.add((t.key, region))
                machines.extend(plan.machines(t.key, region))
        for sm in machines:
            place = (flows.account_key(sm), sm.region)
            if place in self.unreachable or aws.out_of_time():
                self.not_listed[place] += 1
                continue
            stats = self._patiently(functools.partial(flows.list_state_machine, sm), total)
            # A call the cycle's deadline cut short is the deadline's doing,
            # reported as such below, not AWS being unreachable.
            if stats.unreachable and not aws.out_of_time():
                self.unreachable.add(place)
        # Everything that was due when the cycle started; running executions
        # come due again later, in the next cycle.
        due = Execution.objects.filter(
            state_machine__in=machines, sync_due_at__lte=timezone.now()
        ).order_by("sync_due_at")
        pending = list(due.values_list("pk", "state_machine__account", "state_machine__region"))
        by_target: dict[tuple[str, str], list[int]] = {}
        for pk, account, region in pending:
            by_target.setdefault((account, region), []).append(pk)
        for (account, region), pks in by_target.items():
            self._executions(pks, region, total, account)
        self._map_runs(total)

    def _map_runs(self, total: runs.Stats) -> None:
        """The Distributed Map runs the histories showed (due ones), then their
        children that are due (new, or ended)."""
        for account, region, pks in map_runs.claim_due():
            if (account, region) in self.unreachable or aws.out_of_time():
                continue
            self._patiently(functools.partial(map_runs.sync_map_runs, pks, region, account), total)
        due = Execution.objects.filter(
            ~Q(map_run_arn=""), sync_due_at__lte=timezone.now()
        ).values_list("pk", "state_machine__account", "state_machine__region")
        by_target: dict[tuple[str, str], list[int]] = {}
        for pk, account, region in due:
            by_target.setdefault((account, region), []).append(pk)
        for (account, region), pks in by_target.items():
            self._executions(pks, region, total, account)

    def _report_left(self, seconds: float, total: runs.Stats) -> None:
        for key, region in sorted(self.unreachable):
            machines = self.not_listed.pop((key, region), 0)
            executions = self.not_synced.pop((key, region), 0)
            if machines or executions:
                total.errors.append(
                    f"AWS unreachable: skipped {machines} state machines and {executions} "
                    f"executions of {_label(key)} in {region} (the next sync tries again)"
                )
        machines, executions = sum(self.not_listed.values()), sum(self.not_synced.values())
        if machines or executions:
            said = (
                f"cycle deadline ({seconds:g} s) reached: {machines} state machines not listed, "
                f"{executions} executions not synced; the next sync starts with them"
            )
            log.warning("sync: %s", said)
            self.stdout.write(said)

    def _patiently(self, step: Callable[[], runs.Stats], total: runs.Stats) -> runs.Stats:
        """Run a step again, after a growing pause, for as long as AWS throttles it."""
        for attempt in range(1, MAX_THROTTLED_BATCHES + 1):
            stats = step()
            if not stats.throttled:
                total.merge(stats)
                return stats
            stats.errors = [e for e in stats.errors if not e.startswith("throttled")]
            stats.throttled = False
            total.merge(stats)
            if aws.out_of_time():
                return stats
            time.sleep(min(2.0**attempt, 30.0))
        raise CommandError("AWS kept throttling; try again later")

    def _executions(self, pks: list[int], region: str, total: runs.Stats, account: str) -> None:
        key = aws.key_for(account, region)
        remaining = list(pks)
        throttled_in_a_row = 0
        while remaining:
            if (key, region) in self.unreachable or aws.out_of_time():
                self.not_synced[(key, region)] += len(remaining)
                return
            batch, remaining = remaining[:200], remaining[200:]
            stats = flows.sync_executions(batch, region, key)
            if stats.unreachable:
                self.unreachable.add((key, region))
                self.not_synced[(key, region)] += max(0, len(stats.unfinished) - 1)
                stats.unfinished = []
            elif stats.unfinished and not stats.throttled:
                # The deadline stopped the batch.
                self.not_synced[(key, region)] += len(stats.unfinished)
                stats.unfinished = []
            if stats.throttled:
                # Slow down, then go on where the batch stopped.
                throttled_in_a_row += 1
                if throttled_in_a_row > MAX_THROTTLED_BATCHES:
                    total.merge(stats)
                    raise CommandError(
                        f"AWS kept throttling {region}; {len(stats.unfinished) + len(remaining)} "
                        "executions left for the next sync"
                    )
                stats.errors = [e for e in stats.errors if not e.startswith("throttled")]
                remaining = stats.unfinished + remaining
                stats.unfinished = []
                time.sleep(min(2.0**throttled_in_a_row, 30.0))
            else:
                throttled_in_a_row = 0
            stats.throttled = False
            total.merge(stats)


def _label(key: str) -> str:
    try:
        return aws.target(key).label
    except aws.NotConfigured:
        return f"account {key}"
