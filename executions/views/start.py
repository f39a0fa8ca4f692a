"""/state-machines/<arn>/start/: start an execution (name, input, version or
alias), or re-run another execution's input; then a confirmation, then
StartExecution, and the new execution's page."""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from executions import aws
from executions.actions import start
from executions.links import keep_tz
from executions.sync import rows
from executions.text.payloads import human_size, payload
from executions.web.common import execution_or_404, state_machine_or_404
from executions.web.errors import PageError

from ..arns import NotAnArn, parse_execution_arn
from ..models import ActionRequest, Execution, StateMachine

# A failed start's page status, by what went wrong (start.error_kind).
FAILURE_STATUS = {
    "throttled": 503,
    "unreachable": 503,
    "not_found": 404,
    "invalid": 400,
    "refused": 502,
}


def start_permission(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A 403 page that says which permission is missing."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not start.can_start(request.user):
            raise PermissionDenied(
                "Starting executions needs the permission “Can start an execution of a state "
                f"machine” ({start.PERMISSION}). Ask an administrator to grant it to "
                f"{request.user.get_username()}."
            )
        return view(request, *args, **kwargs)

    return wrapped


class StartForm(forms.Form):
    target = forms.ChoiceField(
        label="Start",
        help_text="The state machine's latest definition, an alias (which routes by its "
        "weights), or one published version.",
    )
    name = forms.CharField(
        required=False,
        label="Name",
        help_text='Optional: 1 to 80 characters, no spaces or < > { } [ ] ? * " # % \\ ^ | ~ ` '
        "$ & , ; : /. Left empty, a name is made for this form, so confirming twice starts one "
        "execution. Names are unique per state machine for 90 days.",
    )
    input = forms.CharField(
        required=False,
        strip=False,
        label="Input",
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "mono"}),
        help_text="JSON, at most 256 KiB. Empty means {}.",
    )
    # One per rendered form: a second POST of the same form starts nothing again.
    request_token = forms.UUIDField(widget=forms.HiddenInput)
    # A re-run: the execution whose input this started from.
    source = forms.CharField(required=False, max_length=2048, widget=forms.HiddenInput)

    def __init__(self, sm: StateMachine, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sm = sm
        self.targets = start.targets(sm)
        target = self.fields["target"]
        assert isinstance(target, forms.ChoiceField)
        target.choices = [(t.arn, t.label) for t in self.targets]

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if name:
            problem = start.name_problem(name)
            if problem:
                raise forms.ValidationError(problem)
        return name

    def clean_input(self) -> str:
        # A textarea sends its line breaks as CRLF: kept as typed, in LF.
        text: str = self.cleaned_data["input"].replace("\r\n", "\n")
        if not text.strip():
            return "{}"
        problem = start.input_problem(text)
        if problem:
            raise forms.ValidationError(problem)
        return text

    def clean_source(self) -> Execution | None:
        value: str = self.cleaned_data["source"].strip()
        if not value:
            return None
        return _source(self.sm, value)


def _source(sm: StateMachine, arn: str) -> Execution:
    try:
        parse_execution_arn(arn)
    except NotAnArn:
        raise PageError(
            400, "Not an execution ARN", f"{arn[:300]!r} is not a Step Functions execution ARN."
        ) from None
    ex = execution_or_404(arn)
    if ex.state_machine_id != sm.pk:
        raise PageError(
            400,
            "Another state machine's execution",
            f"{ex.name} is an execution of {ex.state_machine.name}, not of {sm.name}: "
            "re-run it from its own state machine.",
        )
    return ex


def _source_input(ex: Execution) -> tuple[str | None, str]:
    """The input to re-run, and a note on where it came from: the cache, or,
    when the cache has none yet, AWS, asked now."""
    if ex.input is not None:
        return ex.input, ""
    if ex.state_machine.type == "EXPRESS":
        return None, (
            f"The cache has no input for {ex.name}, and an Express execution cannot be "
            "described through the API: type the input below."
        )
    try:
        with aws.page_deadline():
            live = aws.describe_execution(ex.arn)
    except aws.AwsError as exc:
        return None, (
            f"The cache has no input for {ex.name} yet (it has not been described), and "
            f"fetching it from AWS failed ({exc.code or 'no answer'}: {exc.message}). "
            "Type the input below, or reload in a moment."
        )
    if not rows.store_description(ex, live):
        ex.refresh_from_db()
        rows.store_description(ex, live)
    text = live.get("input")
    if text is None:
        return None, f"AWS returned no input for {ex.name}: the input below starts empty."
    return str(text), (
        f"The cache had no input for {ex.name} yet (it had not been described): "
        "it was fetched from AWS just now."
    )


@require_http_methods(["GET", "POST"])
@start_permission
def start_page(request: HttpRequest, arn: str) -> HttpResponse:
    sm = state_machine_or_404(arn)
    if request.method == "GET":
        return _first_form(request, sm)

    form = StartForm(sm, request.POST)
    if "edit" in request.POST:
        # Back from the confirmation to the form, with what was typed.
        form.is_valid()
        return _edit(request, sm, form)
    if not form.is_valid():
        # Nothing was sent: the corrected form is still the same single attempt.
        if form.errors.get("request_token"):
            form.data = _with_fresh_token(request)
        return _edit(request, sm, form, status=400)
    if "confirm" not in request.POST:
        return _confirmation(request, sm, form)
    return _start(request, sm, form)


def _first_form(request: HttpRequest, sm: StateMachine) -> HttpResponse:
    initial: dict[str, Any] = {"target": sm.arn, "input": "{}", "request_token": uuid.uuid4()}
    note = ""
    source: Execution | None = None
    source_arn = request.GET.get("source", "").strip()
    if source_arn:
        source = _source(sm, source_arn)
        text, note = _source_input(source)
        initial["input"] = _pretty(text) if text is not None else ""
        initial["source"] = source.arn
        wanted = start.target_for(source)
        if wanted in {t.arn for t in start.targets(sm)}:
            initial["target"] = wanted
        elif wanted != sm.arn:
            note = (
                f"{note} {source.name} ran through {wanted}, which the cache does not know "
                "(or AWS deleted): choose what to start below."
            ).strip()
    form = StartForm(sm, initial=initial)
    return _edit(request, sm, form, source=source, note=note)


def _pretty(text: str) -> str:
    """JSON input shown indented for editing, unless that would change its
    meaning (it is not JSON) or it is large (kept as stored)."""
    if len(text) > 64 * 1024:
        return text
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _with_fresh_token(request: HttpRequest) -> QueryDict:
    data = request.POST.copy()
    data["request_token"] = str(uuid.uuid4())
    return data


def _edit(
    request: HttpRequest,
    sm: StateMachine,
    form: StartForm,
    *,
    status: int = 200,
    source: Execution | None = None,
    note: str = "",
    existing: Execution | None = None,
) -> HttpResponse:
    if source is None and form.is_bound and not form.errors.get("source"):
        source = (getattr(form, "cleaned_data", None) or {}).get("source")
    return render(
        request,
        "executions/start.html",
        {
            "sm": sm,
            "form": form,
            "source": source,
            "note": note,
            "existing": existing,
            "express": sm.type == "EXPRESS",
        },
        status=status,
    )


def _confirmation(request: HttpRequest, sm: StateMachine, form: StartForm) -> HttpResponse:
    data = form.cleaned_data
    text: str = data["input"]
    target = next(t for t in form.targets if t.arn == data["target"])
    facts = start.input_facts(text)
    return render(
        request,
        "executions/start_confirm.html",
        {
            "sm": sm,
            "form": form,
            "target": target,
            "name": data["name"] or start.generated_name(data["request_token"]),
            "name_generated": not data["name"],
            "input": payload(text),
            "input_size": human_size(facts["input_bytes"]),
            "input_sha256": facts["input_sha256"],
            "source": data["source"],
            "express": sm.type == "EXPRESS",
        },
    )


def _start(request: HttpRequest, sm: StateMachine, form: StartForm) -> HttpResponse:
    data = form.cleaned_data
    try:
        # Someone waits for this page: the start, the describe of the new
        # execution (or the re-check after no answer) share the page deadline.
        with aws.page_deadline():
            attempt = start.request_start(
                sm,
                request.user,
                target_arn=data["target"],
                name=data["name"],
                input_text=data["input"],
                request_token=data["request_token"],
                source=data["source"],
            )
    except start.TokenReused:
        form.data = _with_fresh_token(request)
        form.add_error(
            None,
            "This form was already used to start something else (another name, input or "
            "target). Nothing was sent: check the form below and go on again.",
        )
        return _edit(request, sm, form, status=400)

    result = keep_tz(
        reverse("state_machine_start_result", args=[sm.arn, attempt.request_token]), request
    )
    name = attempt.parameters.get("name", "")
    if start.in_flight(attempt):
        messages.info(
            request,
            f"A start of {name} from this form is still waiting for AWS's answer: nothing more "
            "was sent. Reload in a moment to see the outcome.",
        )
        return HttpResponseRedirect(result)
    Outcome = ActionRequest.Outcome
    if attempt.outcome == Outcome.DONE:
        if attempt.execution_id is None:
            # Express: nothing to open but what AWS answered.
            return HttpResponseRedirect(result)
        messages.success(request, f"Started {name}. Syncing it now.")
        return HttpResponseRedirect(
            keep_tz(reverse("execution_detail", args=[attempt.result_arn]), request)
        )
    if attempt.outcome == Outcome.UNKNOWN:
        messages.warning(request, attempt.aws_response)
        return HttpResponseRedirect(result)
    # REFUSED or FAILED: back to the form, as typed, with a fresh token (the
    # name stays as it was, so trying again cannot start a second one).
    data_again = _with_fresh_token(request)
    if not data["name"]:
        data_again["name"] = name
    form = StartForm(sm, data_again)
    form.is_valid()
    form.add_error(None, attempt.aws_response)
    if attempt.outcome == Outcome.REFUSED:
        held_by = str(attempt.parameters.get("existing_execution", ""))
        existing = Execution.objects.filter(arn=held_by).first() if held_by else None
        return _edit(request, sm, form, status=409, existing=existing)
    kind = str((attempt.parameters.get("aws_error") or {}).get("kind", "refused"))
    return _edit(request, sm, form, status=FAILURE_STATUS.get(kind, 502))


@require_GET
@start_permission
def start_result(request: HttpRequest, arn: str, token: uuid.UUID) -> HttpResponse:
    """What a start did, for the starts that have no execution page to open: an
    Express workflow's, one whose outcome is unknown, one still in flight."""
    sm = state_machine_or_404(arn)
    attempt = ActionRequest.objects.filter(
        request_token=token, kind=ActionRequest.Kind.START
    ).first()
    if attempt is None or attempt.parameters.get("state_machine") != sm.arn:
        raise PageError(
            404, "No such start", f"No start of {sm.name} was made with the form {token}."
        )
    started_at = None
    if attempt.outcome == ActionRequest.Outcome.DONE:
        try:
            answer = json.loads(attempt.aws_response)
        except ValueError:
            answer = {}
        started_at = _parse_time(answer.get("startDate")) if isinstance(answer, dict) else None
    return render(
        request,
        "executions/start_result.html",
        {
            "sm": sm,
            "attempt": attempt,
            "in_flight": start.in_flight(attempt),
            "express": start.express(attempt),
            "started_at": started_at,
            "execution": attempt.execution,
        },
    )


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None
