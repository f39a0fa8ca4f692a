"""/bulk-stop/ and /bulk-redrive/: the dry run (GET), the confirmation (POST),
and a batch's progress (either kind)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from executions.actions import bulk, redrive, stop
from executions.links import keep_tz
from executions.web.auth import can_read_audit, refuse_audit
from executions.web.forms import ExecutionFilterForm
from executions.web.htmx import HtmxHttpRequest
from executions.web.redrive_form import redrive_permission
from executions.web.stop_form import CAUSE_MAX, ERROR_MAX, default_cause, stop_permission

from ..models import BulkStop

# Items listed on the progress page (all of them are in the audit).
PROGRESS_ROWS = 500
# The progress page refreshes this often until the batch is done.
POLL_SECONDS = 2


class PickedField(forms.Field):
    """`execution` repeated: ids of executions picked one by one."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> tuple[int, ...]:
        if not value:
            return ()
        values = [value] if isinstance(value, str) else list(value)
        if len(values) > bulk.MAX_PICKED:
            raise ValidationError(
                f"at most {bulk.MAX_PICKED:,} executions can be picked one by one; "
                "use “all that match this filter” instead"
            )
        out: list[int] = []
        for item in values:
            try:
                pk = int(str(item))
            except ValueError:
                raise ValidationError(f"{str(item)[:40]!r} is not an execution id") from None
            if not 0 < pk < 2**63:
                raise ValidationError(f"{pk} is not an execution id")
            if pk not in out:
                out.append(pk)
        return tuple(out)


class SelectionForm(ExecutionFilterForm):
    """What to stop: picked executions, or the list's filters (and, from the
    runaway finder, one current state)."""

    execution = PickedField(required=False)
    in_state = forms.CharField(required=False, max_length=80, strip=False)

    def selection(self) -> bulk.Selection:
        picked: tuple[int, ...] = self.cleaned_data["execution"]
        if picked:
            return bulk.Selection(picked=picked)
        state: str = self.cleaned_data["in_state"]
        return bulk.Selection(filters=self.filters(), in_state=state or None)


class BulkStopForm(forms.Form):
    # The batch's id, made with the dry run: a second POST finds the batch.
    batch_id = forms.UUIDField(widget=forms.HiddenInput)
    # What the dry run counted, and which executions they were.
    expected = forms.IntegerField(min_value=1, max_value=bulk.CAP, widget=forms.HiddenInput)
    digest = forms.CharField(max_length=64, widget=forms.HiddenInput)
    typed = forms.CharField(
        max_length=20,
        label="Type the number of executions to stop",
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "size": 8}),
    )
    error = forms.CharField(
        max_length=ERROR_MAX,
        help_text="A short code, kept by AWS as each execution's error (at most 256 characters).",
    )
    cause = forms.CharField(
        max_length=CAUSE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Who stopped them and why; AWS keeps it in each execution's history "
        "(at most 32,768 characters).",
    )

    def clean(self) -> dict[str, Any]:
        return _check_typed(self, super().clean() or {})


def _check_typed(form: forms.Form, data: dict[str, Any]) -> dict[str, Any]:
    """The count typed must be the count the dry run showed."""
    typed = str(data.get("typed", "")).strip().replace(",", "").replace(" ", "")
    expected = data.get("expected")
    if expected is not None and "typed" in data and typed != str(expected):
        form.add_error(
            "typed",
            f"You typed {data['typed'][:20]!r}: type {expected} (the number of executions "
            "listed above) to confirm.",
        )
    return data


@require_http_methods(["GET", "POST"])
@stop_permission
def bulk_stop(request: HttpRequest) -> HttpResponse:
    selecting = SelectionForm(request.GET if request.method == "GET" else request.POST)
    if not selecting.is_valid():
        return render(
            request,
            "executions/bulk_stop.html",
            {"problems": selecting.problems()},
            status=400,
        )
    selection = selecting.selection()
    if request.method == "GET":
        dry = bulk.dry_run(selection)
        return _dry_run_page(request, dry, _fresh_form(request, dry))

    form = BulkStopForm(request.POST)
    batch_id = _batch_id(request)
    if batch_id is not None and BulkStop.objects.filter(pk=batch_id).exists():
        # The same confirmation, posted again: the batch is already running.
        return HttpResponseRedirect(_progress_url(request, batch_id))
    dry = bulk.dry_run(selection)
    if not form.is_valid():
        if form.errors.get("batch_id") or form.errors.get("expected") or form.errors.get("digest"):
            return _dry_run_page(
                request,
                dry,
                _fresh_form(request, dry, keep=request.POST),
                notice="This confirmation was incomplete, so nothing was stopped. "
                "Check the count below and confirm again.",
                status=400,
            )
        return _dry_run_page(request, dry, form, status=400)
    if dry.too_many:
        return _dry_run_page(request, dry, form, status=400)
    data = form.cleaned_data
    if dry.count != data["expected"] or dry.digest != data["digest"]:
        return _dry_run_page(
            request,
            dry,
            _fresh_form(request, dry, keep=request.POST),
            notice=f"The selection changed since the dry run (executions finished or started): "
            f"it holds {dry.count:,} running execution{'s' if dry.count != 1 else ''} now, "
            f"not {data['expected']:,}. Nothing was stopped. Check the list and type the new "
            "count to confirm.",
            status=409,
        )
    try:
        batch = bulk.start(
            batch_id=data["batch_id"],
            user=request.user,  # type: ignore[arg-type]
            selection=selection,
            ids=dry.ids,
            error=data["error"],
            cause=data["cause"],
        )
    except IntegrityError:
        # The same form, posted twice at the same moment: the other one started it.
        return HttpResponseRedirect(_progress_url(request, data["batch_id"]))
    messages.success(
        request,
        f"Stopping {batch.count:,} execution{'s' if batch.count != 1 else ''}: each is checked "
        "live with AWS first. Results appear below as they come.",
    )
    return HttpResponseRedirect(_progress_url(request, batch.pk))


