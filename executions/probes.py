"""Whether the services this process needs answer, each probe bounded in
time. Two kinds, one home:

- the probes of /healthz (views/health.py): the database read and written
  (a write rolled back), the broker connected, the cache written and read
  back, the static files' manifest; `run_checks()` runs them side by side
  within CHECK_TIMEOUT;
- the quick probe of the bar on every page (sync/freshness.py, which keeps
  its answer a few seconds): a ping of each Redis the broker and the shared
  cache use, and the filesystem broker's folder writable, within
  SERVICES_TIMEOUT.

May import Django, database/ and redaction.py; never views, web or sync.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.db import DatabaseError, connections, transaction
from django.db.migrations.recorder import MigrationRecorder

from executions.database import busy
from executions.redaction import safe_error

# --- /healthz -------------------------------------------------------------------------

# Each check gets this long; they run side by side, so /healthz answers
# within about this long whatever is down.
CHECK_TIMEOUT = 3.0


class NotWritable(Exception):
    """The database answers reads, but a write does not go through in time."""


class StaticNotCollected(Exception):
    """The hashed static files every page links to are missing."""


def check_database() -> dict[str, Any]:
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


def check_static() -> dict[str, Any]:
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


def check_broker() -> dict[str, Any]:
    from sfnui.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=1, timeout=2)
        return {"transport": conn.transport_cls}


def check_cache() -> dict[str, Any]:
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
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "static": check_static,
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


# --- The bar on every page: the broker and the shared cache -------------------------

# Each check gives up after this long, so a Redis that does not answer (not
# merely refuses) costs a page at most about this, once per SERVICES_TTL.
SERVICES_TIMEOUT = 1.0


def services_down() -> tuple[list[str], str]:
    """(names of what is down, first error)."""
    down: list[str] = []
    errors: list[str] = []
    targets: dict[str, list[str]] = {}
    broker_url = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if broker_url.startswith(("redis://", "rediss://")):
        targets.setdefault(broker_url, []).append("broker")
    elif broker_url.startswith("filesystem://"):
        options: dict[str, Any] = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        folder = str(options.get("data_folder_in", ""))
        if folder and not os.access(folder, os.W_OK):
            down.append("broker")
            errors.append(f"the broker's folder {folder} is not writable")
    cache_settings: dict[str, Any] = dict(settings.CACHES.get("default", {}))
    if str(cache_settings.get("BACKEND", "")).endswith("RedisCache"):
        location = cache_settings.get("LOCATION")
        for url in [location] if isinstance(location, str) else list(location or []):
            targets.setdefault(str(url), []).append("shared cache")
    for url, names in targets.items():
        try:
            _redis(url).ping()
        except Exception as exc:
            down.extend(name for name in names if name not in down)
            errors.append(safe_error(exc))
    return down, errors[0] if errors else ""


@functools.cache
def _redis(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: redis-py's default (three, with backoff) would multiply the timeout.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=SERVICES_TIMEOUT,
        socket_timeout=SERVICES_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
