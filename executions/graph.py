"""The graph of a state machine as a server-rendered SVG, and one execution's
path painted on it. No JavaScript: the layout is computed here, in Python.

The layout is a layered (Sugiyama-style) one, per state machine and per
nested machine (a Map's processor, each branch of a Parallel):

1. nodes are the states, plus a Start and an End terminal; edges are `Next`,
   each Choice rule (labelled with its condition) and its `Default`, each
   Catch (dashed, labelled with the errors it takes); a Retry is a loop marker
   on its state with the number of attempts its rules allow;
2. loops are broken by reversing the edges a depth-first walk from StartAt
   finds going back (they are drawn back up, pointing where they point);
3. each node's rank is its longest path from Start; edges that span ranks
   get a dummy node per rank crossed, so that they are routed round nodes;
4. within each rank, nodes are ordered by a few sweeps of barycentre
   ordering (down, then up), keeping the order with the fewest crossings;
5. x positions pull each node towards the mean of its neighbours, without
   overlap; a Map or a Parallel is a box with its inner machines laid out the
   same way inside (bottom-up, so a box knows its size before its rank does).

The layout depends only on the definition's text: it is cached by that text,
and the same text always gives the same SVG (no set or hash order anywhere).
Painting an execution on it (`Paint`) changes classes and links only.

Every state name, label and title is user data and is escaped; nothing from
the definition becomes an id or an attribute name. Imports only asl.py and
times.py of executions: it reads the definition (plain JSON) and the facts
the caller hands it.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape
from typing import Any

from executions import asl
from executions.times import human_seconds

# States laid out at most (every nesting level together); beyond, the page
# says the definition is too large to draw.
MAX_STATES = 1500
# Map / Parallel boxes nested deeper than this are drawn closed.
MAX_DEPTH = 8
# Barycentre sweeps (one down and one up each).
SWEEPS = 4
# Sizes, in SVG units (CSS pixels at 100 %).
NODE_W = 180.0
NODE_H = 36.0
TERMINAL_W = 64.0
TERMINAL_H = 26.0
DUMMY_W = 10.0
NODE_GAP = 28.0
RANK_GAP = 54.0
BOX_PAD = 14.0
BOX_HEAD = 26.0
BRANCH_GAP = 18.0
MARGIN = 12.0
CHAR_W = 7.0  # an average character of the node font
LABEL_CHAR_W = 6.0
LABEL_CHARS = 26
# Outcome of a state in a run (the facts the caller gives).
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CAUGHT = "caught"
TIMED_OUT = "timed-out"
ABORTED = "aborted"
OUTCOMES = (RUNNING, SUCCEEDED, FAILED, CAUGHT, TIMED_OUT, ABORTED)
_COMPOSITE = ("Map", "Parallel")
_NOT_A_CLASS = re.compile(r"[^A-Za-z0-9_-]")
_TERMINAL_TYPES = ("Succeed", "Fail")


# --- What the caller gives: one run's facts ---------------------------------------------


@dataclass(frozen=True)
class StateFacts:
    """What one execution did in one state (all its visits together)."""

    visits: int
    outcome: str  # one of OUTCOMES: running wins, then failed, timed out, ...
    first_event_id: int | None = None  # its first *StateEntered event
    seconds: float = 0.0  # time spent in it, all visits


@dataclass(frozen=True)
class Paint:
    """One execution on the graph: each state's facts, the transitions it took
    ((from, to) state names; "" for Start and End), links to the events."""

    states: Mapping[str, StateFacts]
    edges: frozenset[tuple[str, str]] = frozenset()
    hrefs: Mapping[str, str] = field(default_factory=dict)
    running: bool = False


# --- The layout ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Node:
    key: int
    kind: str  # state | start | end | dummy
    name: str = ""
    type: str = ""
    w: float = NODE_W
    h: float = NODE_H
    x: float = 0.0
    y: float = 0.0
    rank: int = 0
    retries: int = 0  # attempts the Retry rules allow (0: no Retry)
    boxes: list[_Box] = field(default_factory=list)  # Map: one; Parallel: a branch each
    closed: bool = False  # a Map / Parallel drawn without its inside (too deep)


@dataclass(eq=False, slots=True)
class _Edge:
    src: int
    dst: int
    kind: str  # next | choice | default | catch | start | end
    label: str = ""
    reversed: bool = False
    chain: list[int] = field(default_factory=list)  # layered: node keys, dummies between
    points: list[tuple[float, float]] = field(default_factory=list)
    # A piece of a shared trunk (see _trunks): the edges it carries, by source.
    sources: tuple[int, ...] = ()
    arrow: bool = True


@dataclass(eq=False, slots=True)
class _Box:
    """One laid-out machine: its nodes and edges, positions relative to it."""

    nodes: dict[int, _Node]
    edges: list[_Edge]
    pieces: list[_Edge] = field(default_factory=list)  # shared trunks, drawn once
    w: float = 0.0
    h: float = 0.0


@dataclass(frozen=True)
class Shape:
    """A node to draw, in absolute coordinates."""

    kind: str  # state | start | end | box | branch
    name: str
    type: str
    x: float
    y: float
    w: float
    h: float
    retries: int = 0
    closed: bool = False
    depth: int = 0


@dataclass(frozen=True)
class Line:
    """An edge to draw: its path through the layout, absolute coordinates."""

    src: str  # state name; "" for Start
    dst: str  # state name; "" for End
    kind: str
    label: str
    points: tuple[tuple[float, float], ...]
    loop: bool = False  # a state whose Next is itself
    # A piece of a trunk several edges share: taken when one of them is
    # ((source, dst) for each source); `src` is then "".
    sources: tuple[str, ...] = ()
    arrow: bool = True


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    shapes: tuple[Shape, ...]
    lines: tuple[Line, ...]
    states: int
    problem: str = ""  # why there is nothing to draw


class _Budget:
    def __init__(self) -> None:
        self.states = 0


def _short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(1, chars - 1)] + "\u2026"


def _rule_label(rule: Any) -> str:
    """A Choice rule in a few words: `$.x NumericEquals 3`, `And (2 rules)`,
    or a JSONata `Condition`."""
    if not isinstance(rule, dict):
        return "?"
    if "Condition" in rule:
        return str(rule["Condition"])
    for combinator in ("And", "Or"):
        if isinstance(rule.get(combinator), list):
            return f"{combinator} ({len(rule[combinator])} rules)"
    if isinstance(rule.get("Not"), dict):
        return "Not " + _rule_label(rule["Not"])
    variable = str(rule.get("Variable", ""))
    for key, value in rule.items():
        if key in ("Variable", "Next", "Comment", "Assign", "Output"):
            continue
        shown = value if isinstance(value, str) else json.dumps(value)
        return f"{variable} {key} {shown}".strip()
    return variable or "rule"


def _retries(state: Mapping[str, Any]) -> int:
    """The retries a state's Retry rules allow in all (MaxAttempts, 3 when
    not given); 0 draws no marker."""
    rules = state.get("Retry")
    if not isinstance(rules, list):
        return 0
    return sum(asl.max_attempts(rule) for rule in rules if isinstance(rule, dict))


def _inner_machines(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if state.get("Type") == "Parallel":
        branches = state.get("Branches")
        return [b for b in branches if isinstance(b, dict)] if isinstance(branches, list) else []
    if state.get("Type") == "Map":
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                return [state[key]]
    return []


def _machine(spec: Mapping[str, Any], depth: int, budget: _Budget) -> _Box:
    raw = spec.get("States")
    states = (
        {str(k): v for k, v in raw.items() if isinstance(v, dict)} if isinstance(raw, dict) else {}
    )
    budget.states += len(states)
    if budget.states > MAX_STATES:
        raise _TooBig
    nodes: dict[int, _Node] = {0: _Node(0, "start", w=TERMINAL_W, h=TERMINAL_H)}
    key_of: dict[str, int] = {}
    for name, state in states.items():
        key = len(nodes)
        node = _Node(key, "state", name=name, type=str(state.get("Type", "")))
        node.retries = _retries(state)
        if node.type in _COMPOSITE:
            if depth >= MAX_DEPTH:
                node.closed = True
            else:
                node.boxes = [_machine(m, depth + 1, budget) for m in _inner_machines(state)]
                _size_composite(node)
        nodes[key] = node
        key_of[name] = key
    end = len(nodes)
    nodes[end] = _Node(end, "end", w=TERMINAL_W, h=TERMINAL_H)

    edges: list[_Edge] = []
    merged: dict[tuple[int, int, str], _Edge] = {}

    def add(src: int, target: Any, kind: str, label: str = "") -> None:
        dst = end if target is None else key_of.get(str(target))
        if dst is None:
            return  # names a state that does not exist: nothing to draw to
        group = "catch" if kind == "catch" else "flow"
        same = merged.get((src, dst, group))
        if same is not None:
            if label and label not in same.label.split("; "):
                same.label = f"{same.label}; {label}" if same.label else label
            if kind == "default":
                same.kind = "default"
            return
        edge = _Edge(src, dst, kind, label)
        merged[(src, dst, group)] = edge
        edges.append(edge)

    start_at = spec.get("StartAt")
    if isinstance(start_at, str) and start_at in key_of:
        add(0, start_at, "start")
    for name, state in states.items():
        src = key_of[name]
        type_ = state.get("Type")
        if type_ == "Choice":
            choices = state.get("Choices")
            for rule in choices if isinstance(choices, list) else []:
                if isinstance(rule, dict) and "Next" in rule:
                    add(src, rule["Next"], "choice", _rule_label(rule))
            if "Default" in state:
                add(src, state["Default"], "default", "Default")
        elif "Next" in state:
            add(src, state["Next"], "next")
        if state.get("End") is True or type_ in _TERMINAL_TYPES:
            add(src, None, "end")
        catchers = state.get("Catch")
        for catcher in catchers if isinstance(catchers, list) else []:
            if isinstance(catcher, dict) and "Next" in catcher:
                errors = catcher.get("ErrorEquals")
                label = ", ".join(str(e) for e in errors) if isinstance(errors, list) else ""
                add(src, catcher["Next"], "catch", label or "Catch")
    box = _Box(nodes, edges)
    _layout(box)
    return box


class _TooBig(Exception):
    pass


def _size_composite(node: _Node) -> None:
    if not node.boxes:
        node.w, node.h = NODE_W, NODE_H + BOX_HEAD
        return
    inner_w = sum(b.w for b in node.boxes) + BRANCH_GAP * (len(node.boxes) - 1)
    inner_h = max(b.h for b in node.boxes)
    node.w = max(NODE_W, inner_w + 2 * BOX_PAD)
    node.h = BOX_HEAD + inner_h + BOX_PAD


# --- Layering -----------------------------------------------------------------------------


def _break_cycles(box: _Box) -> list[int]:
    """Reverse the edges that close loops; the order nodes were first reached
    in (the initial order). The flow (Next, Choice, Default) is walked first,
    depth-first from Start, and an edge going back is reversed; then each
    Catch is added forwards unless its target already leads to it, so that a
    Catch jumping back is what is drawn upwards, not the Next it jumps to."""
    out: dict[int, list[_Edge]] = {k: [] for k in box.nodes}
    catches: list[_Edge] = []
    for edge in box.edges:
        if edge.src == edge.dst:
            continue
        if edge.kind == "catch":
            catches.append(edge)
        else:
            out[edge.src].append(edge)
    state: dict[int, int] = {}  # 1: on the stack, 2: done
    order: list[int] = []
    roots = [0] + [k for k in box.nodes if k != 0]
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        order.append(root)
        stack: list[tuple[int, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(out[node]):
                stack[-1] = (node, i + 1)
                edge = out[node][i]
                seen = state.get(edge.dst)
                if seen == 1:
                    edge.reversed = True
                elif seen is None:
                    state[edge.dst] = 1
                    order.append(edge.dst)
                    stack.append((edge.dst, 0))
            else:
                state[node] = 2
                stack.pop()
    forward: dict[int, list[int]] = {k: [] for k in box.nodes}
    for edges in out.values():
        for edge in edges:
            a, b = (edge.dst, edge.src) if edge.reversed else (edge.src, edge.dst)
            forward[a].append(b)
    for edge in catches:
        if _reaches(forward, edge.dst, edge.src):
            edge.reversed = True
            forward[edge.dst].append(edge.src)
        else:
            forward[edge.src].append(edge.dst)
    return order


def _reaches(forward: dict[int, list[int]], a: int, b: int) -> bool:
    seen = {a}
    pending = [a]
    while pending:
        node = pending.pop()
        if node == b:
            return True
        for nxt in forward[node]:
            if nxt not in seen:
                seen.add(nxt)
                pending.append(nxt)
    return False


def _rank(box: _Box, order: list[int]) -> None:
    end = max(box.nodes)
    preds: dict[int, list[int]] = {k: [] for k in box.nodes}
    succs: dict[int, list[int]] = {k: [] for k in box.nodes}
    for edge in box.edges:
        if edge.src == edge.dst:
            continue
        a, b = (edge.dst, edge.src) if edge.reversed else (edge.src, edge.dst)
        succs[a].append(b)
        preds[b].append(a)
    # Kahn's order over the acyclic graph, ties by first-reached order.
    position = {k: i for i, k in enumerate(order)}
    waiting = {k: len(set(preds[k])) for k in box.nodes}
    ready = [(position[k], k) for k in box.nodes if waiting[k] == 0]
    heapq.heapify(ready)
    while ready:
        _, node = heapq.heappop(ready)
        if node == 0:
            box.nodes[node].rank = 0
        elif box.nodes[node].kind != "end":
            box.nodes[node].rank = max([box.nodes[p].rank + 1 for p in preds[node]] + [1])
        for s in dict.fromkeys(succs[node]):
            waiting[s] -= 1
            if waiting[s] == 0:
                heapq.heappush(ready, (position[s], s))
    last = max((n.rank for k, n in box.nodes.items() if k != end), default=0)
    box.nodes[end].rank = last + 1


def _add_dummies(box: _Box) -> None:
    """A dummy node per rank an edge crosses. Edges going down to the same
    node share theirs (edge concentration): the Catch of sixty Tasks to one
    Fail state is one trunk that they join, not sixty lines side by side."""
    trunks: dict[tuple[int, str], dict[int, int]] = {}
    for edge in box.edges:
        a, b = (edge.dst, edge.src) if edge.reversed else (edge.src, edge.dst)
        chain = [a]
        if a != b:
            trunk = (
                trunks.setdefault((b, "catch" if edge.kind == "catch" else "flow"), {})
                if not edge.reversed
                else {}
            )
            for r in range(box.nodes[a].rank + 1, box.nodes[b].rank):
                key = trunk.get(r)
                if key is None:
                    key = len(box.nodes)
                    box.nodes[key] = _Node(key, "dummy", w=DUMMY_W, h=0.0, rank=r)
                    trunk[r] = key
                chain.append(key)
        chain.append(b)
        edge.chain = chain


def _crossings(upper: list[int], lower: list[int], segments: list[tuple[int, int]]) -> int:
    """Crossings between two adjacent ranks; `segments` are those between them."""
    pos_u = {k: i for i, k in enumerate(upper)}
    pos_l = {k: i for i, k in enumerate(lower)}
    pairs = sorted((pos_u[a], pos_l[b]) for a, b in segments)
    count = 0
    for i, (_, y1) in enumerate(pairs):
        for x2, y2 in pairs[i + 1 :]:
            if x2 != pairs[i][0] and y2 < y1:
                count += 1
    return count


def _order(box: _Box, first_reached: list[int]) -> list[list[int]]:
    depth = max(n.rank for n in box.nodes.values()) + 1
    ranks: list[list[int]] = [[] for _ in range(depth)]
    seen = {k: i for i, k in enumerate(first_reached)}
    unique: dict[tuple[int, int], None] = {}
    for edge in box.edges:
        for a, b in zip(edge.chain, edge.chain[1:], strict=False):
            if a != b:
                unique[(a, b)] = None
    segments = list(unique)
    # The segments between rank r and r + 1, by r.
    between: list[list[tuple[int, int]]] = [[] for _ in range(depth)]
    for a, b in segments:
        between[box.nodes[a].rank].append((a, b))
    initial: dict[int, tuple[int, int]] = {k: (i, 0) for k, i in seen.items()}
    for edge in box.edges:  # dummies follow the node their edge leaves
        for k in edge.chain[1:-1]:
            initial[k] = (seen.get(edge.chain[0], 0), k)
    for key in sorted(box.nodes, key=lambda k: initial.get(k, (len(seen), k))):
        ranks[box.nodes[key].rank].append(key)
    up: dict[int, list[int]] = {k: [] for k in box.nodes}
    down: dict[int, list[int]] = {k: [] for k in box.nodes}
    for a, b in segments:
        down[a].append(b)
        up[b].append(a)

    def total(layers: list[list[int]]) -> int:
        return sum(_crossings(layers[r], layers[r + 1], between[r]) for r in range(len(layers) - 1))

    best = [list(r) for r in ranks]
    best_count = total(best)
    for _ in range(SWEEPS):
        for direction in (1, -1):
            rng = range(1, depth) if direction == 1 else range(depth - 2, -1, -1)
            for r in rng:
                ref = {k: i for i, k in enumerate(ranks[r - direction])}
                links = up if direction == 1 else down
                current = {k: i for i, k in enumerate(ranks[r])}

                def weight(
                    k: int,
                    ref: dict[int, int] = ref,
                    links: dict[int, list[int]] = links,
                    current: dict[int, int] = current,
                ) -> tuple[float, int]:
                    near = [ref[n] for n in links[k] if n in ref]
                    centre = sum(near) / len(near) if near else float(current[k])
                    return centre, current[k]

                ranks[r].sort(key=weight)
            count = total(ranks)
            if count < best_count:
                best, best_count = [list(r) for r in ranks], count
        if best_count == 0:
            break
    return best


def _place(box: _Box, ranks: list[list[int]]) -> None:
    nodes = box.nodes
    up: dict[int, list[int]] = {k: [] for k in nodes}
    down: dict[int, list[int]] = {k: [] for k in nodes}
    unique: dict[tuple[int, int], None] = {}
    for edge in box.edges:
        for a, b in zip(edge.chain, edge.chain[1:], strict=False):
            if a != b:
                unique[(a, b)] = None
    for a, b in unique:
        down[a].append(b)
        up[b].append(a)
    for layer in ranks:  # packed, from the left
        x = 0.0
        for k in layer:
            nodes[k].x = x
            x += nodes[k].w + NODE_GAP
    widest = max((sum(nodes[k].w + NODE_GAP for k in layer) for layer in ranks), default=0.0)
    for layer in ranks:  # centred under the widest
        used = sum(nodes[k].w + NODE_GAP for k in layer)
        for k in layer:
            nodes[k].x += (widest - used) / 2

    def centre(k: int) -> float:
        return nodes[k].x + nodes[k].w / 2

    def settle(layer: list[int], wanted: list[float]) -> None:
        # Each node as near its wanted left edge as the order allows: from
        # the left, from the right, then the mean of the two made legal.
        left: list[float] = []
        for i in range(len(layer)):
            x = wanted[i]
            if i:
                x = max(x, left[-1] + nodes[layer[i - 1]].w + NODE_GAP)
            left.append(x)
        right: list[float] = [0.0] * len(layer)
        for i in range(len(layer) - 1, -1, -1):
            x = wanted[i]
            if i < len(layer) - 1:
                x = min(x, right[i + 1] - nodes[layer[i]].w - NODE_GAP)
            right[i] = x
        previous_end = float("-inf")
        for i, k in enumerate(layer):
            x = max((left[i] + right[i]) / 2, previous_end)
            nodes[k].x = x
            previous_end = x + nodes[k].w + NODE_GAP

    for _ in range(SWEEPS):
        for direction in (-1, 1):
            rng = range(1, len(ranks)) if direction == 1 else range(len(ranks) - 2, -1, -1)
            links = up if direction == 1 else down
            for r in rng:
                layer = ranks[r]
                wanted = []
                for k in layer:
                    # A state lines up with the states next to it, and a
                    # long edge with its own next piece, more than either
                    # with the other: chains of states and long edges stay
                    # straight instead of dragging each other sideways.
                    dummy = nodes[k].kind == "dummy"
                    weights = [
                        1.0 if (nodes[n].kind == "dummy") == dummy else 0.2 for n in links[k]
                    ]
                    near = sum(w * centre(n) for w, n in zip(weights, links[k], strict=True))
                    c = near / sum(weights) if weights else centre(k)
                    wanted.append(c - nodes[k].w / 2)
                settle(layer, wanted)
    low = min((n.x for n in nodes.values()), default=0.0)
    y = 0.0
    for layer in ranks:
        tallest = max((nodes[k].h for k in layer), default=0.0)
        for k in layer:
            nodes[k].x -= low
            nodes[k].y = y + (tallest - nodes[k].h) / 2 if nodes[k].kind != "dummy" else y
            if nodes[k].kind == "dummy":
                nodes[k].h = tallest
        y += tallest + RANK_GAP
    box.w = max((n.x + n.w for n in nodes.values()), default=0.0)
    box.h = max(0.0, y - RANK_GAP)


def _route(box: _Box) -> None:
    """Each edge's points: out of its source's bottom, through its dummies,
    into its target's top; ports spread along a side, in the order of where
    the edges go, so that they do not cross at the node."""
    nodes = box.nodes
    outs: dict[int, list[_Edge]] = {}
    ins: dict[int, list[_Edge]] = {}
    for edge in box.edges:
        if edge.chain[0] == edge.chain[-1]:
            continue
        outs.setdefault(edge.chain[0], []).append(edge)
        ins.setdefault(edge.chain[-1], []).append(edge)

    def mid(k: int) -> float:
        return nodes[k].x + nodes[k].w / 2

    port_out: dict[int, float] = {}
    port_in: dict[int, float] = {}
    for k, group in outs.items():
        group.sort(key=lambda e: (mid(e.chain[1]), e.chain[-1]))
        for i, edge in enumerate(group):
            port_out[id(edge)] = nodes[k].x + nodes[k].w * (i + 1) / (len(group) + 1)
    for k, group in ins.items():
        group.sort(key=lambda e: (mid(e.chain[-2]), e.chain[0]))
        for i, edge in enumerate(group):
            port_in[id(edge)] = nodes[k].x + nodes[k].w * (i + 1) / (len(group) + 1)
    for edge in box.edges:
        a, b = edge.chain[0], edge.chain[-1]
        if a == b:
            n = nodes[a]
            edge.points = [(n.x + n.w, n.y + n.h * 0.3), (n.x + n.w, n.y + n.h * 0.7)]
            continue
        points = [(port_out[id(edge)], nodes[a].y + nodes[a].h)]
        for k in edge.chain[1:-1]:
            d = nodes[k]
            points.append((d.x + d.w / 2, d.y))
            points.append((d.x + d.w / 2, d.y + d.h))
        points.append((port_in[id(edge)], nodes[b].y))
        points = _straight(points)
        if edge.reversed:
            points.reverse()
        edge.points = points
    _trunks(box, port_in)


def _straight(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Without the points that lie between two straight above and below."""
    return [
        p
        for i, p in enumerate(points)
        if i in (0, len(points) - 1) or not (points[i - 1][0] == p[0] == points[i + 1][0])
    ]


