"""/api/executions/ and /api/executions/<arn>/: the list and one execution as
JSON, for scripts (for instance one that waits for an execution to finish)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from executions.reads import queries
from executions.sync import freshness
from executions.times import iso_z
from executions.web.auth import api_view
from executions.web.common import execution_or_404, sync_now
from executions.web.errors import PageError
from executions.web.forms import ExecutionFilterForm

from ..arns import execution_console_url
from ..models import Execution


def _time(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC, as AWS prints it."""
    return iso_z(value) if value is not None else None


def _row(request: HttpRequest, ex: Execution) -> dict[str, Any]:
    return {
        "arn": ex.arn,
        "name": ex.name,
        "state_machine_arn": ex.state_machine.arn,
        "account": ex.state_machine.account,
        "region": ex.state_machine.region,
        "status": ex.status,
        "start_date": _time(ex.start_date),
        "stop_date": _time(ex.stop_date),
        "error": ex.error,
        "redrive_count": ex.redrive_count,
        "is_final": not ex.is_open,
        "url": request.build_absolute_uri(reverse("api_execution_detail", args=[ex.arn])),
    }


@api_view
def execution_list(request: HttpRequest) -> JsonResponse:
    form = ExecutionFilterForm(request.GET)
    if not form.is_valid():
        raise PageError(400, "Bad query parameter", form.problem_message())
    page = queries.page(form.filters(), form.cleaned_data["cursor"], form.page_size)
    response = JsonResponse(
        {
            "executions": [_row(request, ex) for ex in page.rows],
            "next": page.older.encode() if page.older else None,
            "previous": page.newer.encode() if page.newer else None,
            "warnings": freshness.service_warnings(),
        }
    )
    add_never_cache_headers(response)
    return response


@api_view
def execution_detail(request: HttpRequest, arn: str) -> JsonResponse:
    ex = execution_or_404(arn)
    # A script polling a running execution wants fresh data: as for the page.
    sync_now(ex)
    age = (timezone.now() - ex.synced_at).total_seconds() if ex.synced_at else None
    response = JsonResponse(
        {
            "arn": ex.arn,
            "name": ex.name,
            "state_machine_arn": ex.state_machine.arn,
            "account": ex.state_machine.account,
            "region": ex.state_machine.region,
            "status": ex.status,
            "is_final": not ex.is_open,
            "start_date": _time(ex.start_date),
            "stop_date": _time(ex.stop_date),
            "input": ex.input,
            "output": ex.output,
            "error": ex.error,
            "cause": ex.cause,
            "redrive_count": ex.redrive_count,
            "redrive_date": _time(ex.redrive_date),
            "redrive_status": ex.redrive_status or None,
            "redrive_status_reason": ex.redrive_status_reason or None,
            "map_run_arn": ex.map_run_arn or None,
            "state_machine_version_arn": ex.state_machine_version_arn or None,
            "state_machine_alias_arn": ex.state_machine_alias_arn or None,
            "synced_at": _time(ex.synced_at),
            "data_age_seconds": round(age, 3) if age is not None else None,
            "sync_error": ex.sync_error or None,
            "history_complete": ex.history_complete,
            "history_events": ex.last_event_id,
            "console_url": execution_console_url(ex.arn),
            "url": request.build_absolute_uri(reverse("execution_detail", args=[ex.arn])),
            "warnings": freshness.service_warnings(),
        }
    )
    add_never_cache_headers(response)
    return response
