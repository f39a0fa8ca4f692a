"""The request type of a view that reads `request.htmx`: django-htmx's
documented typing pattern (HtmxMiddleware sets the attribute on every
request), written once for every view."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
