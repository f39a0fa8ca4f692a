"""A timeline -> rows of bars to draw, bounded whatever the history's size.

Rows: one per state name within a lane (a state visited in a loop gets one
bar per visit on its row), then the lanes nested in it (Map iterations,
Parallel branches), indented. Positions are percentages of the time from the
execution's start to its end (or now).

To stay readable and small at 25,000 events:
- bars thinner than a pixel (of an assumed `TRACK_PX` wide track) merge with
  their neighbours into one cluster bar ("x312, 3 failed");
- a Map with more than `MAX_LANES` iterations (or a Parallel with that many
  branches) shows its failed iterations one by one and the rest as at most
  `MAX_GROUPS` summary lanes ("iterations 0-624: 623 succeeded, 2 failed"),
  each with one merged row per state;
- at most `MAX_ROWS` rows and `MAX_BARS` bars are drawn; the rest is counted in
  a note (the event table below lists every event).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .timeline import (
    ABORTED,
    BAD_OUTCOMES,
    CAUGHT,
    FAILED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    Lane,
    Span,
    Timeline,
)

TRACK_PX = 1000  # the narrowest track the thresholds below assume
MIN_BAR_PX = 2.0  # thinner visits merge with close neighbours
MIN_GAP_PX = 1.5  # gaps smaller than this do not separate thin bars
MIN_DRAWN = 0.15  # percent: the narrowest bar drawn, so that it can be seen
MAX_LANES = 20
MAX_GROUPS = 8
TIMES = "\u00d7"  # multiplication sign: "x312" visits
DASH = "\u2013"  # en dash: "iterations 0-624"
MAX_FAILED_LANES = 5
MAX_ROWS = 300
MAX_BARS = 2000
MAX_BARS_PER_ROW = 150
LABEL_ROOM = 7.0  # percent: room a duration label needs right of its bar


@dataclass(slots=True)
class Segment:
    """An attempt drawn inside a Task bar."""

    x: float
    w: float
    cls: str
    title: str
    event_id: int


@dataclass(slots=True)
class Bar:
    x: float
    w: float
    cls: str  # an outcome, or "cluster"
    title: str
    label: str  # duration, or TIMES + count
    event_id: int  # where a click goes
    segments: list[Segment] = field(default_factory=list)
    # Where its label goes: "right" of it, "left" of it, "inside" it, or "" (no
    # room anywhere; the tooltip still says it).
    label_at: str = "right"
    lane: bool = False  # the extent of an iteration or branch, drawn lighter


@dataclass(slots=True)
class Row:
    depth: int
    label: str
    kind: str  # state | iteration | branch | group
    state_type: str
    bars: list[Bar]
    event_id: int  # where the label links
    note: str = ""
    cls: str = ""  # the row's worst outcome, for its label
    opens: bool = False  # starts a foldable group of the rows that follow
    expanded: bool = True
    closes: range = range(0)  # groups that end after this row


@dataclass(slots=True)
class Tick:
    x: float
    label: str


@dataclass(slots=True)
class Marker:
    x: float
    label: str
    event_id: int


@dataclass(slots=True)
class Attempt:
    """One attempt of a redriven execution: from its start (or its redrive) to the next."""

    x: float
    w: float
    number: int  # 1 for the first run, 2 after the first redrive, ...
    event_id: int  # where it begins: ExecutionStarted, or its ExecutionRedriven


@dataclass(slots=True)
class Drawing:
    rows: list[Row]
    ticks: list[Tick]
    markers: list[Marker]
    bars: int
    hidden_rows: int  # rows not drawn (caps)
    merged: int  # visits drawn inside cluster bars
    now_x: float | None  # where "now" is, for a running execution
    # Only for a redriven execution: each attempt's band, drawn apart.
    attempts: list[Attempt] = field(default_factory=list)


# --- Durations and times -----------------------------------------------------------


def short_duration(seconds: float) -> str:
    """12 ms, 1.23 s, 45.6 s, 4 m 5 s, 2 h 3 m."""
    if seconds < 0.001:
        return "<1 ms" if seconds > 0 else "0 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} m"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def offset_label(seconds: float) -> str:
    """Time since the start, precise: +12.345 s, +4:05.123, +2:03:04.567."""
    sign = "-" if seconds < 0 else "+"
    ms_total = round(abs(seconds) * 1000)
    secs, ms = divmod(ms_total, 1000)
    if secs < 60:
        return f"{sign}{secs}.{ms:03d} s"
    minutes, secs = divmod(secs, 60)
    if minutes < 60:
        return f"{sign}{minutes}:{secs:02d}.{ms:03d}"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}.{ms:03d}"
    days, hours = divmod(hours, 24)
    return f"{sign}{days} d {hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


_STEPS = (
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30]
    + [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    + [86400 * d for d in (2, 7, 14, 30, 60, 120, 365)]
)


def _tick_label(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"+{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"+{seconds:g} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes} m" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"+{hours} h" + (f" {minutes} m" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"+{days} d" + (f" {hours} h" if hours else "")


def ticks(total: float, most: int = 8) -> list[Tick]:
    step = next((s for s in _STEPS if total / s <= most), _STEPS[-1])
    out = []
    n = 0
    while n * step <= total * 1.0000001 and n <= most * 4:
        out.append(Tick(round(n * step / total * 100, 3), _tick_label(n * step)))
        n += 1
    return out


# --- Layout -----------------------------------------------------------------------------


class _Scale:
    def __init__(self, start: dt.datetime, end: dt.datetime) -> None:
        self.start = start
        self.total = max((end - start).total_seconds(), 0.001)
        self.end = end

    def pct(self, t: dt.datetime) -> float:
        return (t - self.start).total_seconds() / self.total * 100


def _worst(outcomes: Iterable[str]) -> str:
    seen = set(outcomes)
    for outcome in (FAILED, TIMED_OUT, CAUGHT, ABORTED, RUNNING):
        if outcome in seen:
            return outcome
    return SUCCEEDED


def _lane_extent(lane: Lane, scale: _Scale) -> tuple[dt.datetime, dt.datetime, str]:
    """A lane's time and outcome: from its events where AWS sends them (Map
    iterations), else from its visits (Parallel branches)."""
    start = lane.start or (lane.spans[0].start if lane.spans else scale.start)
    if lane.end is not None:
        return start, lane.end, lane.outcome
    ends = [s.end or scale.end for s in lane.spans]
    end = max(ends, default=start)
    if lane.kind == "iteration":
        outcome = lane.outcome
    else:
        outcome = _worst(s.outcome for s in lane.spans) if lane.spans else RUNNING
        if any(s.end is None for s in lane.spans):
            outcome = RUNNING if outcome in (SUCCEEDED, RUNNING) else outcome
    return start, end, outcome


_OUTCOME_WORDS = {
    RUNNING: "still running",
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    CAUGHT: "failed, caught",
    TIMED_OUT: "timed out",
    ABORTED: "aborted",
}


class _Layout:
    def __init__(self, timeline: Timeline) -> None:
        self.tl = timeline
        self.scale = _Scale(timeline.start, timeline.end)
        self.rows: list[Row] = []
        self.bars = 0
        self.hidden = 0
        self.merged = 0

    # --- budget --------------------------------------------------------------------

    def _room(self) -> bool:
        return len(self.rows) < MAX_ROWS and self.bars < MAX_BARS

    def _emit(self, row: Row) -> bool:
        if not self._room():
            self.hidden += 1
            return False
        self.bars += len(row.bars) + sum(len(b.segments) for b in row.bars)
        self.rows.append(row)
        return True

    def _close_group(self) -> None:
        if self.rows:
            last = self.rows[-1]
            last.closes = range(len(last.closes) + 1)

    # --- bars ------------------------------------------------------------------------

    def _span_bar(self, span: Span) -> Bar:
        sc = self.scale
        end = span.end or sc.end
        x, w = _extent(sc.pct(span.start), sc.pct(end))
        seconds = (end - span.start).total_seconds()
        words = _OUTCOME_WORDS.get(span.outcome, span.outcome)
        title = f"{span.name} ({span.state_type}): {words}, {short_duration(seconds)}"
        title += f", from {offset_label((span.start - sc.start).total_seconds())}"
        if span.error:
            title += f" — {span.error}"
        if span.partial:
            title += " (its entered event is not in the history)"
        segments = []
        for n, attempt in enumerate(span.attempts, start=1):
            a_end = attempt.end or sc.end
            ax, aw = _extent(sc.pct(attempt.start), sc.pct(a_end))
            a_secs = (a_end - attempt.start).total_seconds()
            a_title = (
                f"{span.name} attempt {n} ({attempt.kind}): "
                f"{_OUTCOME_WORDS.get(attempt.outcome, attempt.outcome)}, {short_duration(a_secs)}"
            )
            if attempt.error:
                a_title += f" — {attempt.error}"
            segments.append(Segment(ax, aw, attempt.outcome, a_title, attempt.event_id))
        label = short_duration(seconds)
        if len(span.attempts) > 1:
            label += f" · {len(span.attempts)} attempts"
        if span.end is None and self.tl.running:
            label += " so far"
        return Bar(x, w, span.outcome, title, label, span.event_id, segments)

    def _cluster_bar(
        self, items: list[tuple[float, float, str, int]], name: str, noun: str = "visits"
    ) -> Bar:
        """One bar for many visits: x/w from the first start to the last end."""
        x = min(i[0] for i in items)
        end = max(i[1] for i in items)
        bad = [i for i in items if i[2] in BAD_OUTCOMES]
        running = sum(1 for i in items if i[2] == RUNNING)
        target = bad[0][3] if bad else items[0][3]
        title = f"{name}: {len(items)} {noun}"
        if bad:
            title += f", {len(bad)} failed"
        if running:
            title += f", {running} running"
        title += f", between {offset_label(x / 100 * self.scale.total)}"
        title += f" and {offset_label(end / 100 * self.scale.total)}"
        cls = "cluster-failed" if bad else "cluster-running" if running else "cluster"
        label = f"{TIMES}{len(items)}" + (f", {len(bad)} failed" if bad else "")
        self.merged += len(items)
        x, w = _extent(x, end)
        return Bar(x, w, cls, title, label, target)

    def _merge(
        self, items: list[tuple[float, float, str, int]], *, presorted: bool
    ) -> Iterator[list[tuple[float, float, str, int]]]:
        """Runs of (x%, end%, outcome, event id) that are too thin or too close
        to draw apart."""
        if not presorted:
            items = sorted(items)
        min_w = MIN_BAR_PX / TRACK_PX * 100
        gap = MIN_GAP_PX / TRACK_PX * 100
        for _ in range(12):
            runs: list[list[tuple[float, float, str, int]]] = []
            run_end = 0.0
            for item in items:
                if runs:
                    prev = runs[-1][-1]
                    thin = item[1] - item[0] < min_w or prev[1] - prev[0] < min_w
                    if item[0] < run_end or (thin and item[0] - run_end < gap):
                        runs[-1].append(item)
                        run_end = max(run_end, item[1])
                        continue
                runs.append([item])
                run_end = item[1]
            if len(runs) <= MAX_BARS_PER_ROW:
                break
            min_w *= 2
            gap *= 2
        yield from runs

    def _state_row(self, name: str, spans: list[Span], depth: int) -> Row:
        sc = self.scale
        bars: list[Bar] = []
        if len(spans) == 1:
            bars.append(self._span_bar(spans[0]))
        else:
            items = [
                (sc.pct(s.start), sc.pct(s.end or sc.end), s.outcome, s.event_id) for s in spans
            ]
            by_id = {s.event_id: s for s in spans}
            for run in self._merge(items, presorted=True):
                if len(run) == 1:
                    bars.append(self._span_bar(by_id[run[0][3]]))
                else:
                    bars.append(self._cluster_bar(run, name))
        _place_labels(bars)
        first = spans[0]
        note = f"{TIMES}{len(spans)}" if len(spans) > 1 else ""
        return Row(
            depth=depth,
            label=name,
            kind="state",
            state_type=first.state_type,
            bars=bars,
            event_id=first.event_id,
            note=note,
            cls=_worst(s.outcome for s in spans),
        )

    # --- lanes -----------------------------------------------------------------------

    def lane(self, lane: Lane, depth: int) -> None:
        by_name: dict[str, list[Span]] = {}
        for span in lane.spans:
            by_name.setdefault(span.name, []).append(span)
        for name, spans in by_name.items():
            if not self._room():
                self.hidden += 1
                continue
            row = self._state_row(name, spans, depth)
            nested = [sub for s in spans for sub in s.lanes]
            if not nested:
                self._emit(row)
                continue
            row.opens = True
            kinds = {sub.kind for sub in nested}
            row.note = " · ".join(
                p
                for p in (
                    row.note,
                    f"{sum(1 for n in nested if n.kind == 'iteration')} iterations"
                    if "iteration" in kinds
                    else "",
                    f"{sum(1 for n in nested if n.kind == 'branch')} branches"
                    if "branch" in kinds
                    else "",
                )
                if p
            )
            if self._emit(row):
                self.nested(nested, depth + 1)
                self._close_group()

    def nested(self, lanes: list[Lane], depth: int) -> None:
        if len(lanes) <= MAX_LANES:
            for sub in lanes:
                self._one_lane(sub, depth, expanded=len(lanes) <= 5 or depth <= 1)
            return
        failed = [sub for sub in lanes if _lane_extent(sub, self.scale)[2] in BAD_OUTCOMES]
        for sub in failed[:MAX_FAILED_LANES]:
            self._one_lane(sub, depth, expanded=False)
        ordered = sorted(lanes, key=lambda sub: (sub.kind, sub.index))
        size = -(-len(ordered) // MAX_GROUPS)
        for i in range(0, len(ordered), size):
            self._group(ordered[i : i + size], depth)

    def _lane_bar(self, lane: Lane) -> Bar:
        sc = self.scale
        start, end, outcome = _lane_extent(lane, sc)
        x, w = _extent(sc.pct(start), sc.pct(end))
        seconds = (end - start).total_seconds()
        title = f"{lane.label}: {_OUTCOME_WORDS.get(outcome, outcome)}, {short_duration(seconds)}"
        return Bar(x, w, outcome, title, short_duration(seconds), lane.event_id, lane=True)

    def _one_lane(self, lane: Lane, depth: int, *, expanded: bool) -> None:
        if not self._room():
            self.hidden += 1 + len(lane.spans)
            return
        bar = self._lane_bar(lane)
        _place_labels([bar])
        outcome = bar.cls
        row = Row(
            depth=depth,
            label=lane.label,
            kind=lane.kind,
            state_type="",
            bars=[bar],
            event_id=lane.event_id or (lane.spans[0].event_id if lane.spans else 0),
            cls=outcome,
            opens=bool(lane.spans),
            expanded=expanded,
        )
        if self._emit(row) and lane.spans:
            self.lane(lane, depth + 1)
            self._close_group()

    def _group(self, lanes: list[Lane], depth: int) -> None:
        """Many iterations as one summary lane, with one merged row per state."""
        if not self._room():
            self.hidden += 1
            return
        sc = self.scale
        extents = [(sub, *_lane_extent(sub, sc)) for sub in lanes]
        counts: dict[str, int] = {}
        for _, _, _, outcome in extents:
            counts[outcome] = counts.get(outcome, 0) + 1
        kind = "iterations" if lanes[0].kind == "iteration" else "branches"
        first, last = lanes[0].index, lanes[-1].index
        label = f"{kind} {first}{DASH}{last}"
        note = ", ".join(
            f"{n} {_OUTCOME_WORDS.get(o, o)}"
            for o, n in sorted(counts.items(), key=lambda kv: (kv[0] != SUCCEEDED, kv[0]))
        )
        items = [(sc.pct(s), sc.pct(e), o, sub.event_id) for sub, s, e, o in extents]
        lane_of = {sub.event_id: sub for sub in lanes}
        bars = [
            self._cluster_bar(run, label, kind)
            if len(run) > 1
            else self._lane_bar(lane_of[run[0][3]])
            for run in self._merge(items, presorted=False)
        ]
        _place_labels(bars)
        row = Row(
            depth=depth,
            label=label,
            kind="group",
            state_type="",
            bars=bars,
            event_id=lanes[0].event_id,
            note=note,
            cls=_worst(counts),
            opens=True,
            expanded=False,
        )
        if not self._emit(row):
            return
        by_name: dict[str, list[Span]] = {}
        for sub in lanes:
            for span in sub.spans:
                by_name.setdefault(span.name, []).append(span)
        for name, spans in by_name.items():
            if not self._room():
                self.hidden += 1
                continue
            merged = [
                (sc.pct(s.start), sc.pct(s.end or sc.end), s.outcome, s.event_id) for s in spans
            ]
            by_id = {s.event_id: s for s in spans}
            state_bars = [
                self._cluster_bar(run, name) if len(run) > 1 else self._span_bar(by_id[run[0][3]])
                for run in self._merge(merged, presorted=False)
            ]
            _place_labels(state_bars)
            self._emit(
                Row(
                    depth=depth + 1,
                    label=name,
                    kind="state",
                    state_type=spans[0].state_type,
                    bars=state_bars,
                    event_id=spans[0].event_id,
                    note=f"{TIMES}{len(spans)}",
                    cls=_worst(s.outcome for s in spans),
                )
            )
        self._close_group()


def _extent(start: float, end: float) -> tuple[float, float]:
    """x and width (percent) of a bar: at least MIN_DRAWN wide, inside the track."""
    start = min(max(start, 0.0), 100.0)
    width = max(min(end, 100.0) - start, MIN_DRAWN)
    return min(start, 100.0 - width), width


def _place_labels(bars: list[Bar]) -> None:
    """A label goes right of its bar when there is room before the next bar
    (or the edge), else left of it, else inside a bar wide enough."""
    for i, bar in enumerate(bars):
        right_limit = bars[i + 1].x if i + 1 < len(bars) else 100.0
        left_limit = bars[i - 1].x + bars[i - 1].w if i > 0 else 0.0
        if right_limit - (bar.x + bar.w) >= LABEL_ROOM:
            bar.label_at = "right"
        elif bar.x - left_limit >= LABEL_ROOM:
            bar.label_at = "left"
        elif bar.w >= LABEL_ROOM * 1.5:
            bar.label_at = "inside"
        else:
            bar.label_at = ""


def layout(timeline: Timeline) -> Drawing:
    lay = _Layout(timeline)
    lay.lane(timeline.root, 0)
    scale = lay.scale
    markers = [
        Marker(
            round(scale.pct(when), 3),
            f"redrive #{count} at {offset_label((when - scale.start).total_seconds())}",
            event_id,
        )
        for when, count, event_id in timeline.redrives
    ]
    now_x = 100.0 if timeline.running else None
    return Drawing(
        rows=lay.rows,
        ticks=ticks(scale.total),
        markers=markers,
        bars=lay.bars,
        hidden_rows=lay.hidden,
        merged=lay.merged,
        now_x=now_x,
        attempts=attempts(markers),
    )


def attempts(markers: list[Marker]) -> list[Attempt]:
    """The attempts a redrive splits the run into, each from where it begins to
    where the next one does (none for an execution never redriven)."""
    if not markers:
        return []
    starts = [(0.0, 1), *((m.x, m.event_id) for m in markers)]
    out = []
    for n, (x, event_id) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else 100.0
        out.append(Attempt(x, round(max(0.0, end - x), 3), n + 1, event_id))
    return out
