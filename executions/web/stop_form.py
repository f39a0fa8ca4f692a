"""What the stop pages (one execution, and bulk) share: who may stop, the
default cause, and AWS's limits on a stop's error and cause."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from executions.actions import stop

ERROR_MAX = 256  # AWS's limits for StopExecution
CAUSE_MAX = 32_768


def stop_permission(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """permission_required(..., raise_exception=True), with a 403 page that says
    which permission is missing."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not stop.can_stop(request.user):
            raise PermissionDenied(
                "Stopping executions needs the permission “Can stop a running execution” "
                f"({stop.PERMISSION}). Ask an administrator to grant it to "
                f"{request.user.get_username()}."
            )
        return view(request, *args, **kwargs)

    return wrapped


def default_cause(username: str, now: dt.datetime | None = None) -> str:
    now = (now or timezone.now()).astimezone(dt.UTC)
    return f"Stopped by {username} via sfnui at {now:%Y-%m-%d %H:%M:%S} UTC"
