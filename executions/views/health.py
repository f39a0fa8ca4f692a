"""Whether this process can serve: /healthz, for load balancers and
orchestrators (the cache's health, for people, is /sync/: sync_page.py).
Signed out it says ok or fail per check; signed in, what each check found."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import DatabaseError, connections, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from executions.database import busy
from executions.sync import freshness
from executions.web.common import safe_error

# --- /healthz -------------------------------------------------------------------------

# Each check gets this long; they run side by side, so /healthz answers
# within about this long whatever is down.
CHECK_TIMEOUT = 3.0


class NotWritable(Exception):
    """The database answers reads, but a write does not go through in time."""


class StaticNotCollected(Exception):
    """The hashed static files every page links to are missing."""


def _check_database() -> dict[str, Any]:
    """A read, then a write that is rolled back: a database locked by another
    writer (a migration, a script, a long sync; SQLite has one lock for the
    whole file) serves no sign-in and no stop. The write waits for the lock
    no longer than the check lasts, then gives up: no thread of this check
    is left queueing for the lock (one that waited SQLite's 30 s held up
    the writers behind it), and it holds the lock for no more than an
    INSERT it takes back."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        try:
            with busy.lock_wait(CHECK_TIMEOUT * 2 / 3), transaction.atomic():
                # A table every Django database has and nothing else writes
                # while serving; the row is never committed.
                MigrationRecorder(connection).Migration.objects.create(
                    app="sfnui-healthz", name="write probe, rolled back"
                )
                transaction.set_rollback(True)
        except DatabaseError as exc:
            raise NotWritable(
                f"the database can be read but cannot be written: {safe_error(exc)}"
            ) from exc
    finally:
        # This runs in a thread of its own: do not leave its connection open.
        connection.close()
    return {"vendor": connection.vendor}


def _check_static() -> dict[str, Any]:
    """With the manifest storage (DEBUG off) every page links to the hashed
    names in the manifest that collectstatic writes: without it each page is
    a 500 ("Missing staticfiles manifest entry"), so this process must not
    look ready. The storage reads the manifest once, when the process
    starts: what it holds is what the pages get."""
    storage = staticfiles_storage
    if not isinstance(storage, ManifestFilesMixin):
        return {"storage": storage.__class__.__name__}
    if not storage.hashed_files:
        raise StaticNotCollected(
            f"the static files are not collected: no {storage.manifest_name} in "
            f"{settings.STATIC_ROOT} when this process started. Run python manage.py "
            "collectstatic --noinput, then restart it."
        )
    return {"storage": storage.__class__.__name__, "files": len(storage.hashed_files)}


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
    "static": _check_static,
}
# Without these this process cannot serve its pages. The cache is not among
# them: a cache that is down slows the sync, the pages still serve.
REQUIRED = ("database", "broker", "static")


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
    """Whether this process is ready; to a signed-in person, also what each
    check found (vendor, transport, backend, errors, timings) and the sync's
    freshness. Signed out (a load balancer, anyone on the network) it is
    ok or not per check, nothing that names the software or an address."""
    checks = run_checks()
    ready = all(checks[name]["ok"] for name in REQUIRED)
    status = 200 if ready else 503
    body: dict[str, Any] = {"status": "ok" if ready else "fail"}
    if not ready:
        failing = [name for name in REQUIRED if not checks[name]["ok"]]
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