def _trunks(box: _Box, port_in: dict[int, float]) -> None:
    """Edges that share dummies (see _add_dummies) are drawn as their own
    short piece down to where they join the trunk, and the trunk once, in
    pieces between joins: a piece is taken when an edge joining above it
    is. Sixty Catches to one Fail state are one line, not sixty on top of
    each other (a 100-state graph's SVG was three quarters such lines)."""
    nodes = box.nodes
    groups: dict[tuple[int, str], list[_Edge]] = {}
    for edge in box.edges:
        if not edge.reversed and len(edge.chain) > 2:
            group = "catch" if edge.kind == "catch" else "flow"
            groups.setdefault((edge.chain[-1], group), []).append(edge)
    for (dst, group), edges in groups.items():
        if len(edges) < 2:
            continue
        trunk: dict[int, _Node] = {}
        for edge in edges:
            for k in edge.chain[1:-1]:
                trunk[nodes[k].rank] = nodes[k]
        entries = sorted({nodes[e.chain[1]].rank for e in edges})
        for edge in edges:
            d = nodes[edge.chain[1]]
            edge.points = [edge.points[0], (d.x + d.w / 2, d.y)]
            edge.arrow = False
        last = max(trunk)
        end = (port_in[id(edges[0])], nodes[dst].y)
        for i, rank in enumerate(entries):
            stop = entries[i + 1] if i + 1 < len(entries) else last + 1
            points: list[tuple[float, float]] = []
            for r in range(rank, stop):
                d = trunk[r]
                points += [(d.x + d.w / 2, d.y), (d.x + d.w / 2, d.y + d.h)]
            if stop <= last:
                points.append((trunk[stop].x + trunk[stop].w / 2, trunk[stop].y))
            else:
                points.append(end)
            box.pieces.append(
                _Edge(
                    src=-1,
                    dst=dst,
                    kind="catch" if group == "catch" else "next",
                    points=_straight(points),
                    sources=tuple(e.src for e in edges if nodes[e.chain[1]].rank <= rank),
                    arrow=stop > last,
                )
            )


