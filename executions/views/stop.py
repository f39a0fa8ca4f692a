"""Stopping an execution (confirmation, then StopExecution) and the audit of every attempt."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from executions import aws
from executions.actions import stop
from executions.history import progress
from executions.links import keep_tz
from executions.sync import schedule
from executions.web.auth import audit_readers_only
from executions.web.common import execution_or_404
from executions.web.forms import IsoDateTimeField
from executions.web.stop_form import CAUSE_MAX, ERROR_MAX, default_cause, stop_permission

from ..arns import NotAnArn, console_url, parse_execution_arn, parse_state_machine_arn
from ..models import Execution, StopRequest
from ..times import when

AUDIT_PAGE_SIZE = 50
# Earlier attempts on the same execution, shown above the confirmation.
RECENT_ATTEMPTS = 10


# --- Stop --------------------------------------------------------------------------


class StopForm(forms.Form):
    error = forms.CharField(
        max_length=ERROR_MAX,
        help_text="A short code, kept by AWS as the execution's error (at most 256 characters).",
    )
    cause = forms.CharField(
        max_length=CAUSE_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Who stopped it and why. AWS keeps it in the execution's history, so "
        "name yourself and the reason (at most 32,768 characters).",
    )
    # One per rendered form: a second POST of the same form sends nothing again.
    request_token = forms.UUIDField(widget=forms.HiddenInput)


@require_http_methods(["GET", "POST"])
@stop_permission
def stop_execution(request: HttpRequest, arn: str) -> HttpResponse:
    ex = execution_or_404(arn)
    if request.method == "GET":
        # Someone is about to stop it: keep its status fresh meanwhile (the
        # POST checks it live with AWS anyway).
        schedule.make_due(ex)
        form = StopForm(
            initial={
                "error": "sfnui.ManualStop",
                "cause": default_cause(request.user.get_username()),
                "request_token": uuid.uuid4(),
            }
        )
        return _confirmation(request, ex, form)

    form = StopForm(request.POST)
    if not form.is_valid():
        # Keep a valid token: nothing was sent, so the corrected form is
        # still the same single attempt.
        if form.errors.get("request_token"):
            form.data = _with_fresh_token(request)
        return _confirmation(request, ex, form, status=400)
    try:
        # Someone waits for this page: the live check, the stop and a re-check
        # after a stop that got no answer share the page deadline.
        with aws.page_deadline():
            attempt = stop.request_stop(
                ex,
                request.user,
                error=form.cleaned_data["error"],
                cause=form.cleaned_data["cause"],
                request_token=form.cleaned_data["request_token"],
            )
    except stop.TokenReused:
        form.data = _with_fresh_token(request)
        form.add_error(
            None,
            "This confirmation form was already used for another execution. "
            "Nothing was sent: check the form below and confirm again.",
        )
        return _confirmation(request, ex, form, status=400)

    detail = keep_tz(reverse("execution_detail", args=[ex.arn]), request)
    if stop.in_flight(attempt):
        messages.info(
            request,
            f"A stop of {ex.name} from this form is still waiting for AWS's answer: "
            "nothing more was sent. Reload in a moment to see the outcome.",
        )
        return HttpResponseRedirect(detail)
    if attempt.outcome == StopRequest.Outcome.STOPPED:
        ex.refresh_from_db(fields=["stop_date"])
        messages.success(
            request,
            f"Stopped {ex.name}: AWS accepted the stop at {when(ex.stop_date)}, "
            f"with error “{attempt.error}”. Re-syncing it now.",
        )
        return HttpResponseRedirect(detail)
    if attempt.outcome == StopRequest.Outcome.REFUSED:
        messages.warning(request, f"{ex.name}: {attempt.aws_response}")
        return HttpResponseRedirect(detail)
    if attempt.outcome == StopRequest.Outcome.UNKNOWN:
        # Not "not stopped": AWS may have acted on it. The execution's page
        # shows what the re-check found.
        messages.warning(request, f"{ex.name}: {attempt.aws_response}")
        return HttpResponseRedirect(detail)
    # FAILED: back to the confirmation, with a fresh form to try again.
    messages.error(request, f"{ex.name} was not stopped. {attempt.aws_response}")
    return HttpResponseRedirect(keep_tz(reverse("execution_stop", args=[ex.arn]), request))


def _with_fresh_token(request: HttpRequest) -> QueryDict:
    data = request.POST.copy()
    data["request_token"] = str(uuid.uuid4())
    return data


def _confirmation(
    request: HttpRequest, ex: Execution, form: StopForm, status: int = 200
) -> HttpResponse:
    attempts = list(
        StopRequest.objects.filter(execution=ex).order_by("-requested_at", "-id")[:RECENT_ATTEMPTS]
    )
    context = {
        "execution": ex,
        "state_machine": ex.state_machine,
        "open_states": progress.open_states(ex),
        "form": form,
        "attempts": attempts,
        "console_url": console_url(ex.arn),
        "now": timezone.now(),
    }
    return render(request, "executions/stop.html", context, status=status)


# --- Audit ----------------------------------------------------------------------------


# ISO 8601 like the executions list's, worded as Django's own date fields.
AUDIT_TIME_ERRORS = {
    "invalid": "Enter a valid date/time.",
    "out_of_range": "Enter a date/time between the years 1 and 9999.",
}


class AuditFilterForm(forms.Form):
    user = forms.CharField(max_length=150, required=False, label="User")
    outcome = forms.MultipleChoiceField(
        choices=StopRequest.Outcome.choices, required=False, label="Outcome"
    )
    state_machine = forms.CharField(max_length=2048, required=False, label="State machine ARN")
    execution = forms.CharField(max_length=2048, required=False, label="Execution ARN")
    requested_after = IsoDateTimeField(
        required=False, label="From", error_messages=AUDIT_TIME_ERRORS
    )
    requested_before = IsoDateTimeField(
        required=False, label="Until", error_messages=AUDIT_TIME_ERRORS
    )
    batch = forms.UUIDField(required=False, label="Batch id")
    # Keyset pagination: "<requested_at in µs since the epoch>-<id>" of the
    # last row of the previous page.
    cursor = forms.CharField(max_length=64, required=False)

    def clean_state_machine(self) -> str:
        value: str = self.cleaned_data["state_machine"].strip()
        if value:
            try:
                parse_state_machine_arn(value)
            except NotAnArn:
                raise forms.ValidationError("Not a Step Functions state machine ARN.") from None
        return value

    def clean_execution(self) -> str:
        value: str = self.cleaned_data["execution"].strip()
        if value:
            try:
                parse_execution_arn(value)
            except NotAnArn:
                raise forms.ValidationError("Not a Step Functions execution ARN.") from None
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


def cursor_of(attempt: StopRequest) -> str:
    micros = round(attempt.requested_at.timestamp() * 1_000_000)
    return f"{micros}-{attempt.pk}"


@require_GET
@audit_readers_only
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return render(
            request,
            "executions/audit.html",
            {"form": form, "attempts": [], "counts": {}, "total": 0},
            status=400,
        )
    matching = _audit_filter(form.cleaned_data)
    counts = {
        row["outcome"]: row["n"]
        for row in matching.order_by().values("outcome").annotate(n=Count("id"))
    }
    page = matching.select_related("execution__state_machine").order_by("-requested_at", "-id")
    cursor = form.cleaned_data["cursor"]
    if cursor is not None:
        at, pk = cursor
        page = page.filter(Q(requested_at__lt=at) | Q(requested_at=at, id__lt=pk))
    attempts = list(page[: AUDIT_PAGE_SIZE + 1])
    more = len(attempts) > AUDIT_PAGE_SIZE
    attempts = attempts[:AUDIT_PAGE_SIZE]
    query = request.GET.copy()
    query.pop("cursor", None)
    next_query = ""
    if more:
        query["cursor"] = cursor_of(attempts[-1])
        next_query = query.urlencode()
        query.pop("cursor")
    return render(
        request,
        "executions/audit.html",
        {
            "form": form,
            "attempts": attempts,
            "counts": counts,
            "total": sum(counts.values()),
            "next_query": next_query,
            "first_query": query.urlencode() if cursor is not None else None,
            "filtered": any(v for k, v in form.cleaned_data.items() if k != "cursor"),
        },
    )


def _audit_filter(data: dict[str, Any]) -> QuerySet[StopRequest]:
    qs = StopRequest.objects.all()
    if data["user"]:
        qs = qs.filter(username__iexact=data["user"].strip())
    if data["outcome"]:
        qs = qs.filter(outcome__in=data["outcome"])
    if data["state_machine"]:
        qs = qs.filter(execution__state_machine__arn=data["state_machine"])
    if data["execution"]:
        qs = qs.filter(execution__arn=data["execution"])
    if data["requested_after"]:
        qs = qs.filter(requested_at__gte=data["requested_after"])
    if data["requested_before"]:
        qs = qs.filter(requested_at__lt=data["requested_before"])
    if data["batch"]:
        qs = qs.filter(batch_id=data["batch"])
    return qs
