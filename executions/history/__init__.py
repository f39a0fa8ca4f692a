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
import threading
from collections import OrderedDict
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


# What is drawn from a closed execution's complete history cannot change
# until the sync says otherwise (a redrive, events it had missed): it is kept,
# per process, keyed by what would change it. Bounded by the events it holds
# (a 25,000-event history is ~15 MB of small objects), newest use kept.
CLOSED_EVENTS_KEPT = 100_000
_closed: OrderedDict[tuple[object, ...], tuple[list[Ev], Timeline, Drawing]] = OrderedDict()
_closed_lock = threading.Lock()


def _closed_key(execution: Execution) -> tuple[object, ...] | None:
    if execution.is_open or not execution.history_complete or execution.pk is None:
        return None
    return (
        execution.pk,
        execution.arn,
        execution.last_event_id,
        execution.redrive_count,
        execution.status,
        execution.start_date,
        execution.stop_date,
    )


def drawn_timeline_of(execution: Execution, now: dt.datetime) -> tuple[list[Ev], Timeline, Drawing]:
    """timeline_of() and its drawing; for a closed execution whose history is
    complete, computed once and kept (the 25,000-event history page re-read
    its outline and rebuilt ~75,000 visits on every request)."""
    key = _closed_key(execution)
    if key is not None:
        with _closed_lock:
            kept = _closed.get(key)
            if kept is not None:
                _closed.move_to_end(key)
                return kept
    events, timeline = timeline_of(execution, now)
    with _collector_paused():
        drawn = (events, timeline, layout(timeline))
    if key is not None and len(events) <= CLOSED_EVENTS_KEPT:
        with _closed_lock:
            _closed[key] = drawn
            # One entry per execution: an older key of the same one goes.
            for old in [k for k in _closed if k[0] == key[0] and k != key]:
                del _closed[old]
            while sum(len(v[0]) for v in _closed.values()) > CLOSED_EVENTS_KEPT:
                _closed.popitem(last=False)
    return drawn


def forget_drawn() -> None:
    """Drop every kept timeline (tests)."""
    with _closed_lock:
        _closed.clear()


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
    "drawn_timeline_of",
    "event_row",
    "forget_drawn",
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
