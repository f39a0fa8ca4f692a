"""A time written for machines and links: ISO 8601 in UTC with a Z, as AWS
prints it. The JSON API, the `iso` template filter, the links that carry a
time (the list's presets, the activity chart's, the bulk stop's selection)
all write it so. Imports nothing of executions.
"""

from __future__ import annotations

import datetime as dt


def iso_z(value: dt.datetime, *, seconds: bool = False) -> str:
    """2024-05-01T14:30:00.123456Z (2024-05-01T14:30:00Z with `seconds`: the
    fraction dropped)."""
    if seconds:
        value = value.replace(microsecond=0)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
