"""The error pages Django renders itself (handler400, 403, 404 and 500): the
site's own pages, and safe with a request Django refused.

Django's default views are wrapped in `requires_csrf_token`, which runs the
CSRF check again and with it parses the body again: a form posted in another
charset than UTF-8 raised `BadRequest` a second time inside the 400 handler
and ended in a bare "Internal Server Error". These never read the body; if
the page cannot be drawn (say, the database is away), a plain one is sent.
"""

from __future__ import annotations

import logging

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.utils.html import escape

log = logging.getLogger(__name__)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # BadRequest's text is written for the sender ("... must be UTF-8
    # encoded"); the SuspiciousOperation family's is for the logs.
    message = str(exception) if type(exception) is BadRequest else ""
    return _page(request, "400.html", 400, "Bad request", message)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _page(request, "403.html", 403, "Not allowed", str(exception))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Django's rule: the exception's message if it is text (not the
    # resolver's dictionary of what it tried).
    message = exception.args[0] if exception.args and isinstance(exception.args[0], str) else ""
    return _page(request, "404.html", 404, "Not found", message)


def server_error(request: HttpRequest) -> HttpResponse:
    # No request context: whatever failed (the database, a context
    # processor) must not fail the error page too.
    try:
        return HttpResponse(loader.render_to_string("500.html"), status=500)
    except Exception:
        log.exception("the 500 page could not be drawn")
        return _plain(500, "Something went wrong", "The error was logged; try again in a moment.")


def _page(
    request: HttpRequest, template: str, status: int, title: str, message: str
) -> HttpResponse:
    try:
        html = loader.render_to_string(template, {"exception": message}, request)
    except Exception:
        log.exception("the %s page could not be drawn", status)
        return _plain(status, title, message)
    return HttpResponse(html, status=status)


def _plain(status: int, title: str, message: str) -> HttpResponse:
    body = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · sfnui</title></head>\n<body><h1>{escape(title)}</h1>"
        f'<p>{escape(message)}</p><p><a href="/executions/">Back to the executions</a></p>'
        f"</body></html>\n"
    )
    return HttpResponse(body, status=status)
