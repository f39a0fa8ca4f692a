"""Counts of executions per state machine and status (total, per start hour,
per stop hour), kept by triggers: executions/database/counts.py."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.utils import timezone

from executions.database import counts


def install(apps: Any, schema_editor: Any) -> None:
    counts.install(schema_editor.connection)
    counts.rebuild(schema_editor.connection, timezone.now())


def uninstall(apps: Any, schema_editor: Any) -> None:
    counts.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("executions", "0012_search")]

    operations = [
        migrations.CreateModel(
            name="ExecutionCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("state_machine_id", models.BigIntegerField()),
                ("kind", models.CharField(max_length=8)),
                ("status", models.CharField(max_length=16)),
                ("hour", models.DateTimeField()),
                ("n", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("kind", "state_machine_id", "hour", "status"),
                        name="execcount_key_uniq",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="ExecutionCountDelta",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("state_machine_id", models.BigIntegerField()),
                ("kind", models.CharField(max_length=8)),
                ("status", models.CharField(max_length=16)),
                ("hour", models.DateTimeField()),
                ("n", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(install, uninstall, elidable=False),
    ]
