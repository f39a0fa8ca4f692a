"""The theme a page is drawn in: read once at sign-in into the session, so the
context processor reads the session only (no query per page)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http import HttpRequest

from .models import Theme, UserPreference

log = logging.getLogger(__name__)

SESSION_KEY = "sfnui_theme"


def saved_theme(user: AbstractBaseUser | AnonymousUser) -> str:
    """The user's choice in the database (one query), or "system"."""
    if not user.is_authenticated:
        return Theme.SYSTEM.value
    theme = UserPreference.objects.filter(user_id=user.pk).values_list("theme", flat=True).first()
    return theme if theme in Theme.values else Theme.SYSTEM.value


def save_theme(request: HttpRequest, theme: str) -> None:
    UserPreference.objects.update_or_create(user_id=request.user.pk, defaults={"theme": theme})
    request.session[SESSION_KEY] = theme


def current_theme(request: HttpRequest) -> str:
    """The theme of the signed-in user of this request, "system" for anyone else."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Theme.SYSTEM.value
    session = getattr(request, "session", None)
    theme = session.get(SESSION_KEY) if session is not None else None
    if theme in Theme.values:
        return str(theme)
    # A session from before sign-in remembered it, or none at all (an API
    # script with Basic auth): read it, and keep it only in a session that
    # exists already (a Basic-auth request must not start one).
    try:
        theme = saved_theme(user)
    except DatabaseError:
        # The page (perhaps the 503 that says the database is away) is still drawn.
        log.warning("the theme could not be read; drawing the system's", exc_info=True)
        return Theme.SYSTEM.value
    if session is not None and session.session_key:
        session[SESSION_KEY] = theme
    return theme


def remember_on_sign_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = saved_theme(user)
