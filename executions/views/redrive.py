"""/executions/<arn>/redrive/: redriving an execution (confirmation, then RedriveExecution)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from executions import aws
from executions.actions import redrive
from executions.history import progress
from executions.links import keep_tz
from executions.sync import schedule
from executions.web.common import execution_or_404
from executions.web.redrive_form import redrive_permission

from ..arns import console_url
from ..models import ActionRequest, Execution
from ..times import when

# Earlier attempts on the same execution, shown above the confirmation.
RECENT_ATTEMPTS = 10


class RedriveForm(forms.Form):
    # One per rendered form: a second POST of the same form sends nothing
    # again, and it is AWS's clientToken too.
    request_token = forms.UUIDField(widget=forms.HiddenInput)


@require_http_methods(["GET", "POST"])
@redrive_permission
def redrive_execution(request: HttpRequest, arn: str) -> HttpResponse:
    ex = execution_or_404(arn)
    if request.method == "GET":
        # Someone is about to redrive it: keep its status fresh meanwhile
        # (the POST checks it live with AWS anyway).
        schedule.make_due(ex)
        form = RedriveForm(initial={"request_token": uuid.uuid4()})
        return _confirmation(request, ex, form)

    form = RedriveForm(request.POST)
    if not form.is_valid():
        fresh = RedriveForm(initial={"request_token": uuid.uuid4()})
        return _confirmation(
            request,
            ex,
            fresh,
            status=400,
            notice="This confirmation was incomplete or has expired, so nothing was sent. "
            "Check the execution below and confirm again.",
        )
    try:
        with aws.page_deadline():
            attempt = redrive.request_redrive(
                ex, request.user, request_token=form.cleaned_data["request_token"]
            )
    except redrive.TokenReused:
        fresh = RedriveForm(initial={"request_token": uuid.uuid4()})
        return _confirmation(
            request,
            ex,
            fresh,
            status=400,
            notice="This confirmation form was already used for another execution. "
            "Nothing was sent: check the execution below and confirm again.",
        )

    detail = keep_tz(reverse("execution_detail", args=[ex.arn]), request)
    Outcome = ActionRequest.Outcome
    if redrive.in_flight(attempt):
        messages.info(
            request,
            f"A redrive of {ex.name} from this form is still waiting for AWS's answer: "
            "nothing more was sent. Reload in a moment to see the outcome.",
        )
        return HttpResponseRedirect(detail)
    if attempt.outcome == Outcome.DONE:
        ex.refresh_from_db(fields=["redrive_date", "redrive_count"])
        messages.success(
            request,
            f"Redrove {ex.name}: AWS accepted the redrive at {when(ex.redrive_date)}; "
            f"attempt {ex.redrive_count + 1} runs from the unsuccessful step. Re-syncing it now.",
        )
        return HttpResponseRedirect(detail)
    if attempt.outcome == Outcome.REFUSED:
        # AWS (or the live check) says it cannot be: the page says why, as a 409.
        ex.refresh_from_db()
        fresh = RedriveForm(initial={"request_token": uuid.uuid4()})
        return _confirmation(
            request,
            ex,
            fresh,
            status=409,
            refusal=f"{ex.name} was not redriven. {attempt.aws_response}",
        )
    if attempt.outcome == Outcome.UNKNOWN:
        messages.warning(request, f"{ex.name}: {attempt.aws_response}")
        return HttpResponseRedirect(detail)
    # FAILED (AWS throttling, unreachable, refusing): the same page, a fresh
    # form to try again, and the status that says whose fault it was.
    if attempt.aws_response.startswith(("AWS unreachable", "AWS is throttling")):
        status = 503
    elif attempt.aws_response.startswith("AWS does not know"):
        status = 404
    else:
        status = 502
    fresh = RedriveForm(initial={"request_token": uuid.uuid4()})
    return _confirmation(
        request,
        ex,
        fresh,
        status=status,
        refusal=f"{ex.name} was not redriven. {attempt.aws_response}",
    )


def _confirmation(
    request: HttpRequest,
    ex: Execution,
    form: RedriveForm,
    *,
    status: int = 200,
    refusal: str = "",
    notice: str = "",
) -> HttpResponse:
    now = timezone.now()
    attempts = list(
        ActionRequest.objects.filter(kind=ActionRequest.Kind.REDRIVE, execution=ex).order_by(
            "-requested_at", "-id"
        )[:RECENT_ATTEMPTS]
    )
    context = {
        "execution": ex,
        "state_machine": ex.state_machine,
        "form": form,
        "why_not": redrive.why_not(ex, now),
        "refusal": refusal,
        "notice": notice,
        "redrivable_until": redrive.redrivable_until(ex),
        "failure": progress.failure_point(ex),
        "attempts": attempts,
        "console_url": console_url(ex.arn),
        "next_attempt": ex.redrive_count + 2,
    }
    return render(request, "executions/redrive.html", context, status=status)
