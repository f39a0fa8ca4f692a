"""What the watch panel shows (who watches, what the posts became): built
by the views (detail, watch) for the `{% watch_panel %}` tag, which only
renders it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from executions.actions import watch
from executions.models import Execution, Watch, WatchNotification

# The newest watches of an execution shown with it (people, so never many).
WATCHES_SHOWN = 50
# A finished execution's panel refreshes this often until its post is settled.
POLL_SECONDS = 3


def panel_context(request: HttpRequest | None, ex: Execution) -> dict[str, Any]:
    """What _watch.html shows: who waits for the end of a running execution,
    and for a finished one, what the posts that told of it became. One query."""
    user_id = getattr(getattr(request, "user", None), "pk", None)
    watchers: list[Watch] = []
    by_notification: dict[int, WatchNotification] = {}
    claimed: dict[int, list[Watch]] = {}
    for w in (
        Watch.objects.filter(execution=ex)
        .select_related("notification")
        .order_by("-created_at")[:WATCHES_SHOWN]
    ):
        if w.notification is None:
            watchers.append(w)
        else:
            by_notification[w.notification.pk] = w.notification
            claimed.setdefault(w.notification.pk, []).append(w)
    notifications = sorted(by_notification.values(), key=lambda n: n.created_at, reverse=True)
    # Finished, and the post not settled yet (to come, or being retried):
    # the panel refreshes itself until it is.
    settling = not ex.is_open and (
        bool(watchers) or any(n.sent_at is None and n.gave_up_at is None for n in notifications)
    )
    return {
        "ex": ex,
        "request": request,
        "watch_enabled": watch.enabled(),
        "watchers": watchers[::-1],
        "watching": any(w.user_id == user_id for w in watchers),
        "notifications": [(n, claimed[n.pk][::-1]) for n in notifications],
        "max_attempts": watch.MAX_ATTEMPTS,
        "settling": settling,
        "poll_seconds": POLL_SECONDS,
    }
