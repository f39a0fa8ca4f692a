"""`python manage.py forget --account ID`: drop what the cache holds of one account."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from executions.models import StateMachine


class Command(BaseCommand):
    help = (
        "Delete the cached state machines of an AWS account (optionally of some regions only) "
        "with their executions, history and stop records. The next sync brings back what AWS "
        "still has. bin/run uses it for the demo endpoint, which starts empty every time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="12-digit AWS account id")
        parser.add_argument(
            "--region", action="append", default=[], help="only this region (repeatable)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        machines = StateMachine.objects.filter(account=options["account"])
        if options["region"]:
            machines = machines.filter(region__in=options["region"])
        count = machines.count()
        _, per_model = machines.delete()
        executions = per_model.get("executions.Execution", 0)
        self.stdout.write(
            f"forgot {count} state machines and {executions} executions "
            f"of account {options['account']}"
        )
