"""The Django admin: synced data and the stop audit, read-only for everyone.

The cache is what AWS said (an edit would be overwritten, or worse, believed)
and the audit is evidence: nobody adds, changes or deletes either here, not
even a superuser. Users, groups and the stop permission stay in Django's
own admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Execution, HistoryEvent, StateMachine, StopRequest, SyncRun


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Big tables: no full COUNT(*) of the unfiltered table on every page.
    show_full_result_count = False
    list_per_page = 50
    list_max_show_all = 200

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StateMachine)
class StateMachineAdmin(ReadOnlyAdmin):
    list_display = ("name", "type", "region", "account", "status", "listed_at", "list_due_at")
    list_filter = ("status", "type", "region")
    search_fields = ("name", "=arn")


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ("name", "state_machine", "status", "start_date", "stop_date", "synced_at")
    # `status` has choices: no DISTINCT scan of the table to build the filter.
    list_filter = ("status", "history_complete", "state_machine")
    # Exact ARN (unique index) and name prefix (exec_name_idx): both indexed.
    search_fields = ("=arn", "^name")
    list_select_related = ("state_machine",)
    raw_id_fields = ("state_machine",)
    ordering = ("-start_date", "-id")


@admin.register(HistoryEvent)
class HistoryEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "timestamp", "execution")
    # No filter on `type`: it would scan every event for the distinct values.
    # Search by the exact execution ARN to see one history.
    search_fields = ("=execution__arn",)
    list_select_related = ("execution",)
    raw_id_fields = ("execution",)
    ordering = ("-id",)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "kind",
        "region",
        "state_machine",
        "ok",
        "throttled",
        "rows_written",
    )
    list_filter = ("ok", "throttled", "kind", "region")
    search_fields = ("error",)
    list_select_related = ("state_machine",)
    raw_id_fields = ("state_machine",)
    ordering = ("-started_at",)


@admin.register(StopRequest)
class StopRequestAdmin(ReadOnlyAdmin):
    list_display = ("requested_at", "username", "outcome", "execution", "status_before", "error")
    list_filter = ("outcome",)
    search_fields = ("username", "=execution__arn", "=batch_id", "=request_token")
    list_select_related = ("execution",)
    raw_id_fields = ("execution", "user")
    ordering = ("-requested_at", "-id")
