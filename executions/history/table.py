"""History events -> rows of the event table: what each row shows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from ..arns import is_map_run_arn
from ..models import HistoryEvent
from .drawing import offset_label
from .events import Part, describe, pretty, size_label
from .timeline import Timeline

# How much of a payload the table shows; the event's own view shows it all.
PREVIEW_CHARS = 2000


@dataclass(slots=True)
class PayloadView:
    dom_id: str
    label: str
    text: str
    cut: bool  # only the start is shown here
    size: str
    truncated_by_aws: bool


@dataclass(slots=True)
class EventRow:
    event_id: int
    previous_event_id: int
    type: str
    when: str
    offset: str
    path: str
    parts: list[Part]
    fields: list[Part]
    payloads: list[PayloadView]
    payload_note: str  # "input (1.2 KB)" when the summary has nothing else
    failed: bool
    # The attempt this event begins, for a redriven execution (0: none):
    # 1 at ExecutionStarted, n + 1 at the ExecutionRedriven of redrive n.
    attempt_begins: int = 0
    # MapRunStarted: the Map Run it started (its page is linked from the row).
    map_run_arn: str = ""


def event_row(
    ev: HistoryEvent,
    start: dt.datetime,
    timeline: Timeline | None,
    *,
    preview: int | None = PREVIEW_CHARS,
) -> EventRow:
    """What the table shows of one event (times in the active zone). Payloads
    are cut at `preview` characters (None: whole)."""
    desc = describe(ev.type, ev.details)
    payloads = []
    for n, payload in enumerate(desc.payloads):
        text, cut = pretty(payload.text, preview)
        payloads.append(
            PayloadView(
                f"payload-{ev.event_id}-{n}",
                payload.label,
                text,
                cut,
                size_label(payload.text),
                payload.truncated_by_aws,
            )
        )
    local = timezone.localtime(ev.timestamp)
    return EventRow(
        event_id=ev.event_id,
        previous_event_id=ev.previous_event_id,
        type=ev.type,
        when=f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d}",
        offset=offset_label((ev.timestamp - start).total_seconds()),
        path=timeline.path(ev.event_id) if timeline is not None else "",
        parts=desc.parts,
        fields=desc.fields,
        payloads=payloads,
        payload_note=", ".join(
            f"{p.label} ({p.size})" for p in payloads if not desc.parts and payloads
        ),
        failed=desc.failed,
        attempt_begins=_attempt_begins(ev, timeline),
        map_run_arn=_map_run_arn(ev),
    )


def _map_run_arn(ev: HistoryEvent) -> str:
    if ev.type != "MapRunStarted":
        return ""
    arn = str((ev.details or {}).get("mapRunArn") or "")
    return arn if is_map_run_arn(arn) else ""


def _attempt_begins(ev: HistoryEvent, timeline: Timeline | None) -> int:
    if ev.type == "ExecutionRedriven":
        count = (ev.details or {}).get("redriveCount")
        return (count if isinstance(count, int) and count > 0 else 1) + 1
    if ev.type == "ExecutionStarted" and timeline is not None and timeline.redrives:
        return 1
    return 0
