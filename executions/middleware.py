"""`?tz=` in any URL: every time on the page in that zone, so a shared link shows
everyone the same clock."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


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


class PageError(Exception):
    """An error a person should read: rendered as a page with this status, never a 500."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class PageErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, PageError):
            return None
        if request.path.startswith("/api/") or request.GET.get("format") == "json":
            from django.http import JsonResponse

            return JsonResponse(
                {"error": exception.title, "message": exception.message}, status=exception.status
            )
        return render(
            request,
            "error.html",
            {"title": exception.title, "message": exception.message},
            status=exception.status,
        )
