"""/audit/actions/: every redrive, start and Map Run change asked for from
sfnui (ActionRequest rows), filterable, for the audit's readers. The stop
attempts have their own page (/audit/, views/stop.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from executions.web.auth import audit_readers_only
from executions.web.forms import IsoDateTimeField

from ..arns import NotAnArn, region_of
from ..models import ActionRequest

PAGE_SIZE = 50
TIME_ERRORS = {
    "invalid": "Enter a valid date/time.",
    "out_of_range": "Enter a date/time between the years 1 and 9999.",
}


class ActionAuditForm(forms.Form):
    user = forms.CharField(max_length=150, required=False, label="User")
    kind = forms.MultipleChoiceField(
        choices=ActionRequest.Kind.choices, required=False, label="Action"
    )
    outcome = forms.MultipleChoiceField(
        choices=ActionRequest.Outcome.choices, required=False, label="Outcome"
    )
    # The ARN acted on (an execution, state machine, version, alias or Map
    # Run) or the execution a start made.
    arn = forms.CharField(max_length=2048, required=False, label="ARN")
    requested_after = IsoDateTimeField(required=False, label="From", error_messages=TIME_ERRORS)
    requested_before = IsoDateTimeField(required=False, label="Until", error_messages=TIME_ERRORS)
    batch = forms.UUIDField(required=False, label="Batch id")
    # Keyset pagination: "<requested_at in µs since the epoch>-<id>" of the
    # last row of the previous page.
    cursor = forms.CharField(max_length=64, required=False)

    def clean_arn(self) -> str:
        value: str = self.cleaned_data["arn"].strip()
        if value:
            try:
                region_of(value)
            except NotAnArn:
                raise forms.ValidationError("Not a Step Functions ARN.") from None
        return value

    def clean_cursor(self) -> tuple[dt.datetime, int] | None:
        value: str = self.cleaned_data["cursor"]
        if not value:
            return None
        try:
            micros, pk = (int(part) for part in value.split("-"))
            if pk < 0 or micros < 0:
                raise ValueError(value)
            return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.UTC), pk
        except (ValueError, OverflowError, OSError):
            raise forms.ValidationError(
                "Not a page of this list: start again from the top."
            ) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        after, before = data.get("requested_after"), data.get("requested_before")
        if after and before and after >= before:
            raise forms.ValidationError("“From” must be earlier than “Until”.")
        return data


def _matching(data: dict[str, Any]) -> QuerySet[ActionRequest]:
    qs = ActionRequest.objects.all()
    if data["user"]:
        qs = qs.filter(username__iexact=data["user"].strip())
    if data["kind"]:
        qs = qs.filter(kind__in=data["kind"])
    if data["outcome"]:
        qs = qs.filter(outcome__in=data["outcome"])
    if data["arn"]:
        qs = qs.filter(Q(target_arn=data["arn"]) | Q(result_arn=data["arn"]))
    if data["requested_after"]:
        qs = qs.filter(requested_at__gte=data["requested_after"])
    if data["requested_before"]:
        qs = qs.filter(requested_at__lt=data["requested_before"])
    if data["batch"]:
        qs = qs.filter(batch_id=data["batch"])
    return qs


@require_GET
@audit_readers_only
def action_audit(request: HttpRequest) -> HttpResponse:
    form = ActionAuditForm(request.GET)
    context: dict[str, Any] = {"form": form, "actions": [], "counts": {}, "total": 0}
    if not form.is_valid():
        return render(request, "executions/audit_actions.html", context, status=400)
    matching = _matching(form.cleaned_data)
    counts = {
        row["outcome"]: row["n"]
        for row in matching.order_by().values("outcome").annotate(n=Count("id"))
    }
    page = matching.select_related("execution").order_by("-requested_at", "-id")
    cursor = form.cleaned_data["cursor"]
    if cursor is not None:
        at, pk = cursor
        page = page.filter(Q(requested_at__lt=at) | Q(requested_at=at, id__lt=pk))
    actions = list(page[: PAGE_SIZE + 1])
    more = len(actions) > PAGE_SIZE
    actions = actions[:PAGE_SIZE]
    query = request.GET.copy()
    query.pop("cursor", None)
    next_query = ""
    if more:
        last = actions[-1]
        query["cursor"] = f"{round(last.requested_at.timestamp() * 1_000_000)}-{last.pk}"
        next_query = query.urlencode()
        query.pop("cursor")
    context.update(
        actions=actions,
        counts=counts,
        total=sum(counts.values()),
        next_query=next_query,
        first_query=query.urlencode() if cursor is not None else None,
        filtered=any(v for k, v in form.cleaned_data.items() if k != "cursor"),
    )
    return render(request, "executions/audit_actions.html", context)
