"""The words of a link preview (og:title, og:description) of an execution
or of a list of executions: what a chat tool shows when someone pastes a
link. Never the input, output or cause; times in UTC, as in the incident
summary (incident.py), whose pieces it shares.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from executions.history.progress import FailurePoint, OpenState
from executions.models import Execution
from executions.text.incident import (
    CONTROL,
    OPEN_STATES_NAMED,
    duration_seconds,
    one_line,
    status_label,
    where,
)
from executions.times import human_seconds

# Preview tags: chat tools cut longer ones anyway.
PREVIEW_TITLE_CHARS = 200
PREVIEW_DESCRIPTION_CHARS = 300

_WHITESPACE = re.compile(r"\s+")


def utc_minutes(value: dt.datetime) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class Preview:
    """What a chat tool shows for a link: og:title, og:description, og:url.
    The description's last part, the age of the data, is added where it is
    rendered (from `synced_at`)."""

    title: str
    description: str
    url: str


def _squeeze(text: str, limit: int) -> str:
    text = _WHITESPACE.sub(" ", CONTROL.sub("", text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def execution_preview_text(
    ex: Execution,
    *,
    url: str,
    now: dt.datetime,
    failure: FailurePoint | None = None,
    open_states: Sequence[OpenState] = (),
) -> Preview:
    """FAILED · order-pipeline · order-20261126-1542-7f3a · 2 h 13 m, and a
    line saying where and why. Never the input, output or cause."""
    took = human_seconds(duration_seconds(ex, now))
    title = f"{ex.status} · {ex.state_machine.name} · {ex.name} · {took}"
    parts: list[str] = []
    place = where(ex, failure, open_states)
    error = one_line(ex.error if ex.error is not None else (failure.error if failure else ""), 120)
    if ex.is_open:
        if place is not None and place.states:
            latest = max(open_states, key=lambda s: s.event_id)
            state_type = latest.type.removesuffix("StateEntered")
            names = ", ".join(place.states[:OPEN_STATES_NAMED])
            if len(place.states) == 1:
                in_state = human_seconds((now - latest.entered_at).total_seconds())
                parts.append(f"In {names} ({state_type}) for {in_state}")
            else:
                parts.append(f"In {names}")
        else:
            parts.append("Running, between states")
    else:
        where_text = f"{place.label} {', '.join(place.states)}" if place and place.states else ""
        head = where_text or status_label(ex.status)
        parts.append(f"{head}: {error}" if error else head)
    parts.append(f"started {utc_minutes(ex.start_date)}")
    return Preview(
        title=_squeeze(title, PREVIEW_TITLE_CHARS),
        description=_squeeze(" · ".join(parts), PREVIEW_DESCRIPTION_CHARS),
        url=url,
    )


def list_preview_text(
    *,
    url: str,
    statuses: Sequence[str],
    state_machine: str,
    q: str,
    started_after: dt.datetime | None,
    started_before: dt.datetime | None,
    counts: Sequence[tuple[str, int, bool]],
) -> Preview:
    """Executions · FAILED · payment-capture, and how many match. `counts` is
    (status, count, exact) per status for the filters but the status one."""
    title_parts = ["Executions"]
    title_parts.append(", ".join(statuses) if statuses else "all statuses")
    if state_machine:
        title_parts.append(state_machine)
    shown = [c for c in counts if not statuses or c[0] in statuses]
    total = sum(n for _, n, _ in shown)
    exact = all(e for _, _, e in shown)
    parts = [f"{total:,}{'' if exact else '+'} matching"]
    by_status = [f"{status_label(s).lower()} {n:,}{'' if e else '+'}" for s, n, e in shown if n]
    if by_status:
        parts[0] += f" ({', '.join(by_status)})"
    if q:
        parts.append(f"name contains “{q}”")
    if started_after:
        parts.append(f"started at or after {utc_minutes(started_after)}")
    if started_before:
        parts.append(f"started before {utc_minutes(started_before)}")
    return Preview(
        title=_squeeze(" · ".join(title_parts), PREVIEW_TITLE_CHARS),
        description=_squeeze(" · ".join(parts), PREVIEW_DESCRIPTION_CHARS),
        url=url,
    )
