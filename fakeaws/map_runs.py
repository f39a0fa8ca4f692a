"""Distributed Map runs, as Step Functions serves them, for the fake endpoint.

moto's interpreter runs a `"Mode": "DISTRIBUTED"` Map inline: it writes a
MapRunStarted event, but its children are not executions (ListExecutions
with `mapRunArn` fails), it rejects ToleratedFailurePercentage/Count in the
definition, and its UpdateMapRun changes nothing. So Map Runs here are
**simulated**, attached to a real (moto) parent execution:

- `MapRuns.create(executionArn, label, items, ...)` (or the control endpoint
  `POST /fakeaws/map-runs`) starts a Map Run of the parent. Each item says how
  long its child runs (`seconds`) and whether it fails (`fail`, with `error`
  and `cause`). Children start in item order, at most `maxConcurrency` at a
  time (0: no limit, AWS's "up to 10,000"), each as soon as a slot frees.
- Failure tolerance as AWS documents it: with neither tolerance set, the
  first failed child fails the Map Run; otherwise it fails when the failed
  children exceed `toleratedFailureCount` or `toleratedFailurePercentage` of
  the items (whichever is set). A failed Map Run aborts its running children;
  items never started count as aborted items (no execution exists for them).
  A parent that ends (stopped, timed out) aborts its Map Runs likewise.
- The clock is the wall clock: every call first advances the simulation to
  "now", so UpdateMapRun's new `maxConcurrency` applies from the moment it is
  sent (lowering it lets running children finish, raising it starts more).

What the API then answers, shaped as in AWS's API reference:

- ListMapRuns(executionArn): `mapRuns` of {executionArn, mapRunArn,
  stateMachineArn, startDate, stopDate}, newest first, paged.
- DescribeMapRun(mapRunArn): status, dates, maxConcurrency, the tolerances,
  itemCounts and executionCounts (pending, running, succeeded, failed,
  timedOut, aborted, total, resultsWritten, failuresNotRedrivable,
  pendingRedrive), redriveCount 0 (Map Run redrive is not simulated).
- UpdateMapRun: AWS's ranges (maxConcurrency >= 0, percentage 0..100,
  count >= 0) as ValidationException; at least one of the three is needed;
  a Map Run that is not RUNNING is refused with ValidationException (AWS's
  exact wording there is not documented; the message is ours).
- ListExecutions(mapRunArn, statusFilter, redriveFilter): the children,
  newest first, with `mapRunArn` and `itemCount` (1: one item per child).
- DescribeExecution of a child (its ARN is
  `arn:aws:states:R:A:execution:PARENT/LABEL:UUID`): with `mapRunArn`,
  `redriveStatus` REDRIVABLE_BY_MAP_RUN for a failed or aborted child.
- GetExecutionHistory of a Standard child: ExecutionStarted, then its end
  event (ExecutionSucceeded / ExecutionFailed / ExecutionAborted). No state
  events: the children's work is not interpreted. An Express Map Run's
  children have no history API (AWS: InvalidArn, "not supported by EXPRESS").
- The parent's GetExecutionHistory gets MapRunStarted (with
  `mapRunStartedEventDetails.mapRunArn`) and MapRunSucceeded / MapRunFailed
  (`mapRunFailedEventDetails` error and cause) / MapRunAborted, at their
  times among moto's own events, ids renumbered in time order (new events
  only ever come last, so ids already read never change).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# What maxConcurrency 0 means for a distributed Map.
UNLIMITED = 10_000
_TERMINAL = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class MapRunError(Exception):
    """An AWS error answer: code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Child:
    index: int
    name: str
    arn: str
    input: str
    seconds: float
    fails: bool
    error: str = ""
    cause: str = ""
    # PENDING (not started: no execution yet), RUNNING, SUCCEEDED, FAILED, ABORTED
    status: str = "PENDING"
    start: float = 0.0
    stop: float | None = None

    @property
    def ends_at(self) -> float:
        return self.start + self.seconds


