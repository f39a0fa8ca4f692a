"""Template helpers for the stop, audit, state machine and sync pages."""

from __future__ import annotations

import datetime as dt
import json
import re

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

_STATE_ENTERED = re.compile(r"^(?P<kind>[A-Za-z]+?)StateEntered$")


@register.filter
def state_kind(event_type: str) -> str:
    """ "WaitStateEntered" -> "Wait state"."""
    match = _STATE_ENTERED.match(event_type or "")
    return f"{match['kind']} state" if match else event_type


@register.simple_tag
def fold(text: str | None, limit: int = 200) -> SafeString:
    """Short text as is; long text folded behind its first `limit` characters."""
    text = text or ""
    if len(text) <= limit:
        return format_html('<div class="fold-text">{}</div>', text)
    return format_html(
        '<details class="fold"><summary>{}… <span class="muted">({} characters)</span>'
        '</summary><pre class="fold-body">{}</pre></details>',
        text[:limit],
        f"{len(text):,}",
        text,
    )


@register.filter
def percent(value: float | None) -> str:
    if value is None:
        return "—"
    share = value * 100
    if share == 0 or share >= 10:
        return f"{share:.0f} %"
    return f"{share:.1f} %"


@register.filter
def pretty_json(text: str | None) -> str:
    """Indented JSON; text that is not JSON comes back unchanged."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@register.filter
def get(mapping: dict[object, object] | None, key: object) -> object:
    return (mapping or {}).get(key)


@register.filter
def stop_date(aws_response: str | None) -> dt.datetime | None:
    """The `stopDate` of a recorded StopExecution answer, if it has one."""
    try:
        answer = json.loads(aws_response or "")
        return dt.datetime.fromisoformat(str(answer["stopDate"]))
    except (ValueError, TypeError, KeyError):
        return None
