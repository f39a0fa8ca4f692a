from __future__ import annotations

from django.http import HttpRequest

from .models import Theme
from .themes import current_theme


def theme(request: HttpRequest) -> dict[str, object]:
    # <html data-theme="..."> on every page: the session's copy, no query.
    return {"theme": current_theme(request), "themes": Theme.choices}
