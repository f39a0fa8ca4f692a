"""History events -> state visits: what the timeline draws.

One pass over the events in id order (O(n)). Where an event happened is
taken from its previousEventId, never guessed from names alone:

- a `*StateEntered` opens a visit in the lane of its previous event; when that
  previous event is a `ParallelStateStarted`, it opens a new branch lane under
  that Parallel state;
- a `MapIterationStarted` opens an iteration lane under the Map state its
  previous event leads up to (climbing out of sibling iterations: AWS and moto
  chain an iteration's start to the end of another one);
- a `*StateExited` closes the open visit of that name found by climbing from
  its previous event's lane towards the root;
- Task, Lambda and Activity events (Scheduled -> Started -> Succeeded / Failed /
  TimedOut) are attempts inside the open Task visit, so retries show;
- the end of the execution (failed, timed out, aborted) closes what is still
  open with that outcome; a redrive (ExecutionRedriven) starts afresh.

Events that are missing, out of order, or point nowhere fall back to the
root lane instead of failing.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from executions.event_types import TASK_ALIVE_TYPES, TASK_FAILURE_TYPES, TASK_SUCCEEDED_TYPES

# Outcomes of a visit, an attempt or a lane.
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CAUGHT = "caught"  # failed, and a Catch moved on
TIMED_OUT = "timed-out"
ABORTED = "aborted"
BAD_OUTCOMES = frozenset((FAILED, CAUGHT, TIMED_OUT, ABORTED))

_ATTEMPT_BEGIN = {
    "TaskScheduled": "Task",
    "LambdaFunctionScheduled": "Lambda",
    "ActivityScheduled": "Activity",
}
_ATTEMPT_STARTED = frozenset(t for t in TASK_ALIVE_TYPES if t.endswith("Started"))
_ATTEMPT_END = {
    **dict.fromkeys(TASK_SUCCEEDED_TYPES, SUCCEEDED),
    **{t: TIMED_OUT if t.endswith("TimedOut") else FAILED for t in TASK_FAILURE_TYPES},
}
_EXECUTION_END = {
    "ExecutionSucceeded": SUCCEEDED,
    "ExecutionFailed": FAILED,
    "ExecutionTimedOut": TIMED_OUT,
    "ExecutionAborted": ABORTED,
}
_ITERATION_END = {
    "MapIterationSucceeded": SUCCEEDED,
    "MapIterationFailed": FAILED,
    "MapIterationAborted": ABORTED,
}
# Events of a Map or Parallel state itself: (state type, what it says).
_COMPOSITE = {
    "MapStateStarted": ("Map", ""),
    "MapStateSucceeded": ("Map", ""),
    "MapStateFailed": ("Map", FAILED),
    "MapRunStarted": ("Map", ""),
    "MapRunSucceeded": ("Map", ""),
    "MapRunFailed": ("Map", FAILED),
    "MapRunAborted": ("Map", ABORTED),
    "MapRunRedriven": ("Map", ""),
    "ParallelStateSucceeded": ("Parallel", ""),
    "ParallelStateFailed": ("Parallel", FAILED),
}
PATH_SEPARATOR = " \u203a "  # single right-pointing angle quotation mark
_PARALLEL_STARTED = 1  # flag on a position: branches begin after this event

# What an event type does to the timeline, worked out once per type.
(
    _OTHER,
    _ENTERED,
    _EXITED,
    _ABORTED,
    _ATTEMPT,
    _ITERATION_STARTED,
    _ITERATION_ENDED,
    _COMPOSITE_EVENT,
    _EVALUATION_FAILED,
    _EXECUTION_ENDED,
    _REDRIVEN,
    _EXECUTION_STARTED,
) = range(12)


def _kind(t: str) -> tuple[int, str]:
    """(what the type does, the state type it concerns)."""
    for suffix, code in (
        ("StateEntered", _ENTERED),
        ("StateExited", _EXITED),
        ("StateAborted", _ABORTED),
    ):
        if t.endswith(suffix):
            return code, t[: -len(suffix)]
    if t in _ATTEMPT_BEGIN or t in _ATTEMPT_STARTED or t in _ATTEMPT_END:
        return _ATTEMPT, "Task"
    if t == "MapIterationStarted":
        return _ITERATION_STARTED, "Map"
    if t in _ITERATION_END:
        return _ITERATION_ENDED, "Map"
    if t in _COMPOSITE:
        return _COMPOSITE_EVENT, _COMPOSITE[t][0]
    if t == "ParallelStateStarted":
        return _COMPOSITE_EVENT, "Parallel"
    if t == "EvaluationFailed":
        return _EVALUATION_FAILED, ""
    if t in _EXECUTION_END:
        return _EXECUTION_ENDED, ""
    if t == "ExecutionRedriven":
        return _REDRIVEN, ""
    if t == "ExecutionStarted":
        return _EXECUTION_STARTED, ""
    return _OTHER, ""


_KINDS: dict[str, tuple[int, str]] = {}


_TIMESTAMP = operator.itemgetter(2)


class Ev(NamedTuple):
    """The few facts of an event the timeline needs (no payloads)."""

    event_id: int
    previous_event_id: int
    timestamp: dt.datetime
    type: str
    name: str | None = None  # state name; Map name for iterations; EvaluationFailed's state
    iteration: int | None = None  # Map iteration index
    error: str | None = None
    number: int | None = None  # Map length, redrive count


@dataclass(eq=False, slots=True)
class Attempt:
    kind: str  # Task | Lambda | Activity
    event_id: int  # the Scheduled event
    start: dt.datetime
    started: dt.datetime | None = None
    end: dt.datetime | None = None
    end_event_id: int = 0
    outcome: str = RUNNING
    error: str = ""


@dataclass(eq=False, slots=True)
class Lane:
    """A sequence of state visits: the execution itself, one Map iteration or
    one Parallel branch."""

    kind: str  # root | iteration | branch
    index: int  # iteration index, branch number (from 1)
    parent: Span | None
    event_id: int = 0  # MapIterationStarted, or the branch's first StateEntered
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    outcome: str = RUNNING
    spans: list[Span] = field(default_factory=list)
    # Visits not closed yet, by state name (a stack: the newest last).
    open: dict[str, list[Span]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.kind == "iteration":
            return f"iteration {self.index}"
        if self.kind == "branch":
            return f"branch {self.index}"
        return "execution"


@dataclass(eq=False, slots=True)
class Span:
    """One visit of a state, from entered to exited (or failed, or aborted)."""

    name: str
    state_type: str  # Task, Map, Parallel, Pass, Wait, Choice, Succeed, Fail, ...
    event_id: int  # the *StateEntered event (or the first event seen of it)
    start: dt.datetime
    lane: Lane
    end: dt.datetime | None = None
    end_event_id: int = 0
    outcome: str = RUNNING
    error: str = ""
    exited: bool = False
    # Its *StateEntered event is not in the history (a gap, or out of sync).
    partial: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)  # iterations / branches
    iterations: dict[int, Lane] = field(default_factory=dict)
    length: int | None = None  # Map items

    @property
    def closed(self) -> bool:
        return self.end is not None


@dataclass(eq=False, slots=True)
class Timeline:
    root: Lane
    start: dt.datetime
    end: dt.datetime
    running: bool
    redrives: list[tuple[dt.datetime, int, int]]  # (when, redrive count, event id)
    # The visit each event belongs to (its state), for the event table.
    span_of: dict[int, Span]
    spans: int
    events: int

    def path(self, event_id: int) -> str:
        """Where an event happened: `EachItem > iteration 3 > Reserve` (with a
        typographic `>`)."""
        span = self.span_of.get(event_id)
        if span is None:
            return ""
        parts = [span.name]
        lane = span.lane
        while lane.parent is not None:
            parts.append(lane.label)
            parts.append(lane.parent.name)
            lane = lane.parent.lane
        return PATH_SEPARATOR.join(reversed(parts))


class _Builder:
    def __init__(self) -> None:
        self.root = Lane("root", 0, None)
        # Where each event happened: its lane, its visit, flags.
        self.where: dict[int, tuple[Lane, Span | None, int]] = {}
        self.span_of: dict[int, Span] = {}
        # Visits not closed yet, by their entered event id (insertion ordered).
        self.open_spans: dict[int, Span] = {}
        self.open_lanes: dict[int, Lane] = {}
        self.redrives: list[tuple[dt.datetime, int, int]] = []
        self.spans = 0

    # --- finding the visit an event belongs to --------------------------------------

    def _named(self, lane: Lane, span: Span | None, name: str) -> Span | None:
        """The open visit of that name the chain leads to: the event's own, or
        the newest open one in its lane or a lane it is nested in. None when
        there is none (its entered event is missing): no guessing across
        lanes, which would close some other iteration's visit."""
        if span is not None and not span.exited and span.name == name:
            return span
        climb: Lane | None = lane
        while climb is not None:
            stack = climb.open.get(name)
            if stack:
                return stack[-1]
            climb = climb.parent.lane if climb.parent is not None else None
        return None

    def _enclosing(
        self, lane: Lane, span: Span | None, state_type: str, name: str | None = None
    ) -> Span | None:
        """The open Map / Parallel / Task visit an event is about: its own
        visit, the newest open one of that type in its lane, or one of the
        visits its lane is nested in."""

        def fits(s: Span) -> bool:
            return s.state_type == state_type and not s.exited and (not name or s.name == name)

        if span is not None and fits(span):
            return span
        for stack in lane.open.values():
            if stack and fits(stack[-1]):
                return stack[-1]
        climb: Lane | None = lane
        while climb is not None and climb.parent is not None:
            if fits(climb.parent):
                return climb.parent
            climb = climb.parent.lane
        if name:
            # The chain is broken (a missing event): the open Map of that
            # name, wherever it is. Without a name, no guess.
            for candidate in reversed(self.open_spans.values()):
                if fits(candidate):
                    return candidate
        return None

    # --- changes -------------------------------------------------------------------------

    def _open(self, ev: Ev, lane: Lane, state_type: str, *, partial: bool = False) -> Span:
        span = Span(ev.name or "?", state_type, ev.event_id, ev.timestamp, lane, partial=partial)
        lane.spans.append(span)
        lane.open.setdefault(span.name, []).append(span)
        if lane.start is None:
            lane.start = ev.timestamp
        self.open_spans[ev.event_id] = span
        self.spans += 1
        return span

    def _close(self, span: Span, ev: Ev, outcome: str) -> None:
        span.end = ev.timestamp
        span.end_event_id = ev.event_id
        span.outcome = outcome
        stack = span.lane.open.get(span.name)
        if stack:
            if stack[-1] is span:
                stack.pop()
            elif span in stack:
                stack.remove(span)
        self.open_spans.pop(span.event_id, None)
        for attempt in span.attempts:
            if attempt.end is None:
                attempt.end = ev.timestamp
                attempt.end_event_id = ev.event_id
                attempt.outcome = outcome if outcome != CAUGHT else FAILED

    def _fail(self, span: Span, ev: Ev, outcome: str = FAILED) -> None:
        span.outcome = outcome
        if ev.error:
            span.error = ev.error

    def _end_lane(self, lane: Lane, ev: Ev, outcome: str) -> None:
        lane.end = ev.timestamp
        lane.outcome = outcome
        self.open_lanes.pop(id(lane), None)

    def _end_execution(self, ev: Ev, outcome: str) -> None:
        for span in list(self.open_spans.values()):
            # A visit that had already failed keeps its own outcome.
            self._close(span, ev, outcome if span.outcome == RUNNING else span.outcome)
        for lane in list(self.open_lanes.values()):
            self._end_lane(lane, ev, outcome)
        self.open_spans.clear()
        self.open_lanes.clear()

    # --- one event ---------------------------------------------------------------------

    def add(self, ev: Ev) -> None:
        event_id, prev, _ts, t, name, _iteration, _error, _number = ev
        here = self.where.get(prev) if prev < event_id else None
        lane, span, flag = here if here is not None else (self.root, None, 0)
        kind = _KINDS.get(t)
        if kind is None:
            kind = _KINDS[t] = _kind(t)
        code, state_type = kind
        position: tuple[Lane, Span | None, int] = (lane, span, 0)
        mine: Span | None = None

        if code == _ENTERED:
            if flag == _PARALLEL_STARTED and span is not None:
                branch = Lane("branch", len(span.lanes) + 1, span, event_id, ev.timestamp)
                span.lanes.append(branch)
                lane = branch
            mine = self._open(ev, lane, state_type)
            if state_type == "Fail":
                mine.outcome = FAILED
            position = (lane, mine, 0)
        elif code == _EXITED:
            mine = self._named(lane, span, name or "?")
            if mine is None:
                mine = self._open(ev, lane, state_type, partial=True)
            self._close(mine, ev, CAUGHT if mine.outcome in (FAILED, TIMED_OUT) else SUCCEEDED)
            mine.exited = True
            position = (mine.lane, None, 0)
        elif code == _ATTEMPT:
            mine = self._enclosing(lane, span, "Task")
            if mine is not None:
                self._attempt(mine, ev)
                position = (mine.lane, mine, 0)
        elif code == _ABORTED:
            mine = self._enclosing(lane, span, state_type)
            if mine is not None:
                self._close(mine, ev, ABORTED)
                position = (mine.lane, mine, 0)
        elif code == _ITERATION_STARTED:
            mine = self._enclosing(lane, span, "Map", name)
            if mine is not None:
                index = ev.iteration if ev.iteration is not None else len(mine.lanes)
                it = Lane("iteration", index, mine, event_id, ev.timestamp)
                mine.lanes.append(it)
                mine.iterations[index] = it
                self.open_lanes[id(it)] = it
                position = (it, None, 0)
        elif code == _ITERATION_ENDED:
            mine = self._enclosing(lane, span, "Map", name)
            if mine is not None:
                it_lane = mine.iterations.get(ev.iteration if ev.iteration is not None else -1)
                if it_lane is not None:
                    self._end_lane(it_lane, ev, _ITERATION_END[t])
                if t != "MapIterationSucceeded" and ev.error:
                    mine.error = ev.error
                position = (mine.lane, mine, 0)
        elif code == _COMPOSITE_EVENT:
            mine = self._enclosing(lane, span, state_type)
            if mine is not None:
                if t == "MapStateStarted" and ev.number is not None:
                    mine.length = ev.number
                says = _COMPOSITE.get(t, ("", ""))[1]
                if says:
                    self._fail(mine, ev, says)
                flag_out = _PARALLEL_STARTED if t == "ParallelStateStarted" else 0
                position = (mine.lane, mine, flag_out)
        elif code == _EVALUATION_FAILED:
            mine = self._named(lane, span, name) if name else span
            if mine is not None:
                self._fail(mine, ev)
                position = (mine.lane, mine, 0)
        elif code == _EXECUTION_ENDED:
            self._end_execution(ev, _EXECUTION_END[t])
            position = (self.root, None, 0)
        elif code == _REDRIVEN:
            self.redrives.append((ev.timestamp, ev.number or len(self.redrives) + 1, event_id))
            position = (self.root, None, 0)
        elif code == _EXECUTION_STARTED:
            position = (self.root, None, 0)
        else:
            # A type this code does not know: it stays where its chain is.
            mine = span

        self.where[event_id] = position
        if mine is not None:
            self.span_of[event_id] = mine

    def _attempt(self, span: Span, ev: Ev) -> None:
        t = ev.type
        current = span.attempts[-1] if span.attempts and span.attempts[-1].end is None else None
        if t in _ATTEMPT_BEGIN:
            span.attempts.append(Attempt(_ATTEMPT_BEGIN[t], ev.event_id, ev.timestamp))
            if span.outcome in (FAILED, TIMED_OUT):
                span.outcome = RUNNING  # a retry: the state is running again
            return
        if current is None:
            # Its Scheduled event is missing (or it failed to schedule).
            kind = "Lambda" if t.startswith("Lambda") else t[:4] if t.startswith("Task") else ""
            current = Attempt(kind or "Activity", ev.event_id, ev.timestamp)
            span.attempts.append(current)
        if t in _ATTEMPT_STARTED:
            current.started = ev.timestamp
            return
        current.end = ev.timestamp
        current.end_event_id = ev.event_id
        current.outcome = _ATTEMPT_END[t]
        current.error = ev.error or ""
        if current.outcome != SUCCEEDED:
            self._fail(span, ev, current.outcome)


