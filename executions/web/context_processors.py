from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from executions.actions import redrive, start, stop
from executions.sync import freshness


def permissions(request: HttpRequest) -> dict[str, Any]:
    # `can_stop` instead of `perms.executions.stop_execution`: one query, and
    # only on pages that ask.
    return {
        "can_stop": SimpleLazyObject(lambda: stop.can_stop(request.user)),
        # The Start and Re-run buttons: one query, only on the pages that show them.
        "can_start": SimpleLazyObject(lambda: start.can_start(request.user)),
        # The bulk redrive link of the list (the detail page sets its own).
        "can_redrive": SimpleLazyObject(lambda: redrive.can_redrive(request.user)),
    }


def sync_status(request: HttpRequest) -> dict[str, Any]:
    # Lazy, and shared for a couple of seconds: the bar costs a page its two
    # queries at most once per SHARED_TTL, and none with Redis.
    return {"sync_status": SimpleLazyObject(freshness.shared)}
