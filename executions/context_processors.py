from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from . import status


def sync_status(request: HttpRequest) -> dict[str, Any]:
    # Lazy: only pages that show the bar pay for its two queries.
    return {"sync_status": SimpleLazyObject(status.current)}
