"""Whether this process can serve: /healthz, for load balancers and
orchestrators (the cache's health, for people, is /sync/: sync_page.py)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .. import status

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
    if isinstance(caches["default"], DatabaseCache):
        # The cache is a table of the database: a read proves it answers
        # (WAL readers never wait). A write would queue for the database's
        # write lock, up to its busy timeout (30 s on SQLite), in a thread
        # left behind after the deadline, and hold up the writers behind it.
        try:
            cache.get(key)
        finally:
            connections.close_all()
        return {"backend": type(caches["default"]).__name__}
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
            outcome = {"ok": False, "error": safe_error(exc)}
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
        return {"error": safe_error(exc)}
    return {
        "last_ok_at": current.last_ok_at.isoformat() if current.last_ok_at else None,
        "age_seconds": round(current.age_seconds, 1) if current.age_seconds is not None else None,
        "stale": current.stale,
        "failing": current.failing,
        "throttled": current.throttled,
    }


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)


def safe_error(exc: BaseException) -> str:
    """The error's type and first line, with any credentials in URLs blanked out:
    never a stack trace or a password in a response."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = _CREDENTIALS.sub(r"\g<scheme>***@", first_line)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
