"""One run through its graph, and two runs side by side.

`run_of` reads an execution's cached history once (history.timeline_of: one
query, no payloads) into what the graph paints (each state's visits,
outcome, time spent and first event; the transitions taken) and the path it
took at the top level. `compare` sets two runs of one state machine side by
side: the first place their paths part, the time spent in each state by
each, and their inputs and outputs diffed by JSON path.

Bounded whatever the payloads: a diff lists at most MAX_CHANGES differences
(it counts the rest up to MAX_COUNTED), and a text diff at most
MAX_DIFF_LINES lines; each value shown is cut at VALUE_CHARS. The pages say
when something was left out.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse

from executions import asl, graph, history
from executions.history.timeline import Lane, Span
from executions.links import Zone, keep_tz
from executions.models import Execution
from executions.reads.versions import definition_of

MAX_CHANGES = 200
MAX_COUNTED = 100_000
VALUE_CHARS = 300
MAX_DIFF_LINES = 400
# Lines of a non-JSON payload a text diff reads (of each side).
MAX_TEXT_LINES = 5000
# The worst outcome of a state's visits is the one the graph shows.
_RANK = {
    graph.RUNNING: 6,
    graph.FAILED: 5,
    graph.TIMED_OUT: 4,
    graph.ABORTED: 3,
    graph.CAUGHT: 2,
    graph.SUCCEEDED: 1,
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- One run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One visit of a top-level state, in the order the run made them."""

    name: str
    outcome: str
    event_id: int
    seconds: float


@dataclass(frozen=True)
class Run:
    execution: Execution
    states: dict[str, graph.StateFacts]
    edges: frozenset[tuple[str, str]]
    path: list[Step]
    running: bool
    events: int

    def paint(self, href: Callable[[int], str]) -> graph.Paint:
        """The graph's paint: `href(event_id)` links a state to its first event."""
        return graph.Paint(
            states=self.states,
            edges=self.edges,
            hrefs={
                name: href(f.first_event_id)
                for name, f in self.states.items()
                if f.first_event_id is not None
            },
            running=self.running,
        )


def event_links(arn: str, zone: Zone) -> Callable[[int], str]:
    """event id -> the history page at that event (`#event-<id>`), zone kept."""
    base = reverse("execution_history", args=[arn])

    def href(event_id: int) -> str:
        return keep_tz(base, zone, {"event": str(event_id)}) + f"#event-{event_id}"

    return href


def _lanes(lane: Lane) -> Iterator[Lane]:
    pending = [lane]
    while pending:
        here = pending.pop()
        yield here
        for span in reversed(here.spans):
            pending.extend(reversed(span.lanes))


def _seconds(span: Span, now: dt.datetime) -> float:
    end = span.end or now
    return max(0.0, (end - span.start).total_seconds())


def run_of(ex: Execution, now: dt.datetime) -> Run:
    events, timeline = history.timeline_of(ex, now)
    visits: dict[str, int] = {}
    outcome: dict[str, str] = {}
    first: dict[str, int] = {}
    seconds: dict[str, float] = {}
    edges: set[tuple[str, str]] = set()
    for lane in _lanes(timeline.root):
        previous: Span | None = None
        for span in lane.spans:
            name = span.name
            visits[name] = visits.get(name, 0) + 1
            state = span.outcome if span.outcome in _RANK else graph.SUCCEEDED
            if _RANK[state] > _RANK.get(outcome.get(name, ""), 0):
                outcome[name] = state
            if not span.partial and (name not in first or span.event_id < first[name]):
                first[name] = span.event_id
            seconds[name] = seconds.get(name, 0.0) + _seconds(span, now)
            edges.add((previous.name if previous is not None else "", name))
            previous = span
        # The last state of a lane led to its End when it was left (and the
        # lane is over), or when it is a Succeed or a Fail state.
        if previous is not None and (
            previous.state_type in ("Succeed", "Fail")
            or (previous.exited and not (lane.kind == "root" and ex.is_open))
        ):
            edges.add((previous.name, ""))
    states = {
        name: graph.StateFacts(
            visits=visits[name],
            outcome=outcome[name],
            first_event_id=first.get(name),
            seconds=seconds[name],
        )
        for name in visits
    }
    path = [Step(s.name, s.outcome, s.event_id, _seconds(s, now)) for s in timeline.root.spans]
    return Run(ex, states, frozenset(edges), path, ex.is_open, len(events))


