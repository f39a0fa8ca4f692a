"""/executions/compare/?a=<arn>&b=<arn>: two runs of one state machine side by side:
where their paths part first, each path on its graph, the time spent in
each state, and their inputs and outputs diffed by JSON path.

`?a=<arn>` alone lists recent runs of the same state machine to pick the
second from (the detail page's "Compare with…" link). Bad input is a 400
that says what is wrong; an execution the cache does not hold, a 404.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_safe

from executions import graph
from executions.arns import NotAnArn, parse_execution_arn
from executions.models import Execution, ExecutionStatus
from executions.reads import compare as reads
from executions.text.payloads import human_size, payload
from executions.times import human_seconds
from executions.web.errors import PageError

# Runs offered to compare with.
CANDIDATES = 30
# How much of each payload is shown side by side (the diff covers all of it).
PREVIEW_CHARS = 4 * 1024


class CompareQuery(forms.Form):
    a = forms.CharField(max_length=2048)
    b = forms.CharField(max_length=2048, required=False)
    # The pick list of runs to compare with: only those of this status.
    status = forms.ChoiceField(choices=[("", "any"), *ExecutionStatus.choices], required=False)

    def problem(self) -> str:
        for name, errors in self.errors.items():
            return f"{name}=: {' '.join(str(e) for e in errors)}"
        return "The query was not understood."


def _execution(arn: str, which: str) -> Execution:
    try:
        parse_execution_arn(arn)
    except NotAnArn:
        raise PageError(
            400,
            "Not an execution ARN",
            f"{which}={arn[:300]!r} is not a Step Functions execution ARN. It should look like "
            "arn:aws:states:us-east-1:123456789012:execution:StateMachineName:ExecutionName",
        ) from None
    ex = Execution.objects.select_related("state_machine", "definition").filter(arn=arn).first()
    if ex is None:
        raise PageError(
            404,
            "Execution not in the cache",
            f"{which}: {arn} has not been synced; open it first, or wait for the sync.",
        )
    return ex


@require_safe
def old_compare_url(request: HttpRequest) -> HttpResponse:
    """/compare/ was the page's first address: links pasted then still open it."""
    query = request.META.get("QUERY_STRING", "")
    return HttpResponsePermanentRedirect(reverse("compare") + (f"?{query}" if query else ""))


@require_safe
def compare_runs(request: HttpRequest) -> HttpResponse:
    query = CompareQuery(request.GET)
    if not query.is_valid():
        raise PageError(
            400,
            "Bad query",
            f"{query.problem()} Compare two executions with ?a=<execution ARN>&b=<execution ARN>.",
        )
    a = _execution(query.cleaned_data["a"], "a")
    b_arn = query.cleaned_data["b"]
    if not b_arn:
        return render(
            request, "executions/compare.html", _pick_context(a, query.cleaned_data["status"])
        )
    b = _execution(b_arn, "b")
    if a.pk == b.pk:
        raise PageError(
            400, "The same execution twice", "a= and b= name the same execution: pick another."
        )
    if a.state_machine_id != b.state_machine_id:
        raise PageError(
            400,
            "Not of one state machine",
            f"{a.name} ran {a.state_machine.name} and {b.name} ran {b.state_machine.name}: "
            "only two executions of one state machine can be compared.",
        )
    return render(request, "executions/compare.html", _compare_context(request, a, b))


def _pick_context(a: Execution, status: str) -> dict[str, Any]:
    others = Execution.objects.filter(state_machine_id=a.state_machine_id).exclude(pk=a.pk)
    if status:
        others = others.filter(status=status)
    return {
        "a": a,
        "candidates": list(
            others.order_by("-start_date", "-id").only(
                "arn", "name", "status", "start_date", "stop_date"
            )[:CANDIDATES]
        ),
        "picking": True,
        "status": status,
        "statuses": ExecutionStatus.values,
    }


def _side(request: HttpRequest, run: reads.Run, definition: str) -> dict[str, Any]:
    ex = run.execution
    drawn = graph.layout(definition) if definition else None
    svg = ""
    if drawn is not None and not drawn.problem:
        paint = run.paint(reads.event_links(ex.arn, request))
        # graph.render escapes every name and label it writes.
        svg = mark_safe(graph.render(drawn, paint, label=f"Path of {ex.name}"))  # noqa: S308
    return {
        "ex": ex,
        "svg": svg,
        "graph_problem": (drawn.problem if drawn is not None else "no definition"),
        "input": payload(ex.input, preview_chars=PREVIEW_CHARS),
        "output": payload(ex.output, preview_chars=PREVIEW_CHARS),
        "input_size": human_size(len(ex.input.encode("utf-8", "replace"))) if ex.input else "",
        "output_size": human_size(len(ex.output.encode("utf-8", "replace"))) if ex.output else "",
        "steps": len(run.path),
    }


def _time_rows(request: HttpRequest, result: reads.Comparison) -> list[dict[str, Any]]:
    link_a = reads.event_links(result.a.execution.arn, request)
    link_b = reads.event_links(result.b.execution.arn, request)
    rows = []
    for t in result.times:
        delta = t.delta
        rows.append(
            {
                "name": t.name,
                "a": t.a,
                "b": t.b,
                "a_href": link_a(t.a.first_event_id) if t.a and t.a.first_event_id else "",
                "b_href": link_b(t.b.first_event_id) if t.b and t.b.first_event_id else "",
                "a_time": human_seconds(t.a.seconds) if t.a else "",
                "b_time": human_seconds(t.b.seconds) if t.b else "",
                "delta": ""
                if delta is None
                else ("+" if delta > 0 else "\u2212" if delta < 0 else "\u00b1")
                + human_seconds(abs(delta)),
                "cls": ""
                if delta is None or abs(delta) < 0.001
                else "slower"
                if delta > 0
                else "faster",
                "only": t.a is None or t.b is None,
            }
        )
    return rows


def _compare_context(request: HttpRequest, a: Execution, b: Execution) -> dict[str, Any]:
    result = reads.compare(a, b, timezone.now())
    divergence = result.divergence
    side_a = _side(request, result.a, result.definition)
    side_b = _side(request, result.b, result.definition_b)
    return {
        "sides": [("A", side_a), ("B", side_b)],
        "times": _time_rows(request, result),
        "div": divergence,
        "div_a_href": reads.event_links(a.arn, request)(divergence.a.event_id)
        if divergence and divergence.a
        else "",
        "div_b_href": reads.event_links(b.arn, request)(divergence.b.event_id)
        if divergence and divergence.b
        else "",
        "a": a,
        "b": b,
        "cmp": result,
        "side_a": side_a,
        "side_b": side_b,
        "same_definition": result.definition == result.definition_b,
        "runs": [("A", a, len(result.a.path)), ("B", b, len(result.b.path))],
        "max_changes": reads.MAX_CHANGES,
        "max_diff_lines": reads.MAX_DIFF_LINES,
    }
