"""The graph of a 100-state definition, through the graph page and the card
the detail page loads, on PostgreSQL (issue 13: median <= 100 ms).

    .venv/bin/python -m bench.graph                 # ~1 minute
    .venv/bin/python -m bench.graph --runs 50

It makes (again, each run) one state machine whose definition has 100
states (Tasks with Retry and Catch, Choices, Waits, a Map with an inner
machine, a Parallel with two branches, Succeed and Fail), and one succeeded
execution of it with a history of a few hundred events that visits most of
them (the Map three times), its definition stored as the one it ran. Then,
as bench/pages.py times pages (Django's test client in-process, production
settings, signed in; wall time and the CPU time of the app and its
PostgreSQL backend), it times:

- `/executions/<arn>/graph/`: the full page (layout cached after the first
  request, as in a running server: the layout is cached by definition text);
- `/executions/<arn>/graph/?part=card`: what the detail page loads;
- the layout alone, cold (cache cleared each time), in this process.

The database is its own (`BENCH_DB_GRAPH`, default sfnui_bench_graph), so
nothing else is disturbed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import statistics
import time
from typing import Any

from bench.common import report

DB_GRAPH = "postgres://postgres@127.0.0.1:5432/sfnui_bench_graph"
TARGET_MS = 100
ACCOUNT = "123456789012"
REGION = "us-east-1"


def definition() -> dict[str, Any]:
    """100 states in all: 89 at the top, a Map of 4, a Parallel of 2 x 3 + 1."""
    states: dict[str, Any] = {}
    top = 89
    names = [f"Step{i:02d}" for i in range(top)]
    for i, name in enumerate(names):
        following = names[i + 1] if i + 1 < top else None
        if i == 20:
            states[name] = {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "StartAt": "Load",
                    "States": {
                        "Load": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Next": "Check",
                        },
                        "Check": {
                            "Type": "Choice",
                            "Choices": [
                                {"Variable": "$.ok", "BooleanEquals": True, "Next": "Save"}
                            ],
                            "Default": "Skip",
                        },
                        "Save": {"Type": "Pass", "End": True},
                        "Skip": {"Type": "Pass", "End": True},
                    },
                },
                "Next": following,
            }
        elif i == 40:
            branch = [
                {
                    "StartAt": f"{side}1",
                    "States": {
                        f"{side}1": {"Type": "Pass", "Next": f"{side}2"},
                        f"{side}2": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Next": f"{side}3",
                        },
                        f"{side}3": {"Type": "Pass", "End": True},
                    },
                }
                for side in ("Left", "Right")
            ]
            states[name] = {"Type": "Parallel", "Branches": branch, "Next": following}
        elif i % 10 == 5 and i + 3 < top:
            states[name] = {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.fast", "BooleanEquals": True, "Next": names[i + 3]},
                    {"Variable": "$.retry", "IsPresent": True, "Next": names[max(0, i - 4)]},
                ],
                "Default": following,
            }
        elif i % 10 == 8:
            states[name] = {"Type": "Wait", "Seconds": 1, "Next": following}
        elif following is None:
            states[name] = {"Type": "Succeed"}
        else:
            states[name] = {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
                "Next": following,
            }
    states["Failed"] = {"Type": "Fail", "Error": "Bench.Failed"}
    return {"StartAt": names[0], "States": states}


def make_run() -> str:
    """The state machine and its execution (made again each run); its ARN."""
    from executions.models import Definition, Execution, HistoryEvent, StateMachine

    text = json.dumps(definition())
    sm_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:bench-graph-100"
    StateMachine.objects.filter(arn=sm_arn).delete()
    sm = StateMachine.objects.create(
        arn=sm_arn, name="bench-graph-100", region=REGION, account=ACCOUNT, definition=text
    )
    stored, _ = Definition.objects.get_or_create(
        sha256=hashlib.sha256(text.encode()).hexdigest(), defaults={"text": text}
    )
    t0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    rows: list[tuple[str, dict[str, Any]]] = [("ExecutionStarted", {"input": "{}"})]

    def visit(name: str, kind: str, inner: list[tuple[str, dict[str, Any]]] = ()) -> None:  # type: ignore[assignment]
        rows.append((f"{kind}StateEntered", {"name": name, "input": "{}"}))
        if kind == "Task":
            rows.extend(
                [
                    ("TaskScheduled", {"resource": "invoke", "resourceType": "lambda"}),
                    ("TaskStarted", {"resource": "invoke", "resourceType": "lambda"}),
                    ("TaskSucceeded", {"resource": "invoke", "resourceType": "lambda"}),
                ]
            )
        rows.extend(inner)
        rows.append((f"{kind}StateExited", {"name": name, "output": "{}"}))

    spec = definition()["States"]
    for name, state in spec.items():
        if name == "Failed":
            continue
        kind = str(state["Type"])
        if kind == "Map":
            inner: list[tuple[str, dict[str, Any]]] = [("MapStateStarted", {"length": 3})]
            for index in range(3):
                inner.append(("MapIterationStarted", {"name": name, "index": index}))
                for step, step_kind in (("Load", "Task"), ("Check", "Choice"), ("Save", "Pass")):
                    inner.append((f"{step_kind}StateEntered", {"name": step}))
                    inner.append((f"{step_kind}StateExited", {"name": step}))
                inner.append(("MapIterationSucceeded", {"name": name, "index": index}))
            inner.append(("MapStateSucceeded", {}))
            visit(name, kind, inner)
        elif kind == "Parallel":
            inner = [("ParallelStateStarted", {})]
            for side in ("Left", "Right"):
                for n, step_kind in ((1, "Pass"), (2, "Task"), (3, "Pass")):
                    inner.append((f"{step_kind}StateEntered", {"name": f"{side}{n}"}))
                    inner.append((f"{step_kind}StateExited", {"name": f"{side}{n}"}))
            inner.append(("ParallelStateSucceeded", {}))
            visit(name, kind, inner)
        else:
            visit(name, kind)
    rows.append(("ExecutionSucceeded", {"output": "{}"}))
    ex = Execution.objects.create(
        arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:bench-graph-100:run-1",
        name="run-1",
        state_machine=sm,
        status="SUCCEEDED",
        start_date=t0,
        stop_date=t0 + dt.timedelta(seconds=len(rows)),
        input="{}",
        output="{}",
        needs_describe=False,
        described_at=t0,
        synced_at=t0,
        history_complete=True,
        last_event_id=len(rows),
        definition=stored,
    )
    HistoryEvent.objects.bulk_create(
        HistoryEvent(
            execution=ex,
            event_id=i,
            previous_event_id=i - 1,
            timestamp=t0 + dt.timedelta(milliseconds=300 * i),
            type=type_,
            details_key="",
            details=details,
        )
        for i, (type_, details) in enumerate(rows, start=1)
    )
    return ex.arn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DB_GRAPH", DB_GRAPH))
    args = parser.parse_args()

    from bench.pages import _client, _django, _time

    _django(args.database_url)
    from django.urls import reverse

    from executions import graph
    from executions.models import Execution

    arn = make_run()
    ex = Execution.objects.get(arn=arn)
    client = _client()
    page = reverse("execution_graph", args=[arn])
    results = {
        "page": _time(client, page, args.runs, args.warmup),
        "card": _time(client, page + "?part=card", args.runs, args.warmup),
    }
    text = ex.definition.text if ex.definition else ""
    cold = []
    for _ in range(args.runs):
        graph.layout.cache_clear()
        t0 = time.perf_counter()
        drawn = graph.layout(text)
        cold.append((time.perf_counter() - t0) * 1000)
    html = client.get(page, secure=True).content.decode()
    result = {
        "states": drawn.states,
        "events": ex.last_event_id,
        "svg_bytes": len(graph.render(drawn)),
        "page_has_svg": "<svg" in html,
        "layout_cold_median_ms": round(statistics.median(cold), 1),
        "target_median_ms": TARGET_MS,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **{
            name: {
                k: r[k]
                for k in ("median_ms", "p95_ms", "idle_median_ms", "queries", "bytes", "runs")
            }
            for name, r in results.items()
        },
        "met": all(r["median_ms"] <= TARGET_MS for r in results.values()),
    }
    report("graph", result)


if __name__ == "__main__":
    main()