# --- Where two paths part --------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """The first top-level step where two runs differ: by the state they went
    to (`kind` "state"), by how the same state ended ("outcome"), or by one
    run having stopped (or not got) there ("length"). None: same path."""

    kind: str
    index: int  # the step (0: the first state)
    after: str  # the state both came from ("" at the start)
    a: Step | None
    b: Step | None


def divergence(a: list[Step], b: list[Step]) -> Divergence | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        after = a[i - 1].name if i else ""
        if x.name != y.name:
            return Divergence("state", i, after, x, y)
        if x.outcome != y.outcome:
            return Divergence("outcome", i, after, x, y)
    if len(a) != len(b):
        i = min(len(a), len(b))
        after = a[i - 1].name if i else ""
        return Divergence(
            "length", i, after, a[i] if i < len(a) else None, b[i] if i < len(b) else None
        )
    return None


# --- Time in each state ----------------------------------------------------------------------


@dataclass(frozen=True)
class StateTime:
    name: str
    a: graph.StateFacts | None
    b: graph.StateFacts | None

    @property
    def delta(self) -> float | None:
        """b - a in seconds, when both visited it."""
        if self.a is None or self.b is None:
            return None
        return self.b.seconds - self.a.seconds


def state_times(definition: str, a: Run, b: Run) -> list[StateTime]:
    """Every state either run visited, in the definition's order (the rest
    after, by name)."""
    order = {name: i for i, name in enumerate(asl.state_index(definition))}
    names = sorted(set(a.states) | set(b.states), key=lambda n: (order.get(n, len(order)), n))
    return [StateTime(n, a.states.get(n), b.states.get(n)) for n in names]


# --- Payload diffs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    path: str  # $.a.b[2]
    kind: str  # added | removed | changed
    a: str  # the value in run A, as JSON (cut); "" when added
    b: str


@dataclass
class Diff:
    """Two payloads compared. `json`: both parsed and compared by path;
    otherwise `lines` is a unified text diff."""

    identical: bool = False
    json: bool = False
    changes: list[Change] = field(default_factory=list)
    counted: int = 0  # differences found (up to MAX_COUNTED)
    lines: list[str] = field(default_factory=list)
    truncated: bool = False  # more differences than shown
    note: str = ""  # why the payloads were not compared as JSON, or what is missing

    @property
    def hidden(self) -> int:
        return max(0, self.counted - len(self.changes))


def _step(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "\u2026"


def _walk(a: Any, b: Any, path: str, out: Diff) -> None:
    """Differences of two JSON values, depth-first, keys in A's order then B's
    new ones; arrays compared item by item."""
    stack: list[tuple[Any, Any, str]] = [(a, b, path)]
    while stack:
        if out.counted >= MAX_COUNTED:
            out.truncated = True
            return
        x, y, where = stack.pop()
        if isinstance(x, dict) and isinstance(y, dict):
            pending: list[tuple[Any, Any, str]] = []
            for key in x:
                if key in y:
                    pending.append((x[key], y[key], _step(where, key)))
                else:
                    _record(out, Change(_step(where, key), "removed", _shown(x[key]), ""))
            for key in y:
                if key not in x:
                    _record(out, Change(_step(where, key), "added", "", _shown(y[key])))
            stack.extend(reversed(pending))
        elif isinstance(x, list) and isinstance(y, list):
            pending = [(x[i], y[i], _step(where, i)) for i in range(min(len(x), len(y)))]
            for i in range(len(y), len(x)):
                _record(out, Change(_step(where, i), "removed", _shown(x[i]), ""))
            for i in range(len(x), len(y)):
                _record(out, Change(_step(where, i), "added", "", _shown(y[i])))
            stack.extend(reversed(pending))
        elif type(x) is not type(y) or x != y:
            _record(out, Change(where, "changed", _shown(x), _shown(y)))


def _record(out: Diff, change: Change) -> None:
    out.counted += 1
    if len(out.changes) < MAX_CHANGES:
        out.changes.append(change)
    else:
        out.truncated = True


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def diff(a: str | None, b: str | None) -> Diff:
    """What differs from payload `a` to payload `b`."""
    if a is None or b is None:
        missing = " and ".join(w for w, v in (("A", a), ("B", b)) if v is None)
        return Diff(
            identical=a is None and b is None,
            note=f"{missing} {'have' if a is None and b is None else 'has'} none "
            "(not described yet, still running, or it failed).",
        )
    if a == b:
        return Diff(identical=True, json=_loads(a)[0])
    ok_a, value_a = _loads(a)
    ok_b, value_b = _loads(b)
    if ok_a and ok_b:
        out = Diff(json=True)
        try:
            _walk(value_a, value_b, "$", out)
        except RecursionError:  # pragma: no cover - _walk keeps its own stack
            out.note = "Nested too deeply to compare by path."
        out.identical = out.counted == 0
        if out.identical:
            out.note = "The same JSON, written differently (spacing or key order)."
        return out
    out = Diff(note="Not both JSON: compared as text, line by line.")
    left, right = a.splitlines()[:MAX_TEXT_LINES], b.splitlines()[:MAX_TEXT_LINES]
    for line in difflib.unified_diff(left, right, "A", "B", n=2, lineterm=""):
        if len(out.lines) >= MAX_DIFF_LINES:
            out.truncated = True
            break
        out.lines.append(line if len(line) <= VALUE_CHARS else line[:VALUE_CHARS] + "\u2026")
    if len(a.splitlines()) > MAX_TEXT_LINES or len(b.splitlines()) > MAX_TEXT_LINES:
        out.truncated = True
    return out


# --- Two runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    a: Run
    b: Run
    definition: str
    definition_note: str
    definition_b: str  # B's, when it ran another text than A's (else the same)
    definition_note_b: str
    divergence: Divergence | None
    times: list[StateTime]
    input: Diff
    output: Diff


def compare(a: Execution, b: Execution, now: dt.datetime) -> Comparison:
    """Two executions of one state machine (the caller checks that), read
    from the cache. Each is drawn on the definition it ran (when known)."""
    definition, note = definition_of(a)
    definition_b, note_b = definition_of(b)
    run_a, run_b = run_of(a, now), run_of(b, now)
    return Comparison(
        a=run_a,
        b=run_b,
        definition=definition,
        definition_note=note,
        definition_b=definition_b,
        definition_note_b=note_b,
        divergence=divergence(run_a.path, run_b.path),
        times=state_times(definition, run_a, run_b),
        input=diff(a.input, b.input),
        output=diff(a.output, b.output),
    )
