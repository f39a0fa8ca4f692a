"""Sign-in rate limiting (django-axes): who the client is, and what a person
who is locked out reads (see AXES_* in settings)."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def client_ip(request: HttpRequest) -> str:
    """The connecting address, or, behind SFNUI_PROXY_COUNT proxies, the
    address the outermost of them saw (X-Forwarded-For, read from the right:
    what a client writes on the left itself is never trusted)."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    count: int = settings.SFNUI_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [h.strip() for h in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    hops = [h for h in hops if h]
    if len(hops) < count:
        return remote
    candidate = hops[-count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def _minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def message() -> str:
    return (
        f"Too many failed sign-ins for this user name from your address: sign-in is "
        f"blocked for {_minutes()} minutes. Try again later, or ask an administrator to "
        "lift the block (python manage.py axes_reset_username NAME)."
    )


def locked_out(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with a sentence that says why and for how
    long; JSON for the API (whose scripts sign in with Basic auth)."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": "Too many sign-in failures", "message": message()})
    else:
        response = render(
            request,
            "registration/login.html",
            {"form": AuthenticationForm(request), "locked_out": message()},
        )
    response.status_code = 429
    response["Retry-After"] = retry_after
    return response
