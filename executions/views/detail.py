"""/executions/<arn>/: one execution, what it is doing now, and why it failed."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe
from django_htmx.http import reswap, retarget

from executions.actions import redrive, stop
from executions.history import progress, stuck
from executions.reads import places, versions
from executions.text import incident, link_preview
from executions.text.payloads import human_size, payload
from executions.web.common import execution_or_404, sync_now
from executions.web.errors import PageError
from executions.web.htmx import HtmxHttpRequest
from executions.web.previews import execution_page_preview, previewable
from executions.web.watch_panel import panel_context

from ..arns import console_url, execution_console_url
from ..models import Execution

log = logging.getLogger(__name__)

# The live part of a running execution refreshes this often.
POLL_SECONDS = 3
# A cause longer than this, or on more lines, is folded in the banner.
CAUSE_FOLD_CHARS = 400
CAUSE_FOLD_LINES = 6

# Why there is no output, as a client library says when asked for it.
NO_OUTPUT = {
    "RUNNING": "No output yet: the execution is still running.",
    "PENDING_REDRIVE": "No output yet: the execution is waiting to be redriven.",
    "FAILED": "No output: the execution failed (see the error above).",
    "TIMED_OUT": "No output: the execution timed out (see the error above).",
    "ABORTED": "No output: the execution was aborted (stopped) before it finished.",
    "SUCCEEDED": "No output: AWS returned none for this execution.",
}
BANNER_CLASS = {"FAILED": "failed", "TIMED_OUT": "timed-out", "ABORTED": "aborted"}


@previewable(execution_page_preview)
@require_safe
def execution_detail(request: HtmxHttpRequest, arn: str) -> HttpResponse:
    ex = execution_or_404(arn)
    which = request.GET.get("raw")
    if which is not None:
        return raw_payload(ex, which)
    which = request.GET.get("whole")
    if which is not None:
        return whole_payload(request, ex, which)
    sync_now(ex)
    if request.htmx:
        if ex.is_open:
            response = render(request, "executions/_detail_live.html", live_context(request, ex))
        else:
            # It finished while the page was open: replace the whole panel
            # (banner, output, no more Stop button) in place.
            response = render(request, "executions/_detail_swap.html", detail_context(request, ex))
            retarget(response, "#execution")
            reswap(response, "outerHTML")
    else:
        response = render(request, "executions/detail.html", detail_context(request, ex))
    patch_vary_headers(response, ("HX-Request",))
    return response


def _stored(ex: Execution, parameter: str, which: str) -> str:
    if which not in ("input", "output"):
        raise PageError(
            400,
            "Bad query parameter",
            f"bad value for {parameter}: {which[:40]!r}; use {parameter}=input or "
            f"{parameter}=output",
        )
    value: str | None = getattr(ex, which)
    if value is None:
        why = NO_OUTPUT.get(ex.status, "") if which == "output" else "AWS returned no input."
        raise PageError(404, f"No {which}", f"{ex.name} has no {which}. {why}")
    return value


def whole_payload(request: HttpRequest, ex: Execution, which: str) -> HttpResponse:
    """?whole=input: all of a folded payload, fetched when someone unfolds it,
    so that the page itself stays small."""
    return render(
        request,
        "executions/_payload_whole.html",
        {"p": payload(_stored(ex, "whole", which)), "which": which},
    )


def raw_payload(ex: Execution, which: str) -> HttpResponse:
    """?raw=input / ?raw=output: the stored string, byte for byte, as a download."""
    value = _stored(ex, "raw", which)
    response = HttpResponse(
        value.encode("utf-8", "replace"), content_type="text/plain; charset=utf-8"
    )
    disposition = content_disposition_header(as_attachment=True, filename=f"{ex.name}.{which}.json")
    if disposition:
        response["Content-Disposition"] = disposition
    return response


def live_context(request: HttpRequest, ex: Execution) -> dict[str, Any]:
    now = timezone.now()
    age = (now - ex.synced_at).total_seconds() if ex.synced_at else None
    open_states = progress.open_states(ex)
    # Why is it stuck: re-read with every refresh of the live part.
    why = stuck.analyse(ex, open_states, now)
    return {
        "ex": ex,
        "open_states": open_states,
        "poll_seconds": POLL_SECONDS,
        "data_stale": age is None or age > settings.SFNUI_STALE_AFTER,
        "stuck": why,
        # The incident summary says where it is now (and why): kept current too.
        "incident": incident.summary(
            ex, base=incident.base_url(request), now=now, open_states=open_states, why=why
        ),
    }


def detail_context(request: HttpRequest, ex: Execution) -> dict[str, Any]:
    now = timezone.now()
    context: dict[str, Any] = live_context(request, ex) if ex.is_open else {"ex": ex}
    failure = progress.failure_point(ex)
    cause = ex.cause if ex.cause is not None else (failure.cause if failure else None)
    stops = list(ex.stops.all())
    stopped_by = next((s for s in stops if s.outcome == "STOPPED"), None)
    open_states = context.get("open_states", [])
    if not ex.is_open:
        context["incident"] = incident.summary(
            ex,
            base=incident.base_url(request),
            now=now,
            failure=failure,
            stopped_by=stopped_by.username if stopped_by else "",
        )
    context.update(
        {
            "preview": link_preview.execution_preview_text(
                ex,
                url=incident.base_url(request) + request.get_full_path(),
                now=now,
                failure=failure,
                open_states=open_states,
            ),
            "banner_class": BANNER_CLASS.get(ex.status, ""),
            "failure": failure,
            "error": ex.error if ex.error is not None else (failure.error if failure else None),
            "cause": payload(cause, preview_chars=CAUSE_FOLD_CHARS),
            "cause_summary": incident.cause_summary(cause),
            "cause_folded": cause is not None
            and (
                len(cause) > CAUSE_FOLD_CHARS
                or cause.count("\n") >= CAUSE_FOLD_LINES
                or incident.cause_summary(cause) != cause
            ),
            "stopped_by": stopped_by,
            "stops": stops,
            "input": payload(ex.input),
            "output": payload(ex.output),
            "input_size": human_size(len(ex.input.encode("utf-8", "replace"))) if ex.input else "",
            "output_size": human_size(len(ex.output.encode("utf-8", "replace")))
            if ex.output
            else "",
            "no_input": "Not fetched yet: the sync has not described this execution."
            if ex.described_at is None
            else "AWS returned no input.",
            "no_output": "Not fetched yet: the sync has not described this execution."
            if ex.described_at is None and not ex.is_open
            else NO_OUTPUT.get(ex.status, "No output."),
            "account_name": places.identity_name(ex.state_machine.account, ex.state_machine.region),
            # The version and alias it ran, and the definition it ran (or today's, said so).
            "ran": versions.of_execution(ex, getattr(request, "tz_name", "UTC")),
            "console_url": execution_console_url(ex.arn),
            "state_machine_console_url": console_url(ex.state_machine.arn),
            "can_stop": ex.is_open and stop.can_stop(request.user),
            # A failed, timed-out or aborted execution AWS may still redrive.
            "redrivable": redrive.may_redrive(ex, now),
            "redrivable_until": redrive.redrivable_until(ex),
            "can_redrive": redrive.may_redrive(ex, now) and redrive.can_redrive(request.user),
            "watch": panel_context(request, ex),
        }
    )
    return context
