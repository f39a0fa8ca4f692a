"""A sync run's record: what the calls inside `recording()` did (Stats),
kept as a SyncRun row; AWS errors end the block and are recorded, not raised.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.utils import timezone

from executions import aws, signals
from executions.budget import BudgetExhausted
from executions.models import StateMachine, SyncRun


@dataclass
class Stats:
    state_machines: int = 0
    executions_new: int = 0
    executions_changed: int = 0
    executions_synced: int = 0
    events: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    throttled: bool = False
    # Executions a throttled batch did not get to (rescheduled for later).
    unfinished: list[int] = field(default_factory=list)
    # Executions a listing found new or changed: worth syncing right away.
    flagged: list[str] = field(default_factory=list)
    # With events flowing, a listing is reconciliation: what it found that the
    # events should have brought already.
    reconciling: bool = False
    missed_events: int = 0
    missed_example: str = ""
    # A listing learned ends from the closed statuses (no DescribeExecution).
    ends_listed: int = 0
    # State machines a discovery left to describe (see discover_state_machines).
    to_describe: list[int] = field(default_factory=list)
    # AWS could not be reached (or gave no answer): the rest of this identity
    # and region would meet the same.
    unreachable: bool = False
    # Executions whose closed status the run stored: their watchers are told
    # (one question for the run, not one per execution) when it is recorded.
    closed: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.state_machines + self.executions_new + self.executions_changed + self.events

    def merge(self, other: Stats) -> None:
        self.state_machines += other.state_machines
        self.executions_new += other.executions_new
        self.executions_changed += other.executions_changed
        self.executions_synced += other.executions_synced
        self.events += other.events
        self.calls.update(other.calls)
        self.errors.extend(other.errors)
        self.throttled = self.throttled or other.throttled
        self.unreachable = self.unreachable or other.unreachable
        self.unfinished.extend(other.unfinished)
        self.flagged.extend(other.flagged)
        self.missed_events += other.missed_events
        self.missed_example = self.missed_example or other.missed_example
        self.ends_listed += other.ends_listed

    def summary(self) -> str:
        calls = ", ".join(f"{op} {n}" for op, n in sorted(self.calls.items())) or "none"
        return (
            f"state machines: {self.state_machines}; "
            f"executions: {self.executions_new} new, {self.executions_changed} changed, "
            f"{self.executions_synced} synced; events: {self.events}; "
            f"API calls: {calls} (total {sum(self.calls.values())})"
        )


@contextlib.contextmanager
def recording(
    kind: str,
    region: str,
    state_machine: StateMachine | None = None,
    account: str = "",
) -> Iterator[Stats]:
    """Count the calls made inside the block and keep a SyncRun of them.

    AWS errors end the block and are recorded, not raised: the sync is
    expected to meet them and to try again later. Anything else is recorded
    and raised.
    """
    stats = Stats()
    run = SyncRun(
        kind=kind,
        account=account,
        region=region,
        state_machine=state_machine,
        started_at=timezone.now(),
    )
    with aws.count_calls() as calls:
        try:
            yield stats
        except (aws.Throttled, BudgetExhausted) as exc:
            stats.throttled = True
            stats.errors.append(f"throttled: {exc}")
        except aws.AwsError as exc:
            stats.unreachable = isinstance(exc, aws.Unavailable)
            stats.errors.append(describe_error(exc))
        except Exception as exc:
            stats.errors.append(f"internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            stats.calls.update(calls)
            run.finished_at = timezone.now()
            run.api_calls = dict(calls)
            run.rows_written = stats.rows
            run.throttled = stats.throttled
            run.error = "\n".join(stats.errors)[:10_000]
            run.ok = not stats.errors
            run.missed_events = stats.missed_events
            run.missed_example = stats.missed_example[:2048]
            run.save()
            if stats.closed:
                signals.executions_closed.send(sender=__name__, execution_pks=stats.closed)


_KINDS: tuple[tuple[type[aws.AwsError], str], ...] = (
    (aws.NotFound, "not found"),
    (aws.InvalidArn, "invalid"),
    (aws.Throttled, "throttled"),
    (aws.Unavailable, "AWS unreachable"),  # NoAnswer too
    (aws.NotConfigured, "not configured"),
)


def describe_error(exc: aws.AwsError) -> str:
    kind = next((kind for cls, kind in _KINDS if isinstance(exc, cls)), "AWS error")
    where = f" in {exc.operation}" if exc.operation else ""
    code = f" {exc.code}" if exc.code else ""
    return f"{kind}{where}:{code} {exc.message}"[:2000]