def _layout(box: _Box) -> None:
    order = _break_cycles(box)
    _rank(box, order)
    _add_dummies(box)
    ranks = _order(box, order)
    _place(box, ranks)
    _route(box)


def _flatten(
    box: _Box, dx: float, dy: float, depth: int, shapes: list[Shape], lines: list[Line]
) -> None:
    names = {k: n.name for k, n in box.nodes.items() if n.kind == "state"}
    for edge in [*box.edges, *box.pieces]:
        lines.append(
            Line(
                src=names.get(edge.src, ""),
                dst=names.get(edge.dst, ""),
                kind=edge.kind,
                label=edge.label,
                points=tuple((round(x + dx, 1), round(y + dy, 1)) for x, y in edge.points),
                loop=edge.src == edge.dst,
                sources=tuple(names.get(k, "") for k in edge.sources),
                arrow=edge.arrow,
            )
        )
    for node in box.nodes.values():
        if node.kind == "dummy":
            continue
        x, y = round(node.x + dx, 1), round(node.y + dy, 1)
        kind = "box" if node.type in _COMPOSITE and not node.closed else node.kind
        shapes.append(
            Shape(
                kind, node.name, node.type, x, y, node.w, node.h, node.retries, node.closed, depth
            )
        )
        if node.boxes:
            inner_w = sum(b.w for b in node.boxes) + BRANCH_GAP * (len(node.boxes) - 1)
            bx = x + (node.w - inner_w) / 2
            for i, inner in enumerate(node.boxes):
                by = y + BOX_HEAD
                if node.type == "Parallel":
                    shapes.append(
                        Shape(
                            "branch",
                            f"branch {i + 1}",
                            "",
                            round(bx - 6, 1),
                            round(by - 4, 1),
                            inner.w + 12,
                            inner.h + 8,
                            depth=depth + 1,
                        )
                    )
                _flatten(inner, bx, by, depth + 1, shapes, lines)
                bx += inner.w + BRANCH_GAP


