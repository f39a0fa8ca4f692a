"""PLACEHOLDER: replaced by the pages work (issue 3)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse


def _todo(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return HttpResponse("not built yet", status=501)


stop_execution = audit_log = _todo
