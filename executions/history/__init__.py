"""An execution's history: events -> state visits for the timeline, and the
text and JSON formats of a history. Plain functions; the views are in
executions/views/history.py.

- events.py    what each of the 62 event types says (summary, fields, payloads)
- timeline.py  events -> state visits, Map iterations, Parallel branches, attempts
- drawing.py   visits -> rows of bars to draw, aggregated to stay small
- exports.py   history.txt (the layout is documented there) and history.json
- table.py     events -> rows of the event table
- source.py    reading the cached events in those shapes
- progress.py  where an execution is: its open states, and where it failed
- stuck.py     why a running execution is stuck (timeouts, retries, callbacks)
- visits.py    the open Task / Wait visits and Map iterations stuck.py reads

May import: models, event_types, asl, arns, and each other. Never sync, actions,
web or views.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator
from contextlib import contextmanager

from ..event_types import DETAILS_KEY, EVENT_TYPES, FAILURE_TYPES
from ..models import Execution
from .drawing import Drawing, layout, offset_label, short_duration
from .events import describe, details_key_for
from .exports import details_line, iso_ms, json_chunks, text_block, text_chunks
from .source import batches, skeleton
from .table import EventRow, event_row
from .timeline import Ev, Timeline, build


@contextmanager
def _collector_paused() -> Iterator[None]:
    # Reading 25,000 events allocates ~100,000 small objects; Python's cyclic
    # collector would run dozens of times over the whole heap meanwhile (a
    # third of the time), for nothing: none of it is garbage yet.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timeline_of(execution: Execution, now: dt.datetime) -> tuple[list[Ev], Timeline]:
    """The execution's events (skeleton) and its timeline: one query."""
    with _collector_paused():
        events = skeleton(execution)
        timeline = build(
            events,
            start=execution.start_date,
            end=execution.stop_date,
            running=execution.is_open,
            now=now,
        )
    return events, timeline


__all__ = [
    "DETAILS_KEY",
    "EVENT_TYPES",
    "FAILURE_TYPES",
    "Drawing",
    "Ev",
    "EventRow",
    "Timeline",
    "batches",
    "build",
    "describe",
    "details_key_for",
    "details_line",
    "event_row",
    "iso_ms",
    "json_chunks",
    "layout",
    "offset_label",
    "short_duration",
    "skeleton",
    "text_block",
    "text_chunks",
    "timeline_of",
]
