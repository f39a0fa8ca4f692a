"""The failing state of executions cached before the sync recorded it
(migration 0011): the sync fills `failed_state` when it stores a closed
execution's last event (rows.completion_fields); this fills the rest, once,
from the stored histories (`manage.py backfill_failed_states`)."""

from __future__ import annotations

from executions.history.progress import failure_point
from executions.models import FAILURE_STATUSES, Execution


def backfill(batch: int = 500) -> tuple[int, int]:
    """One pass in id order, batch by batch, compare-and-set (a concurrent
    sync wins). Returns (filled, whose history names no state)."""
    filled = none = 0
    after = 0
    while True:
        chunk = list(
            Execution.objects.filter(
                status__in=FAILURE_STATUSES, history_complete=True, failed_state="", pk__gt=after
            )
            .only("pk", "status", "error", "cause")
            .order_by("pk")[:batch]
        )
        if not chunk:
            return filled, none
        for ex in chunk:
            point = failure_point(ex)
            if point is None or not point.state_name:
                none += 1
            elif Execution.objects.filter(pk=ex.pk, status=ex.status, failed_state="").update(
                failed_state=point.state_name
            ):
                filled += 1
        after = chunk[-1].pk
