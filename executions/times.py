"""Times and durations in words, the same on pages, in messages and in
the text made for chat:

- `iso_z`: for machines and links, ISO 8601 in UTC with a Z, as AWS prints
  it (the JSON API, the `iso` template filter, the links that carry a time:
  the list's presets, the activity chart's, the bulk stop's selection);
- `when`: for people, in the active zone with the zone named (the `when`
  template filter, and the messages the views write);
- `human_seconds`: a duration as people say it (the `seconds` template
  filter, the incident summary, link previews);
- `ago` and `duration`: how long ago, and how long it ran or has run (the
  template helpers of those names, the list's rows).

Imports nothing of executions: template tags, text and views all use it.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone


def iso_z(value: dt.datetime, *, seconds: bool = False) -> str:
    """2024-05-01T14:30:00.123456Z (2024-05-01T14:30:00Z with `seconds`: the
    fraction dropped)."""
    if seconds:
        value = value.replace(microsecond=0)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def when(value: dt.datetime | None) -> str:
    """An absolute time in the active zone, with the zone named."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


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


def ago(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    delta = (timezone.now() - value).total_seconds()
    if delta < 0:
        return f"in {human_seconds(-delta)}"
    return f"{human_seconds(delta)} ago"


def duration(start: dt.datetime | None, stop: dt.datetime | None = None) -> str:
    """From start to stop, or to now while it runs."""
    if start is None:
        return "—"
    return human_seconds(((stop or timezone.now()) - start).total_seconds())
