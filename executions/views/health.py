"""Whether this process can serve: /healthz, for load balancers and
orchestrators (the cache's health, for people, is /sync/: sync_page.py).
Signed out it says ok or fail per check; signed in, what each check found.
The checks themselves are in executions/probes.py."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from executions import probes
from executions.redaction import safe_error
from executions.sync import freshness


@login_not_required
@require_http_methods(["GET", "HEAD"])
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Whether this process is ready; to a signed-in person, also what each
    check found (vendor, transport, backend, errors, timings) and the sync's
    freshness. Signed out (a load balancer, anyone on the network) it is
    ok or not per check, nothing that names the software or an address."""
    checks = probes.run_checks()
    ready = all(checks[name]["ok"] for name in probes.REQUIRED)
    status = 200 if ready else 503
    body: dict[str, Any] = {"status": "ok" if ready else "fail"}
    if not ready:
        failing = [name for name in probes.REQUIRED if not checks[name]["ok"]]
        plural = "s" if len(failing) > 1 else ""
        body["message"] = f"Not ready: the {' and '.join(failing)} check{plural} failed."
    if not _signed_in(request):
        body.update({name: {"ok": check["ok"]} for name, check in checks.items()})
        return JsonResponse(body, status=status)
    body.update(checks)
    # A stale sync (AWS down, throttling) is reported, not a reason to take
    # this process out of service: the pages still serve the cache.
    body["sync"] = _sync_summary() if checks["database"]["ok"] else {"error": "no database"}
    return JsonResponse(body, status=status)


def _signed_in(request: HttpRequest) -> bool:
    try:
        return bool(request.user.is_authenticated)
    except DatabaseError:
        # The session cannot be read: the database is down, as the checks say.
        return False


def _sync_summary() -> dict[str, Any]:
    try:
        current = freshness.current()
    except Exception as exc:
        return {"error": safe_error(exc)}
    return {
        "last_ok_at": current.last_ok_at.isoformat() if current.last_ok_at else None,
        "age_seconds": round(current.age_seconds, 1) if current.age_seconds is not None else None,
        "stale": current.stale,
        "failing": current.failing,
        "throttled": current.throttled,
    }