@dataclass
class MapRun:
    arn: str
    execution_arn: str
    state_machine_arn: str  # the children's: ...:stateMachine:PARENT/LABEL
    label: str
    express: bool
    start: float
    max_concurrency: int
    tolerated_percentage: float | None
    tolerated_count: int | None
    children: list[Child] = field(default_factory=list)
    status: str = "RUNNING"
    stop: float | None = None
    error: str = ""
    cause: str = ""
    # Where the simulation has got to (time.time()).
    clock: float = 0.0
    next_pending: int = 0

    def counts(self, of_items: bool) -> dict[str, int]:
        n = dict.fromkeys(("pending", "running", "succeeded", "failed", "aborted"), 0)
        for child in self.children:
            if child.status == "PENDING":
                # After the run ended, an item never started was aborted.
                key = "pending" if self.status == "RUNNING" else "aborted"
                if of_items:
                    n[key] += 1
                continue
            n[child.status.lower()] += 1
        total = len(self.children) if of_items else sum(n.values())
        return {
            "pending": n["pending"],
            "running": n["running"],
            "succeeded": n["succeeded"],
            "failed": n["failed"],
            "timedOut": 0,
            "aborted": n["aborted"],
            "total": total,
            "resultsWritten": n["succeeded"],
            "failuresNotRedrivable": 0,
            "pendingRedrive": 0,
        }


def _now() -> float:
    return math.floor(time.time() * 1000) / 1000