class BulkRedriveForm(forms.Form):
    # As BulkStopForm: the batch's id, what the dry run counted, and the count typed.
    batch_id = forms.UUIDField(widget=forms.HiddenInput)
    expected = forms.IntegerField(min_value=1, max_value=bulk.CAP, widget=forms.HiddenInput)
    digest = forms.CharField(max_length=64, widget=forms.HiddenInput)
    typed = forms.CharField(
        max_length=20,
        label="Type the number of executions to redrive",
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "numeric", "size": 8}),
    )

    def clean(self) -> dict[str, Any]:
        return _check_typed(self, super().clean() or {})


@require_http_methods(["GET", "POST"])
@redrive_permission
def bulk_redrive(request: HttpRequest) -> HttpResponse:
    """Redrive every execution of a filter AWS may redrive, guarded as bulk stop is."""
    selecting = SelectionForm(request.GET if request.method == "GET" else request.POST)
    if not selecting.is_valid():
        return render(
            request,
            "executions/bulk_redrive.html",
            {"problems": selecting.problems()},
            status=400,
        )
    selection = selecting.selection()
    if request.method == "GET":
        dry = bulk.dry_run(selection, bulk.REDRIVE)
        return _redrive_dry_run_page(request, dry, _fresh_redrive_form(dry))

    form = BulkRedriveForm(request.POST)
    batch_id = _batch_id(request)
    if batch_id is not None and BulkStop.objects.filter(pk=batch_id).exists():
        # The same confirmation, posted again: the batch is already running.
        return HttpResponseRedirect(_progress_url(request, batch_id))
    dry = bulk.dry_run(selection, bulk.REDRIVE)
    if not form.is_valid():
        if form.errors.get("batch_id") or form.errors.get("expected") or form.errors.get("digest"):
            return _redrive_dry_run_page(
                request,
                dry,
                _fresh_redrive_form(dry),
                notice="This confirmation was incomplete, so nothing was redriven. "
                "Check the count below and confirm again.",
                status=400,
            )
        return _redrive_dry_run_page(request, dry, form, status=400)
    if dry.too_many:
        return _redrive_dry_run_page(request, dry, form, status=400)
    data = form.cleaned_data
    if dry.count != data["expected"] or dry.digest != data["digest"]:
        return _redrive_dry_run_page(
            request,
            dry,
            _fresh_redrive_form(dry),
            notice=f"The selection changed since the dry run (executions were redriven, ended "
            f"or aged past 14 days): it holds {dry.count:,} redrivable execution"
            f"{'s' if dry.count != 1 else ''} now, not {data['expected']:,}. Nothing was "
            "redriven. Check the list and type the new count to confirm.",
            status=409,
        )
    try:
        batch = bulk.start(
            batch_id=data["batch_id"],
            user=request.user,  # type: ignore[arg-type]
            selection=selection,
            ids=dry.ids,
            error="",
            cause="",
            action=bulk.REDRIVE,
        )
    except IntegrityError:
        return HttpResponseRedirect(_progress_url(request, data["batch_id"]))
    messages.success(
        request,
        f"Redriving {batch.count:,} execution{'s' if batch.count != 1 else ''}: each is checked "
        "live with AWS first. Results appear below as they come.",
    )
    return HttpResponseRedirect(_progress_url(request, batch.pk))


def _fresh_redrive_form(dry: bulk.DryRun) -> BulkRedriveForm:
    return BulkRedriveForm(
        initial={"batch_id": uuid.uuid4(), "expected": dry.count, "digest": dry.digest}
    )


