"""The history of one execution: the page (timeline and event table) and its
two exports, history.txt and history.json (streamed)."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe

from executions import history
from executions.history import progress
from executions.links import tz_query
from executions.sync import schedule
from executions.text import incident, link_preview
from executions.web.common import execution_or_404
from executions.web.errors import PageError
from executions.web.previews import execution_page_preview, previewable

from ..models import Execution, HistoryEvent

PAGE_SIZE = 500
# A running execution's timeline refreshes this often (seconds).
REFRESH_SECONDS = 10


class HistoryQuery(forms.Form):
    """The page's query string: `type` (repeatable), `failures`, `page`,
    `event` (the page holding that event), `detail` (one event in full)."""

    type = forms.MultipleChoiceField(required=False)
    failures = forms.BooleanField(required=False)
    page = forms.IntegerField(required=False, min_value=1, max_value=10**9)
    event = forms.IntegerField(required=False, min_value=0, max_value=2**62)
    detail = forms.IntegerField(required=False, min_value=0, max_value=2**62)

    def __init__(self, data: QueryDict, allowed_types: set[str]) -> None:
        super().__init__(data)
        self.query = data
        # Known types, and whatever (newer) types this history holds.
        self.allowed_types = allowed_types
        field = self.fields["type"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(t, t) for t in sorted(allowed_types)]

    def problem(self) -> str:
        """What is wrong with the query, in a sentence naming the value."""
        for name, errors in self.errors.items():
            if name == "type":
                bad = [t for t in self.query.getlist("type") if t not in self.allowed_types]
                value = bad[0] if bad else ""
                return (
                    f"{value[:100]!r} is not a Step Functions history event type "
                    "(for example TaskFailed, ExecutionFailed, MapIterationFailed)."
                )
            raw = str(self.query.get(name, ""))[:100]
            return f"{name}={raw!r}: {' '.join(str(e) for e in errors)}"
        return "The query was not understood."


def _query(request: HttpRequest, **changes: Any) -> str:
    """The page's own URL with some parameters changed (None drops one);
    `tz` and the filter are kept."""
    params: dict[str, list[str]] = {k: request.GET.getlist(k) for k in request.GET}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    pairs = [(k, v) for k, values in params.items() for v in values]
    return f"{request.path}?{urlencode(pairs)}" if pairs else request.path


def _page_context(request: HttpRequest, ex: Execution) -> dict[str, Any]:
    now = timezone.now()
    events, timeline, drawing = history.drawn_timeline_of(ex, now)
    counts = Counter(e.type for e in events)
    base = reverse("execution_history", args=[ex.arn])
    event_link = f"{base}?{urlencode({**tz_query(request), 'event': ''})}"
    detail_link = f"{base}?{urlencode({**tz_query(request), 'detail': ''})}"
    return {
        "execution": ex,
        "timeline": timeline,
        "drawing": drawing,
        "event_count": len(events),
        "last_event": events[-1] if events else None,
        "counts": counts,
        "events": events,
        "event_link": event_link,
        "detail_link": detail_link,
        "refresh_seconds": REFRESH_SECONDS,
        "refresh_url": request.get_full_path(),
        "total_duration": history.short_duration((timeline.end - timeline.start).total_seconds()),
        "page_ids": set(),
    }


@previewable(execution_page_preview)
@require_safe
def history_page(request: HttpRequest, arn: str) -> HttpResponse:
    ex = execution_or_404(arn)
    if request.GET.get("detail", "") != "":
        return _event_page(request, ex)
    if ex.is_open:
        # Someone is watching: sync it sooner.
        schedule.make_due(ex)
    ctx = _page_context(request, ex)
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "timeline":
        # The running execution's poll: the timeline alone.
        partial = render(request, "executions/_timeline.html", ctx)
        patch_vary_headers(partial, ["HX-Request", "HX-Target"])
        return partial

    counts: Counter[str] = ctx["counts"]
    form = HistoryQuery(request.GET, set(history.EVENT_TYPES) | set(counts))
    if not form.is_valid():
        raise PageError(400, "Bad history query", form.problem())
    types: list[str] = form.cleaned_data["type"]
    failures: bool = form.cleaned_data["failures"]
    selected = set(types) | (set(history.FAILURE_TYPES) if failures else set())
    events: list[history.Ev] = ctx.pop("events")
    ids = [e.event_id for e in events if not selected or e.type in selected]

    pages = max(1, -(-len(ids) // PAGE_SIZE))
    note = ""
    target: int | None = form.cleaned_data["event"]
    page: int = form.cleaned_data["page"] or 1
    if target is not None:
        pos = bisect.bisect_left(ids, target)
        page = min(pos // PAGE_SIZE + 1, pages)
        if pos >= len(ids) or ids[pos] != target:
            known = any(e.event_id == target for e in events)
            if known:
                note = f"Event {target} is hidden by the type filter."
                ctx["unfiltered_url"] = _query(
                    request, type=None, failures=None, page=None, event=target
                )
            else:
                note = f"This history has no event {target} (it has {len(events)} events so far)."
    if page > pages:
        note = note or f"There is no page {page}: the last page is {pages}."
        page = pages
    chunk = ids[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows: list[HistoryEvent] = []
    if chunk:
        qs = HistoryEvent.objects.filter(
            execution=ex, event_id__gte=chunk[0], event_id__lte=chunk[-1]
        )
        if selected:
            qs = qs.filter(type__in=selected)
        rows = list(qs.order_by("event_id"))

    timeline: history.Timeline = ctx["timeline"]
    now = timezone.now()
    failure = progress.failure_point(ex)
    open_states = progress.open_states(ex)
    base = incident.base_url(request)
    ctx.update(
        {
            "incident": incident.summary(
                ex, base=base, now=now, failure=failure, open_states=open_states
            ),
            "preview": link_preview.execution_preview_text(
                ex,
                url=base + request.get_full_path(),
                now=now,
                failure=failure,
                open_states=open_states,
            ),
            "rows": [history.event_row(ev, ex.start_date, timeline) for ev in rows],
            "page_ids": {ev.event_id for ev in rows},
            "page": page,
            "pages": pages,
            "shown": len(ids),
            "note": note,
            "selected_types": sorted(types),
            "failures": failures,
            "failure_count": sum(n for t, n in counts.items() if t in history.FAILURE_TYPES),
            "type_counts": sorted(counts.items()),
            "prev_url": _query(request, page=page - 1, event=None) if page > 1 else "",
            "next_url": _query(request, page=page + 1, event=None) if page < pages else "",
            "first_url": _query(request, page=None, event=None) if page > 1 else "",
            "last_url": _query(request, page=pages, event=None) if page < pages else "",
            "failures_url": _query(request, failures=1, type=None, page=None, event=None),
            "all_url": _query(request, failures=None, type=None, page=None, event=None),
            "filtered": bool(selected),
        }
    )
    response = render(request, "executions/history.html", ctx)
    # Same URL, page or partial: caches (and the back button) must tell them apart.
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _event_page(request: HttpRequest, ex: Execution) -> HttpResponse:
    """One event in full (its payloads uncut): the target of "show all"."""
    raw = request.GET.get("detail", "")
    try:
        event_id = int(raw)
    except ValueError:
        raise PageError(
            400, "Bad history query", f"detail={raw[:100]!r}: enter a whole number."
        ) from None
    ev = HistoryEvent.objects.filter(execution=ex, event_id=event_id).first()
    if ev is None:
        raise PageError(404, "No such event", f"This execution's history has no event {event_id}.")
    row = history.event_row(ev, ex.start_date, None, preview=None)
    back = reverse("execution_history", args=[ex.arn])
    back += "?" + urlencode({**tz_query(request), "event": event_id}) + f"#event-{event_id}"
    return render(
        request,
        "executions/history_event.html",
        {"execution": ex, "row": row, "back_url": back, "details": ev.details},
    )


# --- Exports ------------------------------------------------------------------------


def _filename(ex: Execution, ext: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ex.name)[:100]
    return f"{safe or 'execution'}-history.{ext}"


def _export(
    request: HttpRequest, ex: Execution, content_type: str, ext: str, chunks: Any
) -> HttpResponseBase:
    headers = {
        "Content-Disposition": content_disposition_header(False, _filename(ex, ext)) or "",
        # Whether more events may come (a running or still syncing history).
        "X-History-Complete": "true" if ex.history_complete else "false",
    }
    if request.method == "HEAD":
        return HttpResponse(content_type=content_type, headers=headers)
    return StreamingHttpResponse(chunks, content_type=content_type, headers=headers)


@require_safe
def history_text(request: HttpRequest, arn: str) -> HttpResponseBase:
    ex = execution_or_404(arn)
    return _export(
        request,
        ex,
        "text/plain; charset=utf-8",
        "txt",
        history.text_chunks(ex, history.batches(ex, payloads=False, iso_ms=True)),
    )


@require_safe
def history_json(request: HttpRequest, arn: str) -> HttpResponseBase:
    ex = execution_or_404(arn)
    return _export(
        request,
        ex,
        "application/json",
        "json",
        history.json_chunks(history.batches(ex, raw_details=True, iso_ms=True)),
    )