def build(
    events: Iterable[Ev],
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    running: bool,
    now: dt.datetime,
) -> Timeline:
    """The timeline of an execution from its events (any order; duplicates and
    gaps tolerated). `start`/`end` are the execution's dates when known; a
    running execution's open visits reach `now`."""
    ordered: Sequence[Ev] = events if isinstance(events, list) else list(events)
    ids = [ev[0] for ev in ordered]
    if ids != sorted(set(ids)):  # out of order, or duplicates: C speed either way
        ordered = sorted({ev.event_id: ev for ev in ordered}.values())
    builder = _Builder()
    for ev in ordered:
        builder.add(ev)

    first = min(map(_TIMESTAMP, ordered), default=None)
    last = max(map(_TIMESTAMP, ordered), default=None)
    t0 = min(t for t in (start, first) if t is not None) if (start or first) else now
    candidates = [t for t in (end, last) if t is not None]
    if running:
        candidates.append(now)
    t1 = max(candidates) if candidates else t0
    if t1 <= t0:
        t1 = t0 + dt.timedelta(milliseconds=1)
    root = builder.root
    root.start, root.end = t0, t1
    return Timeline(
        root=root,
        start=t0,
        end=t1,
        running=running,
        redrives=builder.redrives,
        span_of=builder.span_of,
        spans=builder.spans,
        events=len(ordered),
    )
