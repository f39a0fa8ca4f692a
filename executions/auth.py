"""Who may call the JSON API: a signed-in session, or HTTP Basic credentials of
a Django user (scripts). Anyone else gets a 401 that says so, not the login page."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse

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
