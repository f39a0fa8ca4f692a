"""When the database is busy: another writer holds the lock a write needs
(SQLite has one for the whole file, held by the sync, a migration or a
script; on PostgreSQL a long transaction or a migration holds rows or
tables). Reads never wait for it; a page's writes wait only briefly.

- A write a page can do without (marking a watched execution due) waits
  `BEST_EFFORT_WAIT` and is skipped: `best_effort`.
- Sign-in must write (its session, last_login, django-axes' failure count):
  it waits `SIGN_IN_WAIT`, then answers 503 "the database is busy"
  (`DatabaseBusyMiddleware`); so does any other page whose write finds the
  database busy, instead of a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, OperationalError, connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

log = logging.getLogger(__name__)

# Seconds a write a page makes on the side waits for a lock before it is
# skipped: the sync's own transactions take milliseconds.
BEST_EFFORT_WAIT = 0.5
# Seconds sign-in waits for a lock before it answers 503.
SIGN_IN_WAIT = 3.0
# What a 503 asks the browser or script to wait before trying again.
RETRY_AFTER = 10

# PostgreSQL: lock_timeout ran out; statement_timeout ran out.
_PG_BUSY = {"55P03", "57014"}
_PG_SET = "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)"


@contextmanager
def lock_wait(seconds: float, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Statements of this connection in the block wait at most `seconds` for a
    lock, then fail with an OperationalError that `is_busy` recognises;
    after the block the connection waits as configured again (a worker's
    sync, on the same connection later, must keep queueing for the lock).

    SQLite: the connection's busy timeout. PostgreSQL: lock_timeout and
    statement_timeout, local to a transaction (or savepoint) the block runs
    in; a failure rolls it back.
    """
    connection = connections[using]
    ms = max(1, round(seconds * 1000))
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            previous = int(cursor.fetchone()[0])
            cursor.execute(f"PRAGMA busy_timeout = {ms:d}")
        try:
            yield
        finally:
            if connection.connection is not None:
                with connection.cursor() as cursor:
                    cursor.execute(f"PRAGMA busy_timeout = {previous:d}")
    elif connection.vendor == "postgresql":
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
                )
                previous_pg = list(cursor.fetchone())
                cursor.execute(_PG_SET, [f"{ms}ms", f"{ms}ms"])
            yield
            # In a transaction of the caller's, the rest of it waits as before
            # (a transaction that is to be rolled back forgets the SET anyway).
            if not connection.needs_rollback:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(_PG_SET, previous_pg)
                except DatabaseError:
                    transaction.set_rollback(True, using=using)
    else:
        yield


def is_busy(exc: BaseException) -> bool:
    """Whether a database error is a lock wait (or a statement) that ran out of time."""
    if not isinstance(exc, OperationalError):
        return False
    if getattr(exc.__cause__, "sqlstate", None) in _PG_BUSY:
        return True
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text


@contextmanager
def best_effort(what: str, wait: float = BEST_EFFORT_WAIT) -> Iterator[None]:
    """For a write a page can do without: it waits `wait` for a lock at most,
    and a database error skips it (the block's transaction rolled back), with
    a warning saying what was not done; the page goes on."""
    guard: AbstractContextManager[None] = lock_wait(wait)
    try:
        guard.__enter__()
    except DatabaseError as exc:
        # Setting the wait already failed (the connection ended, the database
        # restarted): the block still runs, once, and its write fails or goes
        # through on a fresh connection; either way the page goes on.
        _skipped(what, exc)
        guard = nullcontext()
    try:
        with _exiting(guard):
            yield
    except DatabaseError as exc:
        _skipped(what, exc)


@contextmanager
def _exiting(entered: AbstractContextManager[None]) -> Iterator[None]:
    """Leave a context manager that was entered already, as `with` would."""
    with ExitStack() as stack:
        stack.push(entered)
        yield


def _skipped(what: str, exc: DatabaseError) -> None:
    if is_busy(exc):
        log.warning("the database is busy: did not %s (%s)", what, exc)
    else:
        log.warning("could not %s", what, exc_info=True)


def busy_response(request: HttpRequest) -> HttpResponse:
    title = "The database is busy"
    message = (
        "Another process holds the database's write lock (a migration, a script, "
        "a long sync), and this request has to write. Nothing was changed: "
        f"try again in {RETRY_AFTER} seconds or so."
    )
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": title, "message": message}, status=503)
    else:
        response = render(request, "error.html", {"title": title, "message": message}, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


class DatabaseBusyMiddleware:
    """Sign-in waits SIGN_IN_WAIT for a lock, not the 30 s of SQLite's busy
    timeout (or, on PostgreSQL, for ever); a page whose write finds the
    database busy answers 503 with `busy_response`, not 500.

    Before SessionMiddleware, so that the short wait covers the session's
    save after the view too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.sign_in_paths = {str(settings.LOGIN_URL), "/admin/login/"}

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.method == "POST" and request.path_info in self.sign_in_paths:
            with lock_wait(SIGN_IN_WAIT):
                return self.get_response(request)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_busy(exception):
            return None
        log.warning("the database is busy: %s %s answered 503", request.method, request.path)
        return busy_response(request)
