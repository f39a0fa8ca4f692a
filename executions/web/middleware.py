"""`?tz=` in any URL: every time on the page in that zone, so a shared link shows
everyone the same clock."""

from __future__ import annotations

import contextvars
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control

from executions.web.errors import PageError


class TimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = request.GET.get("tz", "").strip()
        request.tz_name = "UTC"  # type: ignore[attr-defined]
        if name:
            try:
                zone = zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                return render(
                    request,
                    "400.html",
                    {
                        "message": f"Unknown time zone {name[:100]!r}. Use an IANA name such as "
                        "UTC, Europe/Berlin or America/New_York."
                    },
                    status=400,
                )
            request.tz_name = name  # type: ignore[attr-defined]
            timezone.activate(zone)
        else:
            timezone.activate(zoneinfo.ZoneInfo("UTC"))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class PageErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, PageError):
            return None
        response: HttpResponse
        if request.path.startswith("/api/") or request.GET.get("format") == "json":
            response = JsonResponse(
                {"error": exception.title, "message": exception.message}, status=exception.status
            )
        else:
            response = render(
                request,
                "error.html",
                {"title": exception.title, "message": exception.message},
                status=exception.status,
            )
        for header, value in exception.headers.items():
            response[header] = value
        return response


class RefusalMessageMiddleware:
    """Some refusals come out of Django with an empty body (405 from
    @require_http_methods and friends): every 4xx says what was wrong."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            400 <= response.status_code < 500
            and request.method != "HEAD"
            and not response.streaming
            and not getattr(response, "content", b"")
        ):
            return self.explain(request, response)
        return response

    @staticmethod
    def explain(request: HttpRequest, refused: HttpResponseBase) -> HttpResponseBase:
        status = refused.status_code
        if status == 405:
            allowed = refused.get("Allow", "")
            title = "Method not allowed"
            message = f"{request.method} is not allowed here" + (
                f"; this address answers {allowed}." if allowed else "."
            )
        else:
            title = refused.reason_phrase
            message = f"The request was refused ({status} {refused.reason_phrase})."
        if request.path.startswith("/api/"):
            response: HttpResponseBase = JsonResponse(
                {"error": title, "message": message}, status=status
            )
        else:
            response = render(
                request, "error.html", {"title": title, "message": message}, status=status
            )
        for header in ("Allow", "WWW-Authenticate", "Retry-After"):
            if header in refused:
                response[header] = refused[header]
        return response


class AdminEmptyToFieldMiddleware:
    """Django's admin answers an empty `_to_field` (in the query or the form)
    with a 500: it looks up a model field named "". Here it is a 400 that
    says so. A process_view, so that a signed-out visitor still meets the
    sign-in first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        if not request.path.startswith(reverse("admin:index")):
            return
        values = request.GET.getlist(TO_FIELD)
        if request.method == "POST":
            values += request.POST.getlist(TO_FIELD)
        if "" in values:
            raise BadRequest(f"{TO_FIELD} is empty: leave it out, or name a field.")


# The admin's parameter naming the field a related object is picked by.
TO_FIELD = "_to_field"


# The request being answered. Read by ratelimit.spend_lookup, deep inside
# views.common.execution_or_404, to charge an AWS lookup to whoever asked.
# The request rather than its user: the API signs a script in with Basic
# auth inside the view, after the middleware ran.
current_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "sfnui_current_request", default=None
)


class RequesterMiddleware:
    """Sets `current_request` for the time of the request (after the sign-in
    middleware, so that it holds the user)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)


class PrivatePagesMiddleware:
    """Whatever a signed-in person (or a script with Basic auth) is shown may
    hold executions' input, output and causes: `Cache-Control: private,
    no-store`, so that no shared proxy and no browser cache keeps it.
    Answers to signed-out requests keep their own headers (static files are
    served before this by WhiteNoise; /healthz and the previews say theirs)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response