@lru_cache(maxsize=32)
def layout(definition: str) -> Layout:
    """The drawing of a definition (cached by its text)."""
    try:
        machine = json.loads(definition)
    except (ValueError, RecursionError):
        machine = None
    if not isinstance(machine, dict) or not isinstance(machine.get("States"), dict):
        return Layout(0, 0, (), (), 0, "The definition is not a state machine (no States).")
    budget = _Budget()
    try:
        box = _machine(machine, 0, budget)
    except _TooBig:
        return Layout(
            0, 0, (), (), budget.states, f"The definition has more than {MAX_STATES} states."
        )
    except RecursionError:
        return Layout(0, 0, (), (), budget.states, "The definition is nested too deeply.")
    if budget.states == 0:
        return Layout(0, 0, (), (), 0, "The definition has no states.")
    shapes: list[Shape] = []
    lines: list[Line] = []
    _flatten(box, MARGIN, MARGIN, 0, shapes, lines)
    # Boxes first, so that what is inside them is drawn over them.
    shapes.sort(key=lambda s: (s.kind not in ("box", "branch"), s.depth))
    return Layout(
        round(box.w + 2 * MARGIN, 1),
        round(box.h + 2 * MARGIN, 1),
        tuple(shapes),
        tuple(lines),
        budget.states,
    )