class MapRuns:
    """Every simulated Map Run of the endpoint, behind one lock."""

    def __init__(self, parent_end: Callable[[str], float | None] | None = None) -> None:
        self.lock = threading.Lock()
        # When the parent execution ended (None: still running), from moto.
        self.parent_end = parent_end
        self.runs: dict[str, MapRun] = {}
        self.by_parent: dict[str, list[MapRun]] = {}
        self.children: dict[str, tuple[MapRun, Child]] = {}

    def reset(self) -> None:
        with self.lock:
            self.runs = {}
            self.by_parent = {}
            self.children = {}

    # --- Making one ----------------------------------------------------------------

    def create(
        self,
        execution_arn: str,
        items: list[dict[str, Any]],
        label: str = "Map",
        max_concurrency: int = 0,
        tolerated_failure_percentage: float | None = None,
        tolerated_failure_count: int | None = None,
        execution_type: str = "STANDARD",
        start: float | None = None,
    ) -> MapRun:
        parts = execution_arn.split(":")
        if len(parts) != 8 or parts[5] != "execution" or "/" in parts[6]:
            raise MapRunError("InvalidArn", f"Invalid Arn: '{execution_arn}'")
        prefix = ":".join(parts[:5])
        machine = f"{parts[6]}/{label}"
        now = _now() if start is None else start
        run = MapRun(
            arn=f"{prefix}:mapRun:{machine}:{uuid.uuid4()}",
            execution_arn=execution_arn,
            state_machine_arn=f"{prefix}:stateMachine:{machine}",
            label=label,
            express=execution_type == "EXPRESS",
            start=now,
            max_concurrency=int(max_concurrency),
            tolerated_percentage=tolerated_failure_percentage,
            tolerated_count=tolerated_failure_count,
            clock=now,
        )
        for i, item in enumerate(items):
            name = str(uuid.uuid4())
            run.children.append(
                Child(
                    index=i,
                    name=name,
                    arn=f"{prefix}:execution:{machine}:{name}",
                    input=json.dumps(item.get("input", item)),
                    seconds=float(item.get("seconds", 1.0)),
                    fails=bool(item.get("fail", False)),
                    error=str(item.get("error", "States.TaskFailed")),
                    cause=str(item.get("cause", f"item {i} failed")),
                )
            )
        with self.lock:
            self.runs[run.arn] = run
            self.by_parent.setdefault(execution_arn, []).append(run)
            for child in run.children:
                self.children[child.arn] = (run, child)
            self._fill(run, now)
            self._advance(run, _now())
        return run

    # --- The simulation --------------------------------------------------------------

    def _limit(self, run: MapRun) -> int:
        return run.max_concurrency or UNLIMITED

    def _fill(self, run: MapRun, at: float) -> None:
        running = sum(1 for c in run.children if c.status == "RUNNING")
        while run.next_pending < len(run.children) and running < self._limit(run):
            child = run.children[run.next_pending]
            child.status, child.start = "RUNNING", at
            run.next_pending += 1
            running += 1

    def _failed_too_much(self, run: MapRun) -> bool:
        failed = sum(1 for c in run.children if c.status == "FAILED")
        if not failed:
            return False
        if run.tolerated_count is None and run.tolerated_percentage is None:
            return True
        if run.tolerated_count is not None and failed > run.tolerated_count:
            return True
        total = len(run.children) or 1
        return run.tolerated_percentage is not None and (
            failed * 100.0 / total > run.tolerated_percentage
        )

    def _end(self, run: MapRun, status: str, at: float, error: str = "", cause: str = "") -> None:
        for child in run.children:
            if child.status == "RUNNING":
                child.status, child.stop = "ABORTED", at
        run.status, run.stop, run.error, run.cause = status, at, error, cause

    def _advance(self, run: MapRun, now: float) -> None:
        """Play the run forward to `now`: children end, slots refill, tolerance checked."""
        parent_end = self._parent_end(run)
        limit = now if parent_end is None else min(now, parent_end)
        while run.status == "RUNNING":
            running = [c for c in run.children if c.status == "RUNNING"]
            if not running and run.next_pending >= len(run.children):
                self._end(run, "SUCCEEDED", run.clock)
                break
            if not running:
                self._fill(run, run.clock)
                continue
            next_end = min(c.ends_at for c in running)
            if next_end > limit:
                break
            run.clock = max(run.clock, next_end)
            for child in running:
                if child.ends_at <= next_end:
                    child.status = "FAILED" if child.fails else "SUCCEEDED"
                    child.stop = child.ends_at
            if self._failed_too_much(run):
                self._end(
                    run,
                    "FAILED",
                    run.clock,
                    "States.ExceedToleratedFailureThreshold",
                    "The specified tolerated failure threshold was exceeded",
                )
                break
            self._fill(run, run.clock)
        if run.status == "RUNNING" and parent_end is not None and parent_end <= now:
            self._end(run, "ABORTED", parent_end)

    def _parent_end(self, run: MapRun) -> float | None:
        return None if self.parent_end is None else self.parent_end(run.execution_arn)

    def _fresh(self, arn: str) -> MapRun:
        run = self.runs.get(arn)
        if run is None:
            if not arn.startswith("arn:") or ":mapRun:" not in arn:
                raise MapRunError("InvalidArn", f"Invalid Arn: '{arn[:200]}'")
            raise MapRunError("ResourceNotFound", f"Resource not found: '{arn[:200]}'")
        self._advance(run, _now())
        return run

    # --- The API ---------------------------------------------------------------------

    def owns_child(self, arn: str) -> bool:
        return arn in self.children

    def has_parent(self, arn: str) -> bool:
        return arn in self.by_parent

    def list_map_runs(self, execution_arn: str) -> list[dict[str, Any]]:
        with self.lock:
            runs = list(self.by_parent.get(execution_arn, []))
            for run in runs:
                self._advance(run, _now())
            out = []
            for run in sorted(runs, key=lambda r: r.start, reverse=True):
                item: dict[str, Any] = {
                    "executionArn": run.execution_arn,
                    "mapRunArn": run.arn,
                    "stateMachineArn": run.state_machine_arn,
                    "startDate": run.start,
                }
                if run.stop is not None:
                    item["stopDate"] = run.stop
                out.append(item)
            return out

    def describe_map_run(self, arn: str) -> dict[str, Any]:
        with self.lock:
            run = self._fresh(arn)
            out: dict[str, Any] = {
                "mapRunArn": run.arn,
                "executionArn": run.execution_arn,
                "status": run.status,
                "startDate": run.start,
                "maxConcurrency": run.max_concurrency,
                "toleratedFailurePercentage": float(run.tolerated_percentage or 0.0),
                "toleratedFailureCount": int(run.tolerated_count or 0),
                "itemCounts": run.counts(of_items=True),
                "executionCounts": run.counts(of_items=False),
                "redriveCount": 0,
            }
            if run.stop is not None:
                out["stopDate"] = run.stop
            return out

    def update_map_run(self, params: dict[str, Any]) -> None:
        arn = str(params.get("mapRunArn") or "")
        if not arn:
            raise MapRunError(
                "ValidationException",
                "1 validation error detected: Value null at 'mapRunArn' failed to satisfy "
                "constraint: Member must not be null",
            )
        given = {
            k: params[k]
            for k in ("maxConcurrency", "toleratedFailurePercentage", "toleratedFailureCount")
            if params.get(k) is not None
        }
        if not given:
            raise MapRunError(
                "ValidationException",
                "At least one of maxConcurrency, toleratedFailurePercentage or "
                "toleratedFailureCount must be specified",
            )
        for key, low, high in (
            ("maxConcurrency", 0, None),
            ("toleratedFailurePercentage", 0, 100),
            ("toleratedFailureCount", 0, None),
        ):
            if key not in given:
                continue
            value = given[key]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise MapRunError("ValidationException", f"Value at '{key}' is not a number")
            if value < low:
                raise MapRunError(
                    "ValidationException",
                    f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy "
                    f"constraint: Member must have value greater than or equal to {low}",
                )
            if high is not None and value > high:
                raise MapRunError(
                    "ValidationException",
                    f"1 validation error detected: Value '{value}' at '{key}' failed to satisfy "
                    f"constraint: Member must have value less than or equal to {high}",
                )
        with self.lock:
            run = self._fresh(arn)
            if run.status != "RUNNING":
                raise MapRunError(
                    "ValidationException", f"Map Run {arn} is not RUNNING (it is {run.status})"
                )
            now = _now()
            run.clock = now
            if "maxConcurrency" in given:
                run.max_concurrency = int(given["maxConcurrency"])
            if "toleratedFailurePercentage" in given:
                run.tolerated_percentage = float(given["toleratedFailurePercentage"])
            if "toleratedFailureCount" in given:
                run.tolerated_count = int(given["toleratedFailureCount"])
            if self._failed_too_much(run):
                self._end(
                    run,
                    "FAILED",
                    now,
                    "States.ExceedToleratedFailureThreshold",
                    "The specified tolerated failure threshold was exceeded",
                )
                return
            self._fill(run, now)

    def list_children(
        self, map_run_arn: str, status: str | None, redrive: str | None
    ) -> list[dict[str, Any]]:
        if status and status not in (*STATUSES, "PENDING_REDRIVE"):
            raise MapRunError(
                "ValidationException",
                f"1 validation error detected: Value '{status}' at 'statusFilter' failed to "
                f"satisfy enum value set: {list(STATUSES)}",
            )
        with self.lock:
            run = self._fresh(map_run_arn)
            started = [c for c in run.children if c.status != "PENDING"]
            items = []
            for child in sorted(started, key=lambda c: (c.start, c.index), reverse=True):
                if status and child.status != status:
                    continue
                if redrive == "REDRIVEN":
                    continue  # children are never redriven one by one
                item: dict[str, Any] = {
                    "executionArn": child.arn,
                    "stateMachineArn": run.state_machine_arn,
                    "name": child.name,
                    "status": child.status,
                    "startDate": child.start,
                    "mapRunArn": run.arn,
                    "itemCount": 1,
                    "redriveCount": 0,
                }
                if child.stop is not None:
                    item["stopDate"] = child.stop
                items.append(item)
            return items

    def describe_child(self, arn: str) -> dict[str, Any]:
        with self.lock:
            run, child = self.children[arn]
            self._advance(run, _now())
            out: dict[str, Any] = {
                "executionArn": child.arn,
                "stateMachineArn": run.state_machine_arn,
                "name": child.name,
                "status": child.status,
                "startDate": child.start,
                "input": child.input,
                "inputDetails": {"included": True},
                "mapRunArn": run.arn,
                "redriveCount": 0,
            }
            if child.stop is not None:
                out["stopDate"] = child.stop
            if child.status == "SUCCEEDED":
                out["output"] = child.input
                out["outputDetails"] = {"included": True}
            if child.status == "FAILED":
                out["error"], out["cause"] = child.error, child.cause
            if child.status in ("FAILED", "ABORTED"):
                out["redriveStatus"] = "REDRIVABLE_BY_MAP_RUN"
            elif child.status != "RUNNING":
                out["redriveStatus"] = "NOT_REDRIVABLE"
                out["redriveStatusReason"] = "Execution is SUCCEEDED and cannot be redriven"
            return out

    def child_history(self, arn: str) -> list[dict[str, Any]]:
        with self.lock:
            run, child = self.children[arn]
            self._advance(run, _now())
            if run.express:
                raise MapRunError(
                    "InvalidArn",
                    f"Invalid Arn: 'Execution ARN {arn} is not supported by EXPRESS "
                    "state machines'",
                )
            events: list[dict[str, Any]] = [
                {
                    "timestamp": child.start,
                    "type": "ExecutionStarted",
                    "executionStartedEventDetails": {
                        "input": child.input,
                        "inputDetails": {"truncated": False},
                    },
                }
            ]
            if child.status == "SUCCEEDED":
                events.append(
                    {
                        "timestamp": child.stop,
                        "type": "ExecutionSucceeded",
                        "executionSucceededEventDetails": {
                            "output": child.input,
                            "outputDetails": {"truncated": False},
                        },
                    }
                )
            elif child.status == "FAILED":
                events.append(
                    {
                        "timestamp": child.stop,
                        "type": "ExecutionFailed",
                        "executionFailedEventDetails": {
                            "error": child.error,
                            "cause": child.cause,
                        },
                    }
                )
            elif child.status == "ABORTED":
                events.append(
                    {
                        "timestamp": child.stop,
                        "type": "ExecutionAborted",
                        "executionAbortedEventDetails": {},
                    }
                )
            return _numbered(events)

    def parent_history(self, arn: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The parent's events with its Map Runs' events among them, in time order."""
        with self.lock:
            runs = list(self.by_parent.get(arn, []))
            extra: list[dict[str, Any]] = []
            for run in runs:
                self._advance(run, _now())
                extra.append(
                    {
                        "timestamp": run.start,
                        "type": "MapRunStarted",
                        "mapRunStartedEventDetails": {"mapRunArn": run.arn},
                    }
                )
                if run.status == "SUCCEEDED":
                    extra.append({"timestamp": run.stop, "type": "MapRunSucceeded"})
                elif run.status == "FAILED":
                    extra.append(
                        {
                            "timestamp": run.stop,
                            "type": "MapRunFailed",
                            "mapRunFailedEventDetails": {"error": run.error, "cause": run.cause},
                        }
                    )
                elif run.status == "ABORTED":
                    extra.append({"timestamp": run.stop, "type": "MapRunAborted"})
        if not extra:
            return events
        # Stable: at equal times moto's event first, then ours; the parent's
        # own end (ExecutionAborted when it was stopped) always last, as AWS
        # writes the Map Run's end before the execution's.
        end = math.inf
        keyed = []
        for i, e in enumerate(events):
            kind = e.get("type", "")
            # moto's types are enum members: their value is the name.
            last = i == len(events) - 1 and str(getattr(kind, "value", kind)) in _TERMINAL
            when = _seconds(e["timestamp"])
            if last:
                end = when
            keyed.append((when, 2 if last else 0, i, e))
        keyed += [(min(_seconds(e["timestamp"]), end), 1, i, e) for i, e in enumerate(extra)]
        merged = sorted(keyed, key=lambda t: (t[0], t[1], t[2]))
        return _numbered([dict(e) for *_, e in merged])

    def abort_for_parent(self, arn: str, at: float) -> None:
        with self.lock:
            for run in self.by_parent.get(arn, []):
                self._advance(run, at)
                if run.status == "RUNNING":
                    self._end(run, "ABORTED", at)


def _numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, event in enumerate(events, start=1):
        event["id"] = i
        event["previousEventId"] = i - 1
    return events


def _seconds(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        # moto's history: ISO 8601 with a Z.
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value)


# --- The endpoint's operations -------------------------------------------------------


def answer(
    app: Any, operation: str, params: dict[str, Any], start_response: Any
) -> Iterable[bytes]:
    """Answer one of the Map Run operations (ListMapRuns, DescribeMapRun, UpdateMapRun)."""
    out = handle(app, operation, params, start_response)
    assert out is not None
    return out


def handle(
    app: Any, operation: str, params: dict[str, Any], start_response: Any
) -> Iterable[bytes] | None:
    """Answer `operation` if it is about a Map Run or one of its children; None
    to let the endpoint answer as it does for any other execution."""
    from .app import _error, _respond

    runs: MapRuns = app.map_runs
    try:
        if operation == "ListMapRuns":
            arn = str(params.get("executionArn") or "")
            if not arn.startswith("arn:") or ":execution:" not in arn:
                raise MapRunError("InvalidArn", f"Invalid Arn: '{arn[:200]}'")
            size = min(int(params.get("maxResults") or 100), 1000)
            return app._page(
                start_response,
                "mapRuns",
                runs.list_map_runs(arn),
                size,
                params.get("nextToken"),
                {"m": arn},
            )
        if operation == "DescribeMapRun":
            return _respond(
                start_response, 200, runs.describe_map_run(str(params.get("mapRunArn") or ""))
            )
        if operation == "UpdateMapRun":
            runs.update_map_run(params)
            return _respond(start_response, 200, {})
        if operation == "ListExecutions" and params.get("mapRunArn"):
            if params.get("stateMachineArn"):
                raise MapRunError(
                    "ValidationException",
                    "Only one of stateMachineArn or mapRunArn can be specified",
                )
            arn = str(params["mapRunArn"])
            size = min(int(params.get("maxResults") or 100), 1000)
            items = runs.list_children(arn, params.get("statusFilter"), params.get("redriveFilter"))
            scope = {k: params.get(k) for k in ("mapRunArn", "statusFilter", "redriveFilter")}
            return app._page(
                start_response, "executions", items, size, params.get("nextToken"), scope
            )
        arn = str(params.get("executionArn") or "")
        if operation == "DescribeExecution" and runs.owns_child(arn):
            return _respond(start_response, 200, runs.describe_child(arn))
        if operation == "GetExecutionHistory" and runs.owns_child(arn):
            events = runs.child_history(arn)
            if params.get("reverseOrder"):
                events.reverse()
            size = min(int(params.get("maxResults") or 100), 1000)
            return app._page(
                start_response, "events", events, size, params.get("nextToken"), {"a": arn}
            )
    except MapRunError as exc:
        return _error(start_response, exc.code, exc.message)
    return None


def parent_end(arn: str) -> float | None:
    """When moto's parent execution ended (None: running, or not moto's)."""
    from .app import _find_execution

    execution = _find_execution(arn)
    if execution is None or execution.status == "RUNNING" or execution.stop_date is None:
        return None
    stop = execution.stop_date
    if isinstance(stop, str):
        stop = dt.datetime.fromisoformat(stop)
    return _seconds(stop)
