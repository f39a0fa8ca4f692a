"""/runaways/: running executions by state machine and state, and what stands out."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

from executions.actions import stop
from executions.links import keep_tz
from executions.reads import runaways
from executions.reads.activity import execution_list_url
from executions.web.htmx import HtmxHttpRequest

from ..models import OPEN_STATUSES

# The page refreshes this often (paused while executions are picked on it).
POLL_SECONDS = 15


@require_safe
def runaway_finder(request: HtmxHttpRequest) -> HttpResponse:
    report = runaways.report()
    tz_name: str = getattr(request, "tz_name", "UTC")
    for machine in report.machines:
        arn = machine.state_machine.arn
        machine.links = {
            "list": execution_list_url(tz_name, state_machine=arn, status=OPEN_STATUSES),
            "stop": bulk_stop_url(tz_name, state_machine=arn),
            "recent": execution_list_url(
                tz_name, state_machine=arn, started_after=report.now - runaways.RATE_WINDOW
            ),
        }
        if machine.long_before is not None:
            machine.links["long"] = execution_list_url(
                tz_name, state_machine=arn, status=OPEN_STATUSES, started_before=machine.long_before
            )
        for group in machine.groups:
            if group.state != runaways.NO_STATE:
                group.stop_url = bulk_stop_url(tz_name, state_machine=arn, in_state=group.state)
    context = {
        "report": report,
        "can_stop": stop.can_stop(request.user),
        "poll_seconds": POLL_SECONDS,
        "window_days": runaways.WINDOW.days,
        "sample": runaways.SAMPLE,
        "min_sample": runaways.MIN_SAMPLE,
        "rate_factor": runaways.RATE_FACTOR,
        "rate_min": runaways.RATE_MIN,
    }
    template = "executions/_runaways.html" if request.htmx else "executions/runaways.html"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def bulk_stop_url(tz_name: str, *, state_machine: str, in_state: str | None = None) -> str:
    """The bulk stop's dry run for the running executions of a state machine
    (in one state, for a group)."""
    params: list[tuple[str, str]] = [("state_machine", state_machine)]
    params.extend(("status", s) for s in OPEN_STATUSES)
    if in_state is not None:
        params.append(("in_state", in_state))
    return keep_tz(reverse("bulk_stop"), tz_name, params)
