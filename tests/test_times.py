"""executions/times.py: the one way a time is written for machines and links."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from executions.templatetags.sfnui import iso
from executions.times import iso_z

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def test_a_time_is_written_in_utc_with_a_z() -> None:
    at = dt.datetime(2024, 5, 1, 16, 30, 5, 123456, tzinfo=BERLIN)
    assert iso_z(at) == "2024-05-01T14:30:05.123456Z"
    assert iso_z(at, seconds=True) == "2024-05-01T14:30:05Z"
    assert iso_z(at.replace(microsecond=0)) == "2024-05-01T14:30:05Z"


def test_the_template_filter_writes_it_the_same_way() -> None:
    at = dt.datetime(2024, 5, 1, 16, 30, tzinfo=BERLIN)
    assert iso(at) == iso_z(at) == "2024-05-01T14:30:00Z"
    assert iso(None) == ""
