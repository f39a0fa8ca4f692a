"""How fresh the cache is, for the bar on every page: "synced 12 s ago", or a
warning when the sync is failing, throttled or stale."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from .models import SyncRun

# Look this far back for runs that failed since the last good one.
_WINDOW = dt.timedelta(hours=6)


@dataclass(frozen=True)
class SyncStatus:
    last_ok_at: dt.datetime | None
    stale: bool
    failing: bool
    throttled: bool
    unreachable_since: dt.datetime | None
    last_error: str

    @property
    def age_seconds(self) -> float | None:
        if self.last_ok_at is None:
            return None
        return (timezone.now() - self.last_ok_at).total_seconds()

    @property
    def warning(self) -> bool:
        return self.stale or self.failing or self.unreachable_since is not None


def current() -> SyncStatus:
    now = timezone.now()
    last_ok = (
        SyncRun.objects.filter(ok=True, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    since = max(last_ok, now - _WINDOW) if last_ok else now - _WINDOW
    failed = list(
        SyncRun.objects.filter(ok=False, started_at__gte=since)
        .order_by("started_at")
        .values_list("started_at", "error", "throttled")[:500]
    )
    unreachable = [started for started, error, _ in failed if "AWS unreachable" in error]
    stale = last_ok is None or (now - last_ok).total_seconds() > settings.SFNUI_STALE_AFTER
    return SyncStatus(
        last_ok_at=last_ok,
        stale=stale,
        failing=any(not throttled for _, _, throttled in failed),
        throttled=any(throttled for _, _, throttled in failed),
        unreachable_since=unreachable[0] if unreachable else None,
        last_error=failed[-1][1][:500] if failed else "",
    )
