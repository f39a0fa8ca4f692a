"""/executions/<arn>/watch/: watch a running execution (a post to the webhook
when it finishes), or stop watching it; and the watch panel alone."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from executions.actions import watch
from executions.links import keep_tz
from executions.text import incident
from executions.web.common import execution_or_404
from executions.web.errors import PageError
from executions.web.htmx import HtmxHttpRequest
from executions.web.watch_panel import panel_context

from ..models import Execution


@require_http_methods(["GET", "POST"])
def watch_execution(request: HtmxHttpRequest, arn: str) -> HttpResponse:
    """GET: the panel alone (it refreshes itself until the post is settled);
    POST: watch or unwatch."""
    ex = execution_or_404(arn, lookup=False)
    if request.method == "GET":
        return _panel(request, ex, "", 200)
    action = request.POST.get("action", "watch")
    status = 200
    notice = ""
    if action == "unwatch":
        if watch.unwatch(ex, request.user):  # type: ignore[arg-type]
            notice = f"You no longer watch {ex.name}."
        else:
            notice = f"You were not watching {ex.name}."
    elif action != "watch":
        raise PageError(
            400, "Bad request", f"Unknown action {action[:40]!r}: use watch or unwatch."
        )
    elif not watch.enabled():
        status = 409
        notice = (
            "Watch is off on this dashboard: an administrator sets SFNUI_WATCH_WEBHOOK_URL "
            "(a Slack-compatible incoming webhook) to turn it on."
        )
    elif not ex.is_open:
        status = 409
        notice = f"{ex.name} has already finished ({ex.status}): there is nothing to watch."
    elif watch.watch(ex, request.user, base_url=incident.base_url(request)):  # type: ignore[arg-type]
        notice = f"Watching {ex.name}: the incident channel hears when it finishes."
    else:
        notice = f"You already watch {ex.name}."
    if request.htmx:
        return _panel(request, ex, notice, status)
    if status == 200:
        messages.success(request, notice)
    else:
        messages.error(request, notice)
    return HttpResponseRedirect(keep_tz(reverse("execution_detail", args=[ex.arn]), request))


def _panel(request: HttpRequest, ex: Execution, notice: str, status: int) -> HttpResponse:
    # htmx swaps only 2xx answers by default: a refusal still shows its reason.
    context = panel_context(request, ex)
    context["notice"] = notice
    context["notice_is_error"] = status != 200
    return render(request, "executions/_watch.html", context)
