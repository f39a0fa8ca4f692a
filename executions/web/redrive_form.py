"""What the redrive pages (one execution, and bulk) share: who may redrive."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from executions.actions import redrive


def redrive_permission(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """permission_required(..., raise_exception=True), with a 403 page that says
    which permission is missing."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not redrive.can_redrive(request.user):
            raise PermissionDenied(
                "Redriving executions needs the permission “Can redrive a failed, timed-out or "
                f"aborted execution” ({redrive.PERMISSION}). Ask an administrator to grant it "
                f"to {request.user.get_username()}."
            )
        return view(request, *args, **kwargs)

    return wrapped
