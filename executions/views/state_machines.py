"""State machines: what each one is doing now and over the last day."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from executions import aws
from executions.actions import stop
from executions.reads import activity, places, versions
from executions.reads.activity import FAILURE_STATUSES, MachineStats, execution_list_url
from executions.sync import flows, plan
from executions.sync.plan import PlanSummary
from executions.web.common import state_machine_or_404
from executions.web.forms import AccountsField, RegionsField

from ..arns import console_url
from ..models import Execution, StateMachine, SyncRun

RECENT_EXECUTIONS = 20
RECENT_FAILED_RUNS = 5
# Columns of the list, after "running now".
COUNT_COLUMNS = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")


class StateMachineFilterForm(forms.Form):
    q = forms.CharField(max_length=80, required=False)
    account = AccountsField()
    region = RegionsField()

    @property
    def narrowed(self) -> bool:
        data = self.cleaned_data
        return bool(data["q"] or data["account"] or data["region"])


@dataclass
class Row:
    state_machine: StateMachine
    stats: MachineStats
    chart: activity.Chart
    links: dict[str, str]


def _links(tz_name: str, arn: str) -> dict[str, str]:
    links = {
        status: execution_list_url(tz_name, state_machine=arn, status=[status])
        for status in activity.STATUSES
    }
    links["all"] = execution_list_url(tz_name, state_machine=arn)
    links["failures"] = execution_list_url(tz_name, state_machine=arn, status=FAILURE_STATUSES)
    return links


@require_GET
def state_machine_list(request: HttpRequest) -> HttpResponse:
    form = StateMachineFilterForm(request.GET)
    if not form.is_valid():
        return render(
            request,
            "executions/state_machine_list.html",
            {"form": form, "rows": [], "place_choices": places.choices(places.known(), [], [])},
            status=400,
        )
    tz_name = getattr(request, "tz_name", "UTC")
    now = timezone.now()
    machines = StateMachine.objects.all()
    data = form.cleaned_data
    if data["q"]:
        machines = machines.filter(name__icontains=data["q"])
    if data["account"]:
        machines = machines.filter(account__in=data["account"])
    if data["region"]:
        machines = machines.filter(region__in=data["region"])
    # Deleted ones last: their executions stay in the cache, but they are history.
    machines_list = sorted(machines.order_by("name"), key=lambda sm: sm.status == "DELETED")
    ids = [sm.pk for sm in machines_list] if form.narrowed else None
    # Unfiltered, the page holds every state machine: no query for the choices.
    known = (
        places.known()
        if form.narrowed
        else places.Places(tuple(sorted({(sm.account, sm.region) for sm in machines_list})))
    )
    stats = activity.machine_stats(ids, now)
    hours = activity.hourly(ids, now)
    rows = [
        Row(
            state_machine=sm,
            stats=stats.get(sm.pk) or MachineStats(),
            chart=activity.chart(hours.get(sm.pk, []), sm.arn, tz_name, now),
            links=_links(tz_name, sm.arn),
        )
        for sm in machines_list
    ]
    names = {a: places.identity_name(a) for a in known.accounts}
    return render(
        request,
        "executions/state_machine_list.html",
        {
            "form": form,
            "place_choices": places.choices(known, data["account"], data["region"]),
            "account_names": names,
            "several": known.several,
            "rows": rows,
            "columns": COUNT_COLUMNS,
            "running_total": sum(r.stats.running for r in rows),
        },
    )


@require_GET
def state_machine_detail(request: HttpRequest, arn: str) -> HttpResponse:
    sm = state_machine_or_404(arn)
    tz_name = getattr(request, "tz_name", "UTC")
    now = timezone.now()
    stats = activity.machine_stats([sm.pk], now).get(sm.pk) or MachineStats()
    chart = activity.chart(activity.hourly([sm.pk], now).get(sm.pk, []), sm.arn, tz_name, now)
    recent = list(
        Execution.objects.filter(state_machine=sm)
        .order_by("-start_date", "-id")
        .only("arn", "name", "status", "start_date", "stop_date", "state_machine_id", "sync_error")[
            :RECENT_EXECUTIONS
        ]
    )
    failed_runs = list(
        SyncRun.objects.filter(state_machine=sm, ok=False).order_by("-started_at")[
            :RECENT_FAILED_RUNS
        ]
    )
    context: dict[str, Any] = {
        "sm": sm,
        "account_name": places.identity_name(sm.account, sm.region),
        "busy": sm.busy_until is not None and sm.busy_until > now,
        "listing": _listing(sm),
        "stats": stats,
        "chart": chart,
        "links": _links(tz_name, sm.arn),
        "statuses": activity.STATUSES,
        "recent": recent,
        "failed_runs": failed_runs,
        "definition": _pretty(sm.definition),
        "console_url": console_url(sm.arn),
        "can_stop": stop.can_stop(request.user),
        "versions": versions.for_state_machine(sm, now, tz_name),
    }
    return render(request, "executions/state_machine_detail.html", context)


def _listing(sm: StateMachine) -> PlanSummary | None:
    """The plan its account and region are listed by; None when the sync does
    not list it on a schedule (deleted, or only looked up by ARN)."""
    if sm.status == "DELETED" or not flows.is_scheduled(sm.account, sm.region):
        return None
    return PlanSummary(plan.plan(aws.key_for(sm.account, sm.region), sm.region))


def _pretty(definition: str) -> str:
    if not definition:
        return ""
    try:
        return json.dumps(json.loads(definition), indent=2, ensure_ascii=False)
    except ValueError:
        return definition
