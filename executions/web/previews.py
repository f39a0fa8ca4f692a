"""Link previews for chat tools, which cannot sign in.

The execution, history and list pages carry Open Graph and Twitter-card tags
for everyone signed in. With SFNUI_PUBLIC_PREVIEWS on, a request without a
session gets a minimal page instead of the login redirect: those tags and a
sign-in link, never input, output, cause or anything else. It reads the cache
only: an ARN the cache lacks is not looked up in AWS for an anonymous caller.
Each client address gets SFNUI_PREVIEW_LIMIT of them a minute (then a 429).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import timezone

from executions.arns import NotAnArn, parse_execution_arn
from executions.history import progress
from executions.models import Execution
from executions.reads import queries
from executions.sync import freshness
from executions.text import incident, link_preview
from executions.web import ratelimit
from executions.web.forms import ExecutionFilterForm

View = Callable[..., HttpResponse]


def previewable(preview: View) -> Callable[[View], View]:
    """Signed in: the page. Signed out: the login redirect, as for every other
    page, or, with SFNUI_PUBLIC_PREVIEWS, the preview page `preview`."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.user.is_authenticated:
                return view(request, *args, **kwargs)
            if not settings.SFNUI_PUBLIC_PREVIEWS:
                return redirect_to_login(request.get_full_path())
            if request.method not in ("GET", "HEAD"):
                return HttpResponseNotAllowed(["GET", "HEAD"])
            # Before anything is read: a script enumerating names gets as
            # few answers as a chat tool needs.
            wait = ratelimit.preview_wait(request)
            if wait:
                response = _minimal(
                    request, None, status_code=429, message=ratelimit.preview_refusal(wait)
                )
                response["Retry-After"] = str(int(wait))
            else:
                response = preview(request, *args, **kwargs)
            # Never indexed; and never served from a cache to someone signed in.
            response["X-Robots-Tag"] = "noindex, nofollow"
            response["Cache-Control"] = "private, no-cache"
            return response

        return login_not_required(wrapper)

    return decorate


def page_url(request: HttpRequest) -> str:
    """og:url: this page's absolute address (SFNUI_BASE_URL, or the request's)."""
    return incident.base_url(request) + request.get_full_path()


def execution_preview(request: HttpRequest, ex: Execution) -> link_preview.Preview:
    """The preview of an execution page (detail or history); 1 to 3 queries."""
    return link_preview.execution_preview_text(
        ex,
        url=page_url(request),
        now=timezone.now(),
        failure=progress.failure_point(ex),
        open_states=progress.open_states(ex),
    )


def _minimal(
    request: HttpRequest,
    preview: link_preview.Preview | None,
    synced_at: Any = None,
    status_code: int = 200,
    message: str = "",
) -> HttpResponse:
    return render(
        request,
        "executions/preview.html",
        {
            "preview": preview,
            "synced_at": synced_at,
            "message": message,
            "login_url": f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}",
        },
        status=status_code,
    )


def execution_page_preview(request: HttpRequest, arn: str) -> HttpResponse:
    """Signed out, an execution's detail or history page: from the cache only."""
    try:
        parse_execution_arn(arn)
    except NotAnArn:
        return _minimal(request, None, status_code=404)
    ex = Execution.objects.select_related("state_machine").filter(arn=arn).first()
    if ex is None:
        return _minimal(request, None, status_code=404)
    return _minimal(request, execution_preview(request, ex), synced_at=ex.synced_at)


def list_preview(
    request: HttpRequest, filters: queries.Filters, counts: queries.Counts
) -> link_preview.Preview:
    name = ""
    if filters.state_machine_arn:
        name = filters.state_machine_arn.rsplit(":", 1)[-1]
    return link_preview.list_preview_text(
        url=page_url(request),
        statuses=filters.statuses,
        state_machine=name,
        q=filters.q,
        started_after=filters.started_after,
        started_before=filters.started_before,
        counts=[(c.status, c.count, c.exact) for c in counts.by_status],
    )


def list_page_preview(request: HttpRequest) -> HttpResponse:
    """Signed out, the list: the filters it was asked for, and nothing that
    depends on what the cache holds. Counts per filter were an oracle: a
    script walked an execution's name out of `?q=` one character at a time.
    A link to a list unfurls as what it asks for; who follows it signs in
    to see the answer."""
    form = ExecutionFilterForm(request.GET)
    if not form.is_valid():
        return _minimal(request, None, status_code=400)
    filters = form.filters()
    # The title names the statuses and the state machine of the URL itself
    # (the latter from its ARN, not from the cache).
    title = list_preview(request, filters, queries.Counts()).title
    preview = link_preview.Preview(
        title=title, description=SIGNED_OUT_LIST_DESCRIPTION, url=page_url(request)
    )
    return _minimal(request, preview, synced_at=freshness.current().last_ok_at)


# The same for every list link, whatever its filters.
SIGNED_OUT_LIST_DESCRIPTION = "Executions filtered by this link: sign in to see them"
