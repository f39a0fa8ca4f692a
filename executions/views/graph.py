"""/executions/<arn>/graph/: the graph of the state machine an execution
ran, painted with that run: states visited, the path taken, where it failed,
where it is now, states never reached; each state links to its first event
in the history. `?part=card` is the card alone, which the detail page loads
after itself (htmx) and a running execution's card refreshes with.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_safe

from executions import graph
from executions.models import Execution
from executions.reads import compare, versions
from executions.web.common import execution_or_404, sync_now
from executions.web.errors import PageError

# A running execution's graph is drawn again this often (seconds).
REFRESH_SECONDS = 10
PARTS = ("", "card")


def graph_context(request: HttpRequest, ex: Execution, now: dt.datetime) -> dict[str, Any]:
    """What `_graph.html` draws for one execution."""
    definition, note = versions.definition_of(ex)
    drawn = graph.layout(definition) if definition else None
    context: dict[str, Any] = {
        "ex": ex,
        "graph_loaded": True,
        "definition_note": note,
        "graph_problem": drawn.problem if drawn is not None else note,
        "svg": "",
        "refresh_seconds": REFRESH_SECONDS,
    }
    if drawn is None or drawn.problem:
        return context
    run = compare.run_of(ex, now)
    # No history in the cache (not synced yet, or an Express execution, whose
    # history AWS does not keep): the graph alone, not "nothing was reached".
    paint = run.paint(compare.event_links(ex.arn, request)) if run.events else None
    context["unpainted"] = paint is None
    # graph.render escapes every name and label it writes.
    context["svg"] = mark_safe(graph.render(drawn, paint, label=f"Graph of {ex.name}"))  # noqa: S308
    context["state_count"] = drawn.states
    context["visited"] = len(run.states)
    context["unreached"] = max(0, len(graph.state_names(drawn)) - len(run.states))
    context["failed_states"] = [
        n for n, f in run.states.items() if f.outcome in (graph.FAILED, graph.TIMED_OUT)
    ]
    context["running_states"] = [n for n, f in run.states.items() if f.outcome == graph.RUNNING]
    return context


@require_safe
def execution_graph(request: HttpRequest, arn: str) -> HttpResponse:
    part = request.GET.get("part", "")
    if part not in PARTS:
        raise PageError(
            400, "Bad query parameter", f"part={part[:40]!r}: use part=card, or leave it out."
        )
    fit = request.GET.get("fit", "")
    if fit not in ("", "1"):
        raise PageError(
            400, "Bad query parameter", f"fit={fit[:40]!r}: use fit=1, or leave it out."
        )
    ex = execution_or_404(arn)
    now = timezone.now()
    context = graph_context(request, ex, now)
    if part == "card":
        response = render(request, "executions/_graph.html", context)
    else:
        sync_now(ex)
        context["full"] = True
        context["fit"] = fit == "1"
        response = render(request, "executions/graph.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response
