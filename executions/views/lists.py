"""/executions/: the list, its filters, its counts per status, and the jump
from a pasted ARN or console URL to that execution."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

from executions.actions import stop
from executions.links import keep_tz
from executions.reads import places, queries, search, versions
from executions.times import iso_z
from executions.web import list_rows
from executions.web.forms import (
    MAX_QUERY,
    STATUSES,
    AccountsField,
    ExecutionFilterForm,
    RegionsField,
    StatusesField,
)
from executions.web.htmx import HtmxHttpRequest
from executions.web.previews import list_page_preview, list_preview, previewable

from ..arns import NotAnArn, find_execution_arn, parse_state_machine_arn, state_machine_name
from ..models import ExecutionStatus, StateMachine

# The rows refresh this often while any of them runs.
POLL_SECONDS = 5
# "Started in the last ..." shortcuts.
PRESETS = (("15 m", 15 * 60), ("1 h", 3600), ("6 h", 6 * 3600), ("24 h", 86400), ("7 d", 7 * 86400))


@dataclass(frozen=True)
class Chip:
    status: str
    label: str
    count: str
    exact: bool
    selected: bool
    url: str
    # Why the count is a lower bound, when it is one.
    note: str = ""


@dataclass(frozen=True)
class ActiveFilter:
    label: str
    value: str
    remove_url: str


@previewable(list_page_preview)
@require_safe
def execution_list(request: HtmxHttpRequest) -> HttpResponse:
    jump = _jump(request)
    if jump is not None:
        return redirect(jump)

    form = ExecutionFilterForm(request.GET)
    if not form.is_valid():
        return render(
            request,
            "executions/list.html",
            {
                "form": form,
                "problems": form.problems(),
                "clear_url": _url(request, {}),
                "hidden_statuses": _valid_statuses(request),
                "search_head": search.HEAD,
                "place_choices": places.choices(
                    places.known(),
                    _valid(AccountsField(), request.GET.getlist("account")),
                    _valid(RegionsField(), request.GET.getlist("region")),
                ),
            },
            status=400,
        )
    filters = form.filters()
    page = queries.page(filters, form.cleaned_data["cursor"], form.page_size)
    first_page = page if form.cleaned_data["cursor"] is None else None
    counts = queries.status_counts(filters, first_page)
    choices = places.choices(places.known(), list(filters.accounts), list(filters.regions))
    found = search.parse(filters.q) if filters.q else None
    if found is not None and found.data:
        for ex in page.rows:
            heads = {f: getattr(ex, f"head_{f}", None) for f in search.FIELDS}
            ex.snippet = search.snippet(found, {**heads, "error": ex.error})  # type: ignore[attr-defined]
    # One link per state machine, not per row (a page holds a few); the
    # same for accounts and regions.
    only: dict[str, str] = {}
    there: dict[tuple[str, str], tuple[str, str, str]] = {}
    for ex in page.rows:
        sm = ex.state_machine
        if sm.arn not in only:
            only[sm.arn] = _with(request, state_machine=sm.arn)
        ex.filter_url = only[sm.arn]  # type: ignore[attr-defined]
        if choices.several:
            place = (sm.account, sm.region)
            if place not in there:
                # Compact: the identity's name when SFNUI_ACCOUNTS gives one.
                name = places.identity_name(*place)
                there[place] = (
                    name or sm.account,
                    f"account {places.account_label(*place)}, region {sm.region}",
                    _with(request, account=sm.account, region=sm.region),
                )
            ex.place = there[place]  # type: ignore[attr-defined]
    polling = any(ex.is_open for ex in page.rows)
    context: dict[str, Any] = {
        "rows_html": list_rows.rows_html(
            page.rows,
            request,
            pick=polling and stop.can_stop(request.user),
            places=choices.several,
        ),
        "place_choices": choices,
        "form": form,
        "filters": filters,
        "hidden_statuses": filters.statuses,
        # The failures page's exact filters, which the form has no field for.
        "hidden_params": [
            (name, request.GET[name])
            for name in ("failed_error", "failed_state", "stopped_after", "stopped_before")
            if name in request.GET
        ],
        "page": page,
        "trigram_db": connection.vendor == "postgresql",
        "search_head": search.HEAD,
        "chips": _chips(request, filters, counts),
        "all_chip": _all_chip(request, filters, counts),
        "active": _active_filters(request, filters),
        "newer_url": _with(request, cursor=page.newer.encode()) if page.newer else None,
        "older_url": _with(request, cursor=page.older.encode()) if page.older else None,
        "newest_url": _with(request, cursor=None),
        "at_newest": form.cleaned_data["cursor"] is None,
        "polling": polling,
        "poll_seconds": POLL_SECONDS,
        "clear_url": _url(request, {}),
        "presets": _presets(request),
        "per_page": form.page_size,
        "per_page_links": [
            (n, _with(request, per_page=None if n == queries.DEFAULT_PER_PAGE else n, cursor=None))
            for n in (queries.DEFAULT_PER_PAGE, 100, queries.MAX_PER_PAGE)
        ],
        "preview": list_preview(request, filters, counts),
        "unknown_state_machine": bool(
            filters.state_machine_arn
            and not page.rows
            and not StateMachine.objects.filter(arn=filters.state_machine_arn).exists()
        ),
    }
    template = "executions/_list_results.html" if request.htmx else "executions/list.html"
    response = render(request, template, context)
    # The same URL answers with the rows alone to htmx: keep caches apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


def _jump(request: HttpRequest) -> str | None:
    """Where a pasted execution ARN / console URL (or a state machine ARN) in
    `q` leads; None for a name search."""
    q = request.GET.get("q", "")
    if not q or len(q) > MAX_QUERY or "\x00" in q:
        return None
    arn = find_execution_arn(q)
    if arn is not None:
        return keep_tz(reverse("execution_detail", args=[arn]), request)
    try:
        sm = parse_state_machine_arn(q.strip())
    except NotAnArn:
        return None
    return _url(request, {"state_machine": [sm.arn]})


def _valid(field: AccountsField | RegionsField, values: list[str]) -> list[str]:
    """The good values of a parameter that also has bad ones, so that the form
    keeps them."""
    try:
        asked = field.to_python(values)
    except ValidationError:  # too many: keep none
        return []
    good = []
    for value in asked:
        try:
            field.check(value)
        except ValidationError:
            continue
        good.append(value)
    return good


def _valid_statuses(request: HttpRequest) -> list[str]:
    """The good `status` values of a request that also has bad ones, so that the
    form re-submits them."""
    asked = StatusesField().to_python(request.GET.getlist("status"))
    return [s for s in STATUSES if s in asked]


def _url(request: HttpRequest, params: dict[str, list[str]]) -> str:
    """The list with exactly these parameters (and the page's zone)."""
    pairs = [(key, value) for key, values in params.items() for value in values]
    return keep_tz(reverse("execution_list"), request, pairs)


def _with(request: HttpRequest, **changes: Any) -> str:
    """This page's URL with some parameters changed (None removes one). Any
    change but the cursor's starts again from the newest page."""
    params = {key: request.GET.getlist(key) for key in request.GET}
    if set(changes) - {"cursor"}:
        params.pop("cursor", None)
    for key, value in changes.items():
        if value is None or value == [] or value == "":
            params.pop(key, None)
        elif isinstance(value, list):
            params[key] = value
        else:
            params[key] = [str(value)]
    return _url(request, params)


def _format_count(n: int, exact: bool) -> str:
    return f"{n:,}" if exact else f"{n:,}+"


def _chips(request: HttpRequest, filters: queries.Filters, counts: queries.Counts) -> list[Chip]:
    chips = []
    labels = dict(ExecutionStatus.choices)
    for c in counts.by_status:
        selected = c.status in filters.statuses
        toggled = (
            [s for s in filters.statuses if s != c.status]
            if selected
            else [s for s in STATUSES if s in filters.statuses or s == c.status]
        )
        chips.append(
            Chip(
                status=c.status,
                label=str(labels[c.status]),
                count=_format_count(c.count, c.exact),
                exact=c.exact,
                selected=selected,
                url=_with(request, status=toggled),
                note=_bound_note(filters, str(labels[c.status]).lower(), c),
            )
        )
    return chips


def _bound_note(filters: queries.Filters, label: str, count: queries.StatusCount) -> str:
    if count.exact:
        return ""
    if filters.q:
        return (
            f"at least {count.count:,}: only the newest {queries.SEARCH_WINDOW:,} "
            "executions that match the search are counted"
        )
    return f"at least {queries.CAP:,}: counting stops there"


def _all_chip(request: HttpRequest, filters: queries.Filters, counts: queries.Counts) -> Chip:
    return Chip(
        status="",
        label="All",
        count=_format_count(counts.total, counts.total_exact),
        exact=counts.total_exact,
        selected=not filters.statuses,
        url=_with(request, status=None),
    )


def _active_filters(request: HttpRequest, filters: queries.Filters) -> list[ActiveFilter]:
    out = []
    if filters.state_machine_arn:
        out.append(
            ActiveFilter(
                "State machine",
                state_machine_name(filters.state_machine_arn),
                _with(request, state_machine=None),
            )
        )
    if filters.version_arn:
        out.append(
            ActiveFilter(
                "Version", versions.label(filters.version_arn), _with(request, version=None)
            )
        )
    if filters.alias_arn:
        out.append(
            ActiveFilter("Alias", versions.label(filters.alias_arn), _with(request, alias=None))
        )
    if filters.accounts:
        out.append(
            ActiveFilter(
                "Account" if len(filters.accounts) == 1 else "Accounts",
                ", ".join(places.account_label(a) for a in filters.accounts),
                _with(request, account=None),
            )
        )
    if filters.regions:
        out.append(
            ActiveFilter(
                "Region" if len(filters.regions) == 1 else "Regions",
                ", ".join(filters.regions),
                _with(request, region=None),
            )
        )
    if filters.q:
        out.append(ActiveFilter("Search", filters.q, _with(request, q=None)))
    if filters.started_after:
        out.append(
            ActiveFilter(
                "Started at or after",
                _local(filters.started_after),
                _with(request, started_after=None),
            )
        )
    if filters.started_before:
        out.append(
            ActiveFilter(
                "Started before",
                _local(filters.started_before),
                _with(request, started_before=None),
            )
        )
    if filters.redriven is not None:
        out.append(
            ActiveFilter(
                "Redrive",
                "redriven" if filters.redriven else "not redriven",
                _with(request, redriven=None),
            )
        )
    if filters.error is not None:
        out.append(
            ActiveFilter("Error", filters.error or "(none)", _with(request, failed_error=None))
        )
    if filters.failed_state is not None:
        out.append(
            ActiveFilter(
                "Failed in state",
                filters.failed_state or "(unknown)",
                _with(request, failed_state=None),
            )
        )
    for label, value, name in (
        ("Stopped at or after", filters.stopped_after, "stopped_after"),
        ("Stopped before", filters.stopped_before, "stopped_before"),
    ):
        if value:
            out.append(ActiveFilter(label, _local(value), _with(request, **{name: None})))
    return out


def _local(value: dt.datetime) -> str:
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def _presets(request: HttpRequest) -> list[tuple[str, str]]:
    # Absolute times, so that a shared link shows the same executions later.
    now = timezone.now().replace(microsecond=0)
    return [
        (
            label,
            _with(
                request,
                started_after=iso_z(now - dt.timedelta(seconds=seconds)),
                started_before=None,
            ),
        )
        for label, seconds in PRESETS
    ]