# --- The SVG ------------------------------------------------------------------------------


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _path(points: tuple[tuple[float, float], ...]) -> str:
    """Vertical-tangent curves through the points (straight where they line up)."""
    (x0, y0), rest = points[0], points[1:]
    out = [f"M{_n(x0)} {_n(y0)}"]
    for x1, y1 in rest:
        if x1 == x0 or y1 == y0:
            out.append(f"L{_n(x1)} {_n(y1)}")
        else:
            bend = (y1 - y0) / 2
            out.append(f"C{_n(x0)} {_n(y0 + bend)} {_n(x1)} {_n(y1 - bend)} {_n(x1)} {_n(y1)}")
        x0, y0 = x1, y1
    return " ".join(out)


def _state_title(shape: Shape, facts: StateFacts | None, painted: bool) -> str:
    words = f"{shape.name} ({shape.type or 'state'})"
    if shape.retries:
        words += f"; Retry: up to {shape.retries} retr{'ies' if shape.retries != 1 else 'y'}"
    if facts is not None:
        visits = f"{facts.visits} visit{'s' if facts.visits != 1 else ''}"
        words += f"; {facts.outcome}, {visits}, {human_seconds(facts.seconds)}"
    elif painted:
        words += "; never reached"
    return words


def _type_class(type_: str) -> str:
    return _NOT_A_CLASS.sub("", type_)[:20] or "unknown"