def _redrive_dry_run_page(
    request: HttpRequest,
    dry: bulk.DryRun,
    form: BulkRedriveForm,
    *,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "executions/bulk_redrive.html",
        {
            "dry": dry,
            "form": form,
            "notice": notice,
            "selection_query": dry.selection.query(),
            "cap": bulk.CAP,
            "back_url": _back_url(request, dry.selection),
            "rows": [(ex, redrive.redrivable_until(ex)) for ex in dry.shown],
        },
        status=status,
    )


def _batch_id(request: HttpRequest) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.POST.get("batch_id", ""))
    except ValueError:
        return None


def _fresh_form(request: HttpRequest, dry: bulk.DryRun, keep: Any = None) -> BulkStopForm:
    """A confirmation for what the dry run counted now; the person's reason kept."""
    username = request.user.get_username()
    return BulkStopForm(
        initial={
            "batch_id": uuid.uuid4(),
            "expected": dry.count,
            "digest": dry.digest,
            "error": (keep or {}).get("error") or "sfnui.BulkStop",
            "cause": (keep or {}).get("cause")
            or f"{default_cause(username)} (bulk stop of {dry.count:,})",
        }
    )


def _dry_run_page(
    request: HttpRequest,
    dry: bulk.DryRun,
    form: BulkStopForm,
    *,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "executions/bulk_stop.html",
        {
            "dry": dry,
            "form": form,
            "notice": notice,
            "selection_query": dry.selection.query(),
            "cap": bulk.CAP,
            "back_url": _back_url(request, dry.selection),
        },
        status=status,
    )


def _back_url(request: HttpRequest, selection: bulk.Selection) -> str:
    """Where the selection came from: the list with the same filters."""
    if selection.is_picked or selection.in_state is not None:
        return keep_tz(reverse("runaways" if selection.in_state else "execution_list"), request)
    return keep_tz(reverse("execution_list"), request, selection.query())


def _progress_url(request: HttpRequest, batch_id: uuid.UUID) -> str:
    return keep_tz(reverse("bulk_stop_progress", args=[batch_id]), request)


@require_safe
def bulk_stop_progress(request: HtmxHttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    if can_read_audit(request.user):
        batch = get_object_or_404(BulkStop, pk=batch_id)
    else:
        # Its author may follow it. Anyone else gets the same 403 whether
        # the batch exists or not.
        mine = BulkStop.objects.filter(pk=batch_id, user_id=request.user.pk or 0).first()
        if mine is None:
            raise refuse_audit(request.user)
        batch = mine
    items = list(
        batch.items.select_related(
            "execution__state_machine", "stop_request", "action_request"
        ).order_by("position")[:PROGRESS_ROWS]
    )
    context = {
        "batch": batch,
        "items": items,
        "progress": bulk.progress(batch),
        "shown": len(items),
        "poll_seconds": POLL_SECONDS,
        "can_stop": _may_act(batch, request.user),
        "in_flight": redrive.IN_FLIGHT if batch.action == bulk.REDRIVE else stop.IN_FLIGHT,
    }
    template = (
        "executions/_bulk_stop_progress.html"
        if request.htmx
        else "executions/bulk_stop_progress.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _refuse(
    guard: Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]],
    request: HttpRequest,
) -> None:
    """Raise the guard's PermissionDenied, which says which permission is missing."""
    guard(lambda _request: HttpResponse())(request)
    raise AssertionError("the guard let through someone it refuses")  # pragma: no cover


def _may_act(batch: BulkStop, user: Any) -> bool:
    """May this person do what the batch does (and so resume it)?"""
    if batch.action == bulk.REDRIVE:
        return redrive.can_redrive(user)
    return stop.can_stop(user)


@require_POST
def bulk_stop_resume(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    """Hand what is still waiting to workers again (after the broker was down,
    or workers were lost). Safe to repeat: nothing is ever sent twice. It takes
    the permission of what the batch does (stop, or redrive)."""
    if not stop.can_stop(request.user) and not redrive.can_redrive(request.user):
        # Neither: the same 403 as before, whether the batch exists or not.
        _refuse(stop_permission, request)
    batch = get_object_or_404(BulkStop, pk=batch_id)
    if not _may_act(batch, request.user):
        _refuse(redrive_permission if batch.action == bulk.REDRIVE else stop_permission, request)
    if batch.finished_at is not None:
        what = "bulk redrive" if batch.action == bulk.REDRIVE else "bulk stop"
        messages.info(request, f"This {what} is finished: there is nothing left to send.")
    else:
        sent = bulk.enqueue(batch)
        batch.refresh_from_db(fields=["enqueue_error"])
        if batch.enqueue_error:
            messages.error(request, batch.enqueue_error)
        else:
            messages.success(
                request,
                f"Handed the executions still waiting to workers again ({sent} task"
                f"{'s' if sent != 1 else ''}).",
            )
    return HttpResponseRedirect(_progress_url(request, batch.pk))
