"""When the database does not answer: it restarted or is unreachable (new
connections refused, open ones ended), it has no connection left for us (a
role's or the server's limit), or a statement ran past the web process's
statement timeout. A page then answers 503 with a message and
`Retry-After`, drawn without the database, never a 500; the next request
after it is back connects again (CONN_HEALTH_CHECKS finds the dead
connection and opens a new one).

A lock another writer holds is busy.py's: sign-in and the writes a page
makes on the side wait briefly there, and a POST that finds the database
busy is answered by `busy.DatabaseBusyMiddleware`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.template import loader
from django.utils.html import escape

log = logging.getLogger(__name__)

# What a 503 asks the browser or script to wait before trying again.
RETRY_AFTER = 5

TITLE = "Database unavailable"
GONE = "The database is not answering; try again in a few seconds."
# PostgreSQL's SQLSTATEs for a statement that ran out of time: statement_timeout,
# lock_timeout.
_TIMED_OUT = {"57014", "55P03"}


def outage(exc: BaseException) -> str:
    """What a database error says of the database: "gone", "slow", or "" when
    it is not about the database being there and quick (a bug, a
    constraint: those stay errors)."""
    if isinstance(exc, InterfaceError | psycopg.InterfaceError):
        return "gone"  # a connection the driver already knows is closed
    cause: BaseException | None
    if isinstance(exc, psycopg.OperationalError):
        # Raised outside Django's error wrapper: closing a server-side cursor
        # (QuerySet.iterator() on PostgreSQL) when the connection broke.
        cause = exc
    elif isinstance(exc, OperationalError):
        cause = exc.__cause__
    else:
        return ""
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate in _TIMED_OUT:
        return "slow"
    if cause is not None and type(cause).__module__.startswith("psycopg"):
        # No SQLSTATE: the connection failed or broke (refused, reset, closed,
        # the role's or the server's connection limit at connect). 08:
        # connection exceptions; 53: out of resources (too many connections);
        # 57P: the server shutting down, or ending this connection.
        if sqlstate is None or sqlstate.startswith(("08", "53", "57P")):
            return "gone"
        return ""
    text = str(exc)
    if "database is locked" in text or "database table is locked" in text:
        return "slow"  # SQLite: its busy timeout ran out
    if "unable to open database file" in text or "disk I/O error" in text:
        return "gone"
    return ""


def answer(request: HttpRequest, kind: str) -> HttpResponse:
    """The 503: JSON for the API, else a page drawn without the database (no
    request context: its processors query)."""
    if kind == "slow":
        seconds = settings.SFNUI_DB_STATEMENT_TIMEOUT
        within = f" within {seconds:g} s" if seconds > 0 else ""
        message = (
            f"The database did not answer in time{within} (a migration or a long "
            "transaction may hold what this page reads); try again in a few seconds."
        )
    else:
        message = GONE
    if request.method not in ("GET", "HEAD"):
        message += " If you sent a form, check whether it took effect before sending it again."
    response: HttpResponse
    if request.path.startswith("/api/") or request.GET.get("format") == "json":
        response = JsonResponse({"error": TITLE, "message": message}, status=503)
    else:
        html: str
        try:
            html = loader.render_to_string("503.html", {"title": TITLE, "message": message})
        except Exception:
            log.exception("the 503 page could not be drawn")
            html = f"<!doctype html>\n<title>{TITLE}</title><h1>{TITLE}</h1><p>{escape(message)}"
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    # An outage page must not be kept by a proxy or the browser.
    response["Cache-Control"] = "no-store"
    return response


def set_statement_timeout(sender: Any, connection: Any, **kwargs: Any) -> None:
    """connection_created: the web process's statement timeout on each new
    PostgreSQL connection."""
    seconds = settings.SFNUI_DB_STATEMENT_TIMEOUT
    if connection.vendor == "postgresql" and seconds > 0:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                [f"{max(1, round(seconds * 1000))}ms"],
            )


class DatabaseUnavailableMiddleware:
    """503 instead of 500 when the database is gone or too slow (see above).

    After AuthenticationMiddleware: the signed-in user is loaded here, the
    first query of most requests (session, then user), where a failure can
    still be answered; raised later inside LoginRequiredMiddleware, Django
    would make it a 500. A query of the view failing the same way comes to
    `process_exception`.

    Only processes that serve pages load middleware, so the statement timeout
    (SFNUI_DB_STATEMENT_TIMEOUT) is set here for theirs alone: the worker's
    sync and manage.py (migrate) are not bounded by it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        connection_created.connect(
            set_statement_timeout, dispatch_uid="sfnui-web-statement-timeout"
        )

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is not None:
            try:
                user.is_authenticated  # noqa: B018 (loads the session and the user)
            except (DatabaseError, psycopg.Error) as exc:
                kind = outage(exc)
                if not kind:
                    raise
                return self.unavailable(request, kind, exc)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        kind = outage(exception)
        if not kind or (kind == "slow" and request.method not in ("GET", "HEAD")):
            # A write that found a lock: busy.DatabaseBusyMiddleware says so.
            return None
        return self.unavailable(request, kind, exception)

    @staticmethod
    def unavailable(request: HttpRequest, kind: str, exc: BaseException) -> HttpResponse:
        log.warning(
            "the database is %s: %s %s answered 503 (%s)",
            "too slow" if kind == "slow" else "not answering",
            request.method,
            request.path,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
        return answer(request, kind)