def _state_class(facts: StateFacts | None, painted: bool) -> str:
    if facts is None:
        return " unreached" if painted else ""
    return f" visited o-{facts.outcome}"


def render(layout_: Layout, paint: Paint | None = None, *, label: str = "") -> str:
    """The SVG of a layout, painted with one run when `paint` is given. Every
    text is escaped here."""
    if not layout_.shapes:
        return ""
    painted = paint is not None
    states = paint.states if paint is not None else {}
    hrefs = paint.hrefs if paint is not None else {}
    taken = paint.edges if paint is not None else frozenset()
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sfn-graph{" painted" if painted else ""}" '
        f'viewBox="0 0 {_n(layout_.width)} {_n(layout_.height)}" width="{_n(layout_.width)}" '
        f'height="{_n(layout_.height)}" role="img" '
        f'aria-label="{escape(label or "State machine graph")}">',
        "<defs>",
    ]
    for marker in ("arrow", "arrow-taken", "arrow-catch"):
        out.append(
            f'<marker id="sfg-{marker}" class="sfg-{marker}" viewBox="0 0 10 10" refX="9" '
            'refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" '
            'orient="auto-start-reverse">'
            '<path d="M0 0L10 5L0 10z"/></marker>'
        )
    out.append("</defs>")
    for shape in layout_.shapes:
        if shape.kind in ("box", "branch"):
            out.append(_box_svg(shape, states, hrefs, painted))
    labels: list[str] = []
    # Where the taken edges leave a Start or reach an End: those terminals
    # light up (each nested machine has its own).
    touched: set[tuple[float, float]] = set()

    def was_taken(line: Line) -> bool:
        if line.sources:
            return any((source, line.dst) in taken for source in line.sources)
        return (line.src, line.dst) in taken

    for line in layout_.lines:
        if was_taken(line) and not line.loop:
            if line.src == "" and not line.sources:
                touched.add(line.points[0])
            if line.dst == "" and line.arrow:
                touched.add(line.points[-1])
    for line in layout_.lines:
        is_taken = was_taken(line)
        state = " taken" if is_taken else " not-taken" if painted else ""
        cls = f"edge k-{line.kind}{state}"
        marker = "arrow-taken" if is_taken else "arrow-catch" if line.kind == "catch" else "arrow"
        if line.loop:
            (x, y0), (_, y1) = line.points
            d = (
                f"M{_n(x)} {_n(y0)} C{_n(x + 30)} {_n(y0 - 10)} "
                f"{_n(x + 30)} {_n(y1 + 10)} {_n(x)} {_n(y1)}"
            )
        else:
            d = _path(line.points)
        end = f' marker-end="url(#sfg-{marker})"' if line.arrow else ""
        out.append(f'<path class="{cls}" d="{d}"{end}/>')
        if line.label:
            labels.append(_label_svg(line, cls))
    for shape in layout_.shapes:
        if shape.kind in ("state", "start", "end"):
            out.append(_node_svg(shape, states, hrefs, painted, touched))
    out.extend(labels)
    out.append("</svg>")
    return "".join(out)


