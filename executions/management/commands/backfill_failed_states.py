"""`python manage.py backfill_failed_states`: the failing state of executions
whose history was cached before the sync recorded it (migration 0011)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from executions.sync.failed_states import backfill


class Command(BaseCommand):
    help = (
        "Fill the failing state (what /failures/ groups by) of failed, timed-out and aborted "
        "executions cached before the sync recorded it, from their stored histories. Safe "
        "to run while the sync runs, and again: it only fills what is empty."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        filled, none = backfill()
        self.stdout.write(
            f"Filled the failing state of {filled} execution{'s' if filled != 1 else ''}; "
            f"{none} name{'s' if none == 1 else ''} no state in its stored history."
        )
