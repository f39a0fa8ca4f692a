from __future__ import annotations

from django.urls import path, register_converter

from executions.web.converters import (
    ExecutionArnConverter,
    MapRunArnConverter,
    StateMachineArnConverter,
)

from .views import (
    api,
    audit_actions,
    bulk_stop,
    compare,
    detail,
    failures,
    graph,
    health,
    history,
    lists,
    map_runs,
    redrive,
    runaways,
    start,
    state_machines,
    stop,
    sync_page,
    watch,
)

register_converter(ExecutionArnConverter, "arn")
register_converter(StateMachineArnConverter, "sm_arn")
register_converter(MapRunArnConverter, "map_run_arn")

urlpatterns = [
    path("executions/", lists.execution_list, name="execution_list"),
    # Before the execution's page, whose ARN segment would take "compare".
    path("executions/compare/", compare.compare_runs, name="compare"),
    # The earlier address of the comparison, kept for links already pasted.
    path("compare/", compare.old_compare_url, name="compare_old"),
    path("executions/<arn:arn>/", detail.execution_detail, name="execution_detail"),
    path("executions/<arn:arn>/history/", history.history_page, name="execution_history"),
    path("executions/<arn:arn>/history.txt", history.history_text, name="execution_history_text"),
    path("executions/<arn:arn>/history.json", history.history_json, name="execution_history_json"),
    path("executions/<arn:arn>/stop/", stop.stop_execution, name="execution_stop"),
    path("executions/<arn:arn>/graph/", graph.execution_graph, name="execution_graph"),
    path("executions/<arn:arn>/redrive/", redrive.redrive_execution, name="execution_redrive"),
    path("executions/<arn:arn>/watch/", watch.watch_execution, name="execution_watch"),
    path("map-runs/<map_run_arn:arn>/", map_runs.map_run_detail, name="map_run_detail"),
    path(
        "executions/<arn:arn>/map-runs/<str:label>/",
        map_runs.map_run_of_execution,
        name="execution_map_run",
    ),
    path("map-runs/<map_run_arn:arn>/update/", map_runs.map_run_update, name="map_run_update"),
    path("runaways/", runaways.runaway_finder, name="runaways"),
    path("failures/", failures.failure_groups, name="failures"),
    path("bulk-stop/", bulk_stop.bulk_stop, name="bulk_stop"),
    path("bulk-stop/<uuid:batch_id>/", bulk_stop.bulk_stop_progress, name="bulk_stop_progress"),
    path("bulk-redrive/", bulk_stop.bulk_redrive, name="bulk_redrive"),
    path("bulk-stop/<uuid:batch_id>/resume/", bulk_stop.bulk_stop_resume, name="bulk_stop_resume"),
    path("state-machines/", state_machines.state_machine_list, name="state_machine_list"),
    # Before the state machine's page: its ARN may end in "/LABEL" (a Map
    # Run's child state machine), which would take "start" for a label.
    path("state-machines/<sm_arn:arn>/start/", start.start_page, name="state_machine_start"),
    path(
        "state-machines/<sm_arn:arn>/start/<uuid:token>/",
        start.start_result,
        name="state_machine_start_result",
    ),
    path(
        "state-machines/<sm_arn:arn>/",
        state_machines.state_machine_detail,
        name="state_machine_detail",
    ),
    path("sync/", sync_page.sync_health, name="sync_health"),
    path("audit/", stop.audit_log, name="audit_log"),
    path("audit/actions/", audit_actions.action_audit, name="action_audit"),
    path("healthz", health.healthz, name="healthz"),
    path("api/executions/", api.execution_list, name="api_execution_list"),
    path("api/executions/<arn:arn>/", api.execution_detail, name="api_execution_detail"),
]
