"""Links that keep the page's zone. `?tz=Europe/Berlin` on any URL shows
every time of the page in that zone (web/middleware.py sets `request.tz_name`
from it); each link a page makes carries it on, so that the next page, and a
link someone shares, show times as the reader chose. UTC is the default and
is left out.

The one place for that rule: the views, the `{% tz_url %}` and
`{% tz_input %}` template tags and the links the reads build (the activity
chart's) all use it. Imports nothing of executions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

from django.http import HttpRequest

# A zone: its name, or the request whose zone it is (None: no request, UTC).
Zone = str | HttpRequest | None


def tz_query(zone: Zone) -> dict[str, str]:
    """The query that keeps the zone: {"tz": name}, or {} for UTC."""
    name = zone if isinstance(zone, str) else getattr(zone, "tz_name", "UTC")
    return {"tz": name} if name != "UTC" else {}


def keep_tz(
    url: str, zone: Zone, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> str:
    """`url?params&tz=...`: `params` in their order, then the zone, unless
    `params` already name one."""
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    if not any(key == "tz" for key, _ in pairs):
        pairs.extend(tz_query(zone).items())
    return f"{url}?{urlencode(pairs)}" if pairs else url
