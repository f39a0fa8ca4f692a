# The state an execution failed in, and the index of the failures page.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0010_map_runs_versions_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="execution",
            name="failed_state",
            field=models.CharField(blank=True, max_length=80),
        ),
        # Serves /failures/: failed, timed-out and aborted executions that ended
        # in a window, grouped by (state machine, failed state, error).
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(
                condition=models.Q(("status__in", ("FAILED", "TIMED_OUT", "ABORTED"))),
                fields=["stop_date", "state_machine", "failed_state", "status"],
                include=("error", "start_date"),
                name="exec_failure_stop_idx",
            ),
        ),
        # Serves one group of failures: when it last failed before a window,
        # and the executions list filtered to the group.
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(
                condition=models.Q(("status__in", ("FAILED", "TIMED_OUT", "ABORTED"))),
                fields=["state_machine", "failed_state", "error", "stop_date"],
                name="exec_failure_group_idx",
            ),
        ),
    ]
