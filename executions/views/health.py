"""How healthy the cache is (/sync/, for people) and whether this process can
serve (/healthz, for load balancers and orchestrators)."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connections
from django.db.models import Count, Max, Min, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from .. import budget, status
from ..models import Execution, StateMachine, SyncRun

# --- /sync/ ---------------------------------------------------------------------------

WINDOWS = (("5 min", dt.timedelta(minutes=5)), ("1 h", dt.timedelta(hours=1)))
FAILING_RUNS = 50
SYNC_ERRORS = 20
MACHINES = 1000


@dataclass
class RegionHealth:
    region: str
    configured: bool
    last_run: SyncRun | None = None
    last_ok_at: dt.datetime | None = None


@dataclass
class Usage:
    operation: str
    calls: list[int]  # per window in WINDOWS
    budgets: list[float]  # per window: our share of AWS's rate times the window
    level: float | None = None  # tokens in our bucket now; None when unknown
    capacity: float = 0.0

    @property
    def per_window(self) -> list[tuple[int, float, float | None]]:
        """(calls, budget, share of the budget spent) per window."""
        return [
            (calls, allowed, calls / allowed if allowed else None)
            for calls, allowed in zip(self.calls, self.budgets, strict=True)
        ]


@dataclass
class RegionUsage:
    region: str
    operations: list[Usage] = field(default_factory=list)


@require_GET
def sync_health(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    regions = _regions()
    overall = status.current()
    context: dict[str, Any] = {
        "overall": overall,
        # The bar at the top shows the same: read it once.
        "sync_status": overall,
        "regions": _region_health(regions),
        "machines": _machines(),
        "failing_runs": list(
            SyncRun.objects.filter(ok=False)
            .select_related("state_machine")
            .order_by("-started_at")[:FAILING_RUNS]
        ),
        "backlog": Execution.objects.filter(sync_due_at__isnull=False).aggregate(
            due=Count("id", filter=Q(sync_due_at__lte=now)),
            scheduled=Count("id"),
            oldest_due=Min("sync_due_at", filter=Q(sync_due_at__lte=now)),
        ),
        "now": now,
        "stale_after": settings.SFNUI_STALE_AFTER,
        "api_share": settings.SFNUI_API_SHARE,
        "windows": [label for label, _ in WINDOWS],
    }
    context.update(_sync_errors())
    usage, runs_last_hour, level_error = _usage(regions, now)
    context.update(usage=usage, runs_last_hour=runs_last_hour, level_error=level_error)
    return render(request, "executions/sync.html", context)


def _regions() -> list[str]:
    """The configured regions, then any other region the cache holds state machines of
    (executions looked up by ARN from elsewhere)."""
    configured = list(settings.SFNUI_REGIONS)
    others = sorted(
        set(StateMachine.objects.order_by().values_list("region", flat=True).distinct())
        - set(configured)
    )
    return configured + others


def _region_health(regions: list[str]) -> list[RegionHealth]:
    per_region = {
        row["region"]: row
        for row in SyncRun.objects.filter(kind=SyncRun.Kind.DISCOVER)
        .order_by()
        .values("region")
        .annotate(last_id=Max("id"), last_ok=Max("finished_at", filter=Q(ok=True)))
    }
    last_runs = SyncRun.objects.in_bulk([row["last_id"] for row in per_region.values()])
    out = []
    for region in regions:
        row = per_region.get(region)
        out.append(
            RegionHealth(
                region=region,
                configured=region in settings.SFNUI_REGIONS,
                last_run=last_runs.get(row["last_id"]) if row else None,
                last_ok_at=row["last_ok"] if row else None,
            )
        )
    return out


def _machines() -> list[StateMachine]:
    machines = list(
        StateMachine.objects.only(
            "arn",
            "name",
            "region",
            "status",
            "listed_at",
            "list_due_at",
            "list_interval",
            "list_error",
        ).order_by("name")[:MACHINES]
    )
    # Failing first, then the ones listed longest ago: what needs a look.
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    machines.sort(
        key=lambda sm: (
            not sm.list_error,
            sm.status == "DELETED",
            sm.listed_at or epoch,
        )
    )
    return machines


def _sync_errors() -> dict[str, Any]:
    # An execution with a sync error is always due again (sync._failed and
    # _reschedule set both), so the partial index on sync_due_at serves this.
    failing = Execution.objects.filter(sync_due_at__isnull=False).exclude(sync_error="")
    return {
        "sync_error_count": failing.count(),
        "sync_errors": list(
            failing.select_related("state_machine")
            .only(
                "arn",
                "name",
                "status",
                "sync_error",
                "sync_failures",
                "sync_due_at",
                "synced_at",
                "state_machine__name",
                "state_machine__arn",
            )
            .order_by("-sync_failures", "sync_due_at")[:SYNC_ERRORS]
        ),
    }


def _usage(regions: list[str], now: dt.datetime) -> tuple[list[RegionUsage], Counter[str], str]:
    """API calls the sync spent per region and operation in each window, against
    its budget, and what is left in the bucket now."""
    longest = max(window for _, window in WINDOWS)
    spent: dict[str, list[Counter[str]]] = defaultdict(lambda: [Counter() for _ in WINDOWS])
    runs: Counter[str] = Counter()
    recent = (
        SyncRun.objects.filter(started_at__gte=now - longest)
        .order_by()
        .values_list("region", "started_at", "api_calls", "ok", "throttled")
    )
    for region, started_at, calls, ok, throttled in recent.iterator(chunk_size=2000):
        runs["throttled" if throttled else "ok" if ok else "failed"] += 1
        if not isinstance(calls, dict):
            continue
        for i, (_, window) in enumerate(WINDOWS):
            if started_at >= now - window:
                spent[region][i].update(
                    {str(op): int(n) for op, n in calls.items() if isinstance(n, int)}
                )
    level_error = ""
    out = []
    for region in regions:
        if region not in settings.SFNUI_REGIONS and region not in spent:
            continue
        operations = sorted(
            set(settings.SFNUI_API_QUOTAS) | {op for c in spent[region] for op in c}
        )
        usage = RegionUsage(region)
        for op in operations:
            b = budget.bucket(region, op)
            row = Usage(
                operation=op,
                calls=[spent[region][i][op] for i in range(len(WINDOWS))],
                budgets=[b.rate * window.total_seconds() for _, window in WINDOWS],
                capacity=b.capacity,
            )
            if not level_error:
                try:
                    row.level, row.capacity = budget.level(region, op)
                except Exception as exc:
                    # Redis (or the database) is down: one failure is enough,
                    # do not wait on each bucket.
                    level_error = _safe_error(exc)
            usage.operations.append(row)
        out.append(usage)
    return out, runs, level_error


# --- /healthz -------------------------------------------------------------------------

# Each check gets this long; they run side by side, so /healthz answers
# within about this long whatever is down.
CHECK_TIMEOUT = 3.0


def _check_database() -> dict[str, Any]:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # This runs in a thread of its own: do not leave its connection open.
        connection.close()
    return {"vendor": connection.vendor}


def _check_broker() -> dict[str, Any]:
    from sfnui.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=1, timeout=2)
        return {"transport": conn.transport_cls}


def _check_cache() -> dict[str, Any]:
    key = f"healthz:{uuid.uuid4().hex}"
    value = uuid.uuid4().hex
    try:
        cache.set(key, value, timeout=30)
        if cache.get(key) != value:
            raise RuntimeError("the value written was not read back")
    finally:
        try:
            cache.delete(key)
        finally:
            connections.close_all()
    return {"backend": type(cache).__name__}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": _check_database,
    "broker": _check_broker,
    "cache": _check_cache,
}


def run_checks(timeout: float | None = None) -> dict[str, dict[str, Any]]:
    """Every check in a thread of its own, side by side; a check that has not
    answered by the deadline is a failure (its thread is left to finish)."""
    timeout = CHECK_TIMEOUT if timeout is None else timeout
    results: dict[str, dict[str, Any]] = {}
    threads = {}

    def run(name: str, check: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            outcome = {"ok": True, **check()}
        except Exception as exc:
            outcome = {"ok": False, "error": _safe_error(exc)}
        outcome["ms"] = round((time.monotonic() - started) * 1000, 1)
        results[name] = outcome

    for name, check in CHECKS.items():
        thread = threading.Thread(
            target=run, args=(name, check), name=f"healthz-{name}", daemon=True
        )
        thread.start()
        threads[name] = thread
    deadline = time.monotonic() + timeout
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    return {
        name: dict(results.get(name) or {"ok": False, "error": f"no answer within {timeout:g} s"})
        for name in CHECKS
    }


@login_not_required
@require_http_methods(["GET", "HEAD"])
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    checks = run_checks()
    ready = checks["database"]["ok"] and checks["broker"]["ok"]
    body: dict[str, Any] = {"status": "ok" if ready else "fail", **checks}
    # A stale sync (AWS down, throttling) is reported, not a reason to take
    # this process out of service: the pages still serve the cache.
    body["sync"] = _sync_summary() if checks["database"]["ok"] else {"error": "no database"}
    return JsonResponse(body, status=200 if ready else 503)


def _sync_summary() -> dict[str, Any]:
    try:
        current = status.current()
    except Exception as exc:
        return {"error": _safe_error(exc)}
    return {
        "last_ok_at": current.last_ok_at.isoformat() if current.last_ok_at else None,
        "age_seconds": round(current.age_seconds, 1) if current.age_seconds is not None else None,
        "stale": current.stale,
        "failing": current.failing,
        "throttled": current.throttled,
    }


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)


def _safe_error(exc: BaseException) -> str:
    """The error's type and first line, with any credentials in URLs blanked out:
    never a stack trace or a password in a response."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = _CREDENTIALS.sub(r"\g<scheme>***@", first_line)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
