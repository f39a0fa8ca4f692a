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
from executions.times import ago, duration, human_seconds, iso_z, when

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


register.filter("when", when)


@register.filter
def when_precise(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


@register.filter
def iso(value: dt.datetime | None) -> str:
    return iso_z(value) if value else ""


register.filter("ago", ago)
register.simple_tag(duration, name="duration")


@register.filter
def seconds(value: float | None) -> str:
    return "—" if value is None else human_seconds(float(value))
