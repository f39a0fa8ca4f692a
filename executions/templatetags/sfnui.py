"""Template helpers shared by every page: times in the chosen zone, ages,
durations, and links that keep `?tz=`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join

from executions.links import keep_tz, tz_query
from executions.times import iso_z

register = template.Library()


@register.simple_tag(takes_context=True)
def tz_url(context: template.Context, name: str, *args: Any, **query: Any) -> str:
    """reverse(name, args) plus the page's `?tz=` (and any extra query)."""
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return keep_tz(reverse(name, args=args), context.get("request"), params)


@register.simple_tag(takes_context=True)
def tz_input(context: template.Context) -> str:
    """A form's hidden `tz` field: the page's zone, kept by a GET form."""
    return format_html_join(
        "", '<input type="hidden" name="{}" value="{}">', tz_query(context.get("request")).items()
    )


@register.filter
def when(value: dt.datetime | None) -> str:
    """An absolute time in the active zone, with the zone named."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


@register.filter
def when_precise(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


@register.filter
def iso(value: dt.datetime | None) -> str:
    return iso_z(value) if value else ""


def human_seconds(seconds: float) -> str:
    """3 s, 4 m 5 s, 2 h 13 m, 3 d 4 h: two units at most, as people say it."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s".replace(".0 s", " s")
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs} s" if secs else f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def ago(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    delta = (timezone.now() - value).total_seconds()
    if delta < 0:
        return f"in {human_seconds(-delta)}"
    return f"{human_seconds(delta)} ago"


@register.simple_tag
def duration(start: dt.datetime | None, stop: dt.datetime | None = None) -> str:
    """From start to stop, or to now while it runs."""
    if start is None:
        return "—"
    return human_seconds(((stop or timezone.now()) - start).total_seconds())


@register.filter
def seconds(value: float | None) -> str:
    return "—" if value is None else human_seconds(float(value))
