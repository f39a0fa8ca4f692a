"""Who may call the JSON API: a signed-in session, or HTTP Basic credentials of
a Django user (scripts). Anyone else gets a 401 that says so, not the login page.
And who may read the audit of stop attempts."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse

from executions.actions import stop

REALM = "sfnui"
ALLOWED_METHODS = ("GET", "HEAD")

View = Callable[..., HttpResponse]


def basic_auth_user(request: HttpRequest) -> AbstractBaseUser | None:
    """The active user named by an `Authorization: Basic` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        return None
    return user


def unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": "Unauthorized", "message": message}, status=401)
    response["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return response


def api_view(view: View) -> View:
    """GET (and HEAD) only, with a session or Basic auth; JSON errors."""

    @login_not_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ALLOWED_METHODS:
            response = JsonResponse(
                {
                    "error": "Method not allowed",
                    "message": f"{request.method} is not allowed here; the API is read-only (GET).",
                },
                status=405,
            )
            response["Allow"] = ", ".join(ALLOWED_METHODS)
            return response
        if not request.user.is_authenticated:
            if "Authorization" in request.headers:
                user = basic_auth_user(request)
                if user is None:
                    return unauthorized("Wrong username or password (HTTP Basic auth).")
            else:
                return unauthorized(
                    "Sign in, or send the username and password of a user with HTTP Basic auth "
                    "(curl -u user:password ...)."
                )
            # For this request only: Basic auth opens no session.
            request.user = user  # type: ignore[assignment]
        return view(request, *args, **kwargs)

    return wrapped


# --- Who may read the audit -------------------------------------------------------------------

AUDIT_PERMISSION = "executions.view_stoprequest"


def can_read_audit(user: Any) -> bool:
    """The audit (every stop attempt, with the causes people typed) and the
    progress of bulk stops are for those who may stop executions, and for
    those granted “Can view stop request” (auditors who may not stop)."""
    if stop.can_stop(user):
        return True
    if not getattr(user, "is_active", False):
        return False
    # One query, as can_stop: has_perm would load all of the user's and groups' permissions.
    app_label, codename = AUDIT_PERMISSION.split(".")
    return (
        Permission.objects.filter(codename=codename, content_type__app_label=app_label)
        .filter(Q(user=user) | Q(group__user=user))
        .exists()
    )


def refuse_audit(user: Any) -> PermissionDenied:
    return PermissionDenied(
        "The audit of stop attempts, and the progress of bulk stops, are for people who may "
        f"stop executions ({stop.PERMISSION}) or read the audit ({AUDIT_PERMISSION}, "
        "“Can view stop request”). A bulk stop's own author may follow it. Ask an "
        f"administrator to grant one of them to {user.get_username()}."
    )


def audit_readers_only(view: View) -> View:
    """The view, for those who may read the audit; a 403 that says why for others."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_read_audit(request.user):
            raise refuse_audit(request.user)
        return view(request, *args, **kwargs)

    return wrapped
