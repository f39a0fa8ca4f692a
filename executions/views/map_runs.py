"""/map-runs/<arn>/: a Distributed Map run (counts, tolerance, children), and
/map-runs/<arn>/update/: changing its concurrency and failure tolerance."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_safe

from executions import aws
from executions.actions import map_run as action
from executions.links import keep_tz
from executions.sync import map_runs as map_run_sync
from executions.web import ratelimit
from executions.web.common import execution_or_404
from executions.web.errors import PageError

from ..arns import NotAnArn, console_url, is_map_run_arn, parse_execution_arn
from ..models import ActionRequest, Execution, ExecutionStatus, MapRun

PAGE_SIZE = 100
RECENT_UPDATES = 10
COUNTS = (
    ("pending", "Pending"),
    ("running", "Running"),
    ("succeeded", "Succeeded"),
    ("failed", "Failed"),
    ("timedOut", "Timed out"),
    ("aborted", "Aborted"),
    ("total", "Total"),
)


# --- Finding one ---------------------------------------------------------------------


def map_run_or_404(arn: str) -> MapRun:
    """The cached Map Run; one the cache has not seen is looked up in AWS once
    (DescribeMapRun, and its parent execution) and stored."""
    if not is_map_run_arn(arn):
        raise PageError(
            404,
            "Not a Map Run ARN",
            f"{arn[:300]!r} is not a Step Functions Map Run ARN. It should look like "
            "arn:aws:states:us-east-1:123456789012:mapRun:StateMachine/MapLabel:id",
        )
    run = MapRun.objects.select_related("execution__state_machine").filter(arn=arn).first()
    if run is not None:
        return run
    try:
        aws.target_for_arn(arn)
    except aws.NotConfigured as exc:
        raise PageError(404, "Not an account or region this dashboard reads", exc.message) from None
    ratelimit.spend_lookup()
    try:
        with aws.page_deadline():
            d = aws.describe_map_run(arn)
    except aws.NotFound:
        raise PageError(404, "Unknown Map Run", f"AWS does not know the Map Run {arn}.") from None
    except aws.InvalidArn as exc:
        raise PageError(404, "Not a Map Run ARN", f"AWS says: {exc.message}") from None
    except aws.Throttled:
        raise PageError(
            503,
            "AWS is throttling",
            "AWS asked us to slow down before this Map Run could be looked up. "
            "Try again in a few seconds.",
        ) from None
    except aws.Unavailable as exc:
        raise PageError(
            503,
            "AWS is unreachable",
            f"This Map Run is not in the cache and AWS could not be reached to look it up "
            f"({exc.code or 'no answer'}). Try again when AWS is reachable.",
        ) from None
    except aws.AwsError as exc:
        raise PageError(502, "AWS refused the lookup", f"{exc.code}: {exc.message}") from None
    parent = execution_or_404(str(d.get("executionArn") or ""))
    MapRun.objects.bulk_create(
        [
            MapRun(
                arn=arn,
                execution=parent,
                status=d.get("status", "RUNNING"),
                start_date=aws.utc(d["startDate"]),
                sync_due_at=timezone.now(),
            )
        ],
        ignore_conflicts=True,
    )
    run = MapRun.objects.select_related("execution__state_machine").get(arn=arn)
    if run.described_at is None:
        map_run_sync.store_description(run, d)
    return run


def _make_due(run: MapRun) -> None:
    """Someone is looking at a running Map Run: sync it at the next tick."""
    now = timezone.now()
    fresh = run.described_at is not None and (
        (now - run.described_at).total_seconds() < settings.SFNUI_VIEWED_INTERVAL
    )
    if run.is_open and not fresh:
        MapRun.objects.filter(
            Q(sync_due_at__isnull=True) | Q(sync_due_at__gt=now), pk=run.pk
        ).update(sync_due_at=now)


# --- The page ------------------------------------------------------------------------


class ChildrenForm(forms.Form):
    status = forms.MultipleChoiceField(choices=ExecutionStatus.choices, required=False)
    # Keyset pagination: "<start_date in µs since the epoch>-<id>" of the last
    # child of the previous page.
    cursor = forms.RegexField(regex=r"^\d{1,20}-\d{1,20}$", required=False, max_length=42)

    def clean_cursor(self) -> tuple[dt.datetime, int] | None:
        value: str = self.cleaned_data["cursor"]
        if not value:
            return None
        micros, pk = value.split("-")
        try:
            when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(micros))
        except OverflowError:
            raise forms.ValidationError("Not a page of this list.") from None
        return when, int(pk)


def tolerance(run: MapRun) -> dict[str, Any]:
    """The failure tolerance against the failures so far (failed and timed-out items)."""
    counts = run.item_counts or {}
    total = int(counts.get("total") or 0)
    failures = int(counts.get("failed") or 0) + int(counts.get("timedOut") or 0)
    limits = []
    if run.tolerated_failure_count:
        limits.append(int(run.tolerated_failure_count))
    if run.tolerated_failure_percentage:
        limits.append(math.floor(total * run.tolerated_failure_percentage / 100))
    allowed = min(limits) if limits else 0
    return {
        "failures": failures,
        "allowed": allowed,
        "meter_max": max(allowed + 1, failures, 1),
        "exceeded": failures > allowed,
        "left": max(allowed - failures, 0),
        "share": (failures * 100.0 / total) if total else 0.0,
        "none_tolerated": not limits,
    }


@require_safe
def map_run_of_execution(request: HttpRequest, arn: str, label: str) -> HttpResponse:
    """/executions/<arn>/map-runs/<label:id>/ (SPEC.md's address): the Map Run
    `label:id` of that execution, at its own page /map-runs/<map run ARN>/."""
    try:
        parent = parse_execution_arn(arn)
    except NotAnArn as exc:
        raise PageError(404, "Not an execution ARN", str(exc)) from None
    run_arn = (
        f"arn:{parent.partition}:states:{parent.region}:{parent.account}"
        f":mapRun:{parent.state_machine_name}/{label}"
    )
    if parent.map_run_label is not None or not is_map_run_arn(run_arn):
        raise PageError(
            404,
            "Not a Map Run of this execution",
            f"{label[:300]!r} is not a Map Run's label and id (LABEL:id, as at the end of "
            "a Map Run ARN) of a top-level execution.",
        )
    owner = MapRun.objects.filter(arn=run_arn).values_list("execution__arn", flat=True).first()
    if owner is not None and owner != arn:
        raise PageError(
            404,
            "Not a Map Run of this execution",
            f"The Map Run {run_arn} belongs to {owner}, not to {arn}.",
        )
    url = reverse("map_run_detail", args=[run_arn])
    query = request.META.get("QUERY_STRING", "")
    return HttpResponseRedirect(url + (f"?{query}" if query else ""))


@require_safe
def map_run_detail(request: HttpRequest, arn: str) -> HttpResponse:
    run = map_run_or_404(arn)
    form = ChildrenForm(request.GET)
    if not form.is_valid():
        raise PageError(400, "Bad filter", _errors(form))
    _make_due(run)
    statuses: list[str] = form.cleaned_data["status"]
    cursor: tuple[dt.datetime, int] | None = form.cleaned_data["cursor"]
    children = Execution.objects.filter(map_run_arn=run.arn)
    if statuses:
        children = children.filter(status__in=statuses)
    if cursor is not None:
        when, pk = cursor
        children = children.filter(Q(start_date__lt=when) | Q(start_date=when, id__lt=pk))
    page = list(
        children.order_by("-start_date", "-id").only(
            "arn", "name", "status", "start_date", "stop_date"
        )[: PAGE_SIZE + 1]
    )
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    next_url = ""
    if more:
        last = page[-1]
        micros = int((last.start_date - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
        micros = micros * 1_000_000 + last.start_date.microsecond
        params = [("status", s) for s in statuses] + [("cursor", f"{micros}-{last.pk}")]
        next_url = keep_tz(reverse("map_run_detail", args=[run.arn]), request, params)
    cached = dict(
        Execution.objects.filter(map_run_arn=run.arn)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    counts = run.item_counts or {}
    context = {
        "run": run,
        "parent": run.execution,
        "label": run.arn.split(":")[6].split("/", 1)[1],
        "item_counts": [(k, label, counts.get(k)) for k, label in COUNTS],
        "results_written": counts.get("resultsWritten"),
        "execution_counts": run.execution_counts or {},
        "tolerance": tolerance(run),
        "children": page,
        "next_url": next_url,
        "first_page": cursor is None,
        "statuses": ExecutionStatus.values,
        "chosen": statuses,
        "cached": cached,
        "cached_total": sum(cached.values()),
        "can_update": action.can_update(request.user) and run.is_open,
        "updates": ActionRequest.objects.filter(
            kind=ActionRequest.Kind.UPDATE_MAP_RUN, target_arn=run.arn
        ).order_by("-requested_at", "-id")[:RECENT_UPDATES],
        "console_url": console_url(run.execution.arn),
    }
    return render(request, "executions/map_run.html", context)


def _errors(form: forms.Form) -> str:
    return "; ".join(
        f"{field}: {' '.join(str(e) for e in errs)}" for field, errs in form.errors.items()
    )


# --- Changing its limits ---------------------------------------------------------------


class UpdateForm(forms.Form):
    max_concurrency = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=action.MAX_CONCURRENCY_MAX,
        label="Max concurrency",
        help_text="Child executions running at once; 0 means no limit (up to 10,000).",
    )
    tolerated_failure_percentage = forms.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        label="Tolerated failure percentage",
        help_text="The Map Run fails when more than this share of its items failed (0 to 100).",
    )
    tolerated_failure_count = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=2**63 - 1,
        label="Tolerated failure count",
        help_text="The Map Run fails when more than this many items failed (0 or more).",
    )
    request_token = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, run: MapRun, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run = run

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        current = action.limits(self.run)
        changes = {
            "max_concurrency": ("maxConcurrency", data.get("max_concurrency")),
            "tolerated_failure_percentage": (
                "toleratedFailurePercentage",
                data.get("tolerated_failure_percentage"),
            ),
            "tolerated_failure_count": (
                "toleratedFailureCount",
                data.get("tolerated_failure_count"),
            ),
        }
        changed = {
            field: value
            for field, (key, value) in changes.items()
            if value is not None and value != current[key]
        }
        if not self.errors and not changed:
            raise forms.ValidationError(
                "Nothing to change: every value is the Map Run's current one (or empty)."
            )
        data["changed"] = changed
        return data


def _update_permission(request: HttpRequest) -> None:
    if not action.can_update(request.user):
        raise PermissionDenied(
            "Changing a Map Run's limits needs the permission “Can change a running Map Run's "
            f"concurrency and failure tolerance” ({action.PERMISSION}). Ask an administrator "
            f"to grant it to {request.user.get_username()}."
        )


@require_http_methods(["GET", "POST"])
def map_run_update(request: HttpRequest, arn: str) -> HttpResponse:
    _update_permission(request)
    run = map_run_or_404(arn)
    if request.method == "GET":
        _make_due(run)
        form = UpdateForm(
            run=run,
            initial={
                "max_concurrency": run.max_concurrency,
                "tolerated_failure_percentage": run.tolerated_failure_percentage,
                "tolerated_failure_count": run.tolerated_failure_count,
                "request_token": uuid.uuid4(),
            },
        )
        return _confirmation(request, run, form)
    form = UpdateForm(request.POST, run=run)
    if not form.is_valid():
        if form.errors.get("request_token"):
            form.data = _with_fresh_token(request)
        return _confirmation(request, run, form, status=400)
    changed = form.cleaned_data["changed"]
    try:
        with aws.page_deadline():
            attempt = action.request_update(
                run,
                request.user,
                max_concurrency=changed.get("max_concurrency"),
                tolerated_failure_percentage=changed.get("tolerated_failure_percentage"),
                tolerated_failure_count=changed.get("tolerated_failure_count"),
                request_token=form.cleaned_data["request_token"],
            )
    except action.TokenReused:
        form.data = _with_fresh_token(request)
        form.add_error(
            None,
            "This confirmation form was already used for another action. Nothing was sent: "
            "check the form below and confirm again.",
        )
        return _confirmation(request, run, form, status=400)
    page = keep_tz(reverse("map_run_detail", args=[run.arn]), request)
    Outcome = ActionRequest.Outcome
    if action.in_flight(attempt):
        messages.info(
            request,
            "An update from this form is still waiting for AWS's answer: nothing more was sent.",
        )
    elif attempt.outcome == Outcome.DONE:
        words = ", ".join(f"{k} {v}" for k, v in attempt.parameters.get("new", {}).items())
        messages.success(request, f"Map Run updated: {words}. AWS accepted the change.")
    elif attempt.outcome in (Outcome.REFUSED, Outcome.UNKNOWN):
        messages.warning(request, attempt.aws_response)
    else:
        messages.error(request, f"The Map Run was not updated. {attempt.aws_response}")
        return HttpResponseRedirect(keep_tz(reverse("map_run_update", args=[run.arn]), request))
    return HttpResponseRedirect(page)


def _with_fresh_token(request: HttpRequest) -> QueryDict:
    data = request.POST.copy()
    data["request_token"] = str(uuid.uuid4())
    return data


def _confirmation(
    request: HttpRequest, run: MapRun, form: UpdateForm, status: int = 200
) -> HttpResponse:
    context = {
        "run": run,
        "parent": run.execution,
        "form": form,
        "tolerance": tolerance(run),
        "item_counts": run.item_counts or {},
        "updates": ActionRequest.objects.filter(
            kind=ActionRequest.Kind.UPDATE_MAP_RUN, target_arn=run.arn
        ).order_by("-requested_at", "-id")[:RECENT_UPDATES],
    }
    return render(request, "executions/map_run_update.html", context, status=status)