def _label_svg(line: Line, cls: str) -> str:
    # On the drawn curve (see _path), a third of the way from the source.
    (x0, y0), (x1, y1) = line.points[0], line.points[1]
    t = 0.4 if x0 != x1 and y0 != y1 else 0.5
    u = 1 - t
    bend = (y1 - y0) / 2 if x0 != x1 and y0 != y1 else 0.0
    x = u**3 * x0 + 3 * u * u * t * x0 + 3 * u * t * t * x1 + t**3 * x1
    y = u**3 * y0 + 3 * u * u * t * (y0 + bend) + 3 * u * t * t * (y1 - bend) + t**3 * y1
    text = _short(line.label, LABEL_CHARS)
    w = len(text) * LABEL_CHAR_W + 8
    return (
        f'<g class="edge-label k-{line.kind}{" taken" if "taken" in cls.split() else ""}">'
        f"<title>{escape(line.label)}</title>"
        f'<rect x="{_n(x - w / 2)}" y="{_n(y - 8)}" width="{_n(w)}" height="15" rx="3"/>'
        f'<text x="{_n(x)}" y="{_n(y + 3)}" text-anchor="middle">{escape(text)}</text></g>'
    )


def _box_svg(
    shape: Shape, states: Mapping[str, StateFacts], hrefs: Mapping[str, str], painted: bool
) -> str:
    if shape.kind == "branch":
        return (
            f'<rect class="branch" x="{_n(shape.x)}" y="{_n(shape.y)}" width="{_n(shape.w)}" '
            f'height="{_n(shape.h)}" rx="6"/>'
        )
    facts = states.get(shape.name)
    cls = f"node box t-{_type_class(shape.type)}{_state_class(facts, painted)}"
    head = _short(f"{shape.type}: {shape.name}", int((shape.w - 40) / CHAR_W))
    body = (
        f"<title>{escape(_state_title(shape, facts, painted))}</title>"
        f'<rect x="{_n(shape.x)}" y="{_n(shape.y)}" width="{_n(shape.w)}" '
        f'height="{_n(shape.h)}" rx="8"/>'
        f'<text class="box-head" x="{_n(shape.x + 10)}" y="{_n(shape.y + 17)}">'
        f"{escape(head)}</text>" + _retry_svg(shape)
    )
    return _linked(f'<g class="{cls}">{body}</g>', hrefs.get(shape.name))


