"""{% watch_panel watch %}: the Watch button and who watches, on the detail
page. A pure renderer: the view builds `watch` (web/watch_panel.py)."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.inclusion_tag("executions/_watch.html", takes_context=True)
def watch_panel(context: template.Context, panel: dict[str, Any]) -> dict[str, Any]:
    out = dict(panel)
    out["csrf_token"] = context.get("csrf_token")
    out["perms"] = context.get("perms")
    return out
