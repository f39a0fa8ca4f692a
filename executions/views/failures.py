"""/failures/: failed, timed-out and aborted executions of a window, grouped
by state machine, the state they failed in and their error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from executions.links import keep_tz
from executions.reads import failures
from executions.times import iso_z
from executions.web.failures_form import FailuresForm


@require_safe
def failure_groups(request: HttpRequest) -> HttpResponse:
    tz_name: str = getattr(request, "tz_name", "UTC")
    form = FailuresForm(request.GET)
    windows = [
        (name, keep_tz(request.path, tz_name, {"window": name})) for name in failures.WINDOWS
    ]
    if not form.is_valid():
        context = {
            "form": form,
            "problems": form.problems(),
            "windows": windows,
            "default_window": failures.DEFAULT_WINDOW,
        }
        return render(request, "executions/failures.html", context, status=400)
    # Whole seconds, so that the links to the list name exactly this window.
    now = timezone.now().replace(microsecond=0)
    start, end, window = form.bounds(now)
    report = failures.report(start, end, tz_name)
    context = {
        "form": form,
        "windows": windows,
        "window": window,
        "report": report,
        # The same window as fixed times: a link that shows the same groups later.
        "permalink": keep_tz(request.path, tz_name, {"since": iso_z(start), "until": iso_z(end)}),
    }
    return render(request, "executions/failures.html", context)