def _retry_svg(shape: Shape) -> str:
    if not shape.retries:
        return ""
    x, y = shape.x + shape.w - 30, shape.y - 7
    return (
        f'<g class="retry"><rect x="{_n(x)}" y="{_n(y)}" width="34" height="14" rx="7"/>'
        f'<text x="{_n(x + 17)}" y="{_n(y + 10.5)}" text-anchor="middle">'
        f"\u21bb{shape.retries}</text></g>"
    )


def _linked(svg: str, href: str | None) -> str:
    return f'<a href="{escape(href)}">{svg}</a>' if href else svg


def _node_svg(
    shape: Shape,
    states: Mapping[str, StateFacts],
    hrefs: Mapping[str, str],
    painted: bool,
    touched: set[tuple[float, float]],
) -> str:
    x, y, w, h = _n(shape.x), _n(shape.y), _n(shape.w), _n(shape.h)
    if shape.kind in ("start", "end"):
        word = "Start" if shape.kind == "start" else "End"
        reached = ""
        if any(
            shape.x - 1 <= px <= shape.x + shape.w + 1
            and shape.y - 1 <= py <= shape.y + shape.h + 1
            for px, py in touched
        ):
            reached = " visited"
        return (
            f'<g class="node terminal t-{shape.kind}{reached}"><rect x="{x}" y="{y}" width="{w}" '
            f'height="{h}" rx="{_n(shape.h / 2)}"/><text x="{_n(shape.x + shape.w / 2)}" '
            f'y="{_n(shape.y + shape.h / 2 + 4)}" text-anchor="middle">{word}</text></g>'
        )
    facts = states.get(shape.name)
    terminal = " end-state" if shape.type in _TERMINAL_TYPES else ""
    closed = " closed" if shape.closed else ""
    cls = f"node t-{_type_class(shape.type)}{terminal}{closed}{_state_class(facts, painted)}"
    rx = _n(shape.h / 2) if terminal else "6"
    name = _short(shape.name, int((shape.w - 16) / CHAR_W))
    body = (
        f"<title>{escape(_state_title(shape, facts, painted))}</title>"
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}"/>'
        f'<text x="{_n(shape.x + shape.w / 2)}" y="{_n(shape.y + shape.h / 2 + 4)}" '
        f'text-anchor="middle">{escape(name)}</text>' + _retry_svg(shape)
    )
    if facts is not None and facts.visits > 1:
        body += (
            f'<text class="visits" x="{_n(shape.x + 6)}" y="{_n(shape.y + 11)}">'
            f"\u00d7{facts.visits}</text>"
        )
    return _linked(f'<g class="{cls}">{body}</g>', hrefs.get(shape.name))


def state_names(layout_: Layout) -> list[str]:
    """The states drawn, in drawing order (tests and the legend read it)."""
    return [s.name for s in layout_.shapes if s.kind in ("state", "box")]
