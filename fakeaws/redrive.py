"""RedriveExecution as AWS documents it (moto has none), for FaithfulStepFunctions.

What AWS's API reference says, and what this does:

- only a Standard execution that is FAILED, TIMED_OUT or ABORTED, started
  less than 14 days ago, redriven fewer than 1,000 times and with a history
  of fewer than 25,000 events can be redriven; anything else is answered
  with `ExecutionNotRedrivable` (400) and changes nothing;
- `clientToken` makes the call idempotent: the same token for the same
  execution answers the first call's `redriveDate` again and redrives
  nothing more;
- the execution is RUNNING again with the same ARN, `redriveCount` + 1 and
  `redriveDate`, and its history goes on with an `ExecutionRedriven` event;
- DescribeExecution says `redriveCount`, `redriveDate`, `redriveStatus`
  (REDRIVABLE or NOT_REDRIVABLE) and, when it cannot be, `redriveStatusReason`.

What is faked: AWS continues the run from the unsuccessful step; moto cannot
(its interpreter ran and forgot the first attempt). With `replay` on (the
demo turns it on: `configure(redrive={"replay": True})`), the redriven
attempt re-runs the unsuccessful step by replaying that step's events from
the attempt before (the outermost state entered and never exited, through
its failure), with fresh ids and times, spread over at most
`replay_seconds`; then it ends as that attempt ended: FAILED or TIMED_OUT
with the same error and cause, as a redrive of a failure whose cause was not
fixed does. A redrive of an ABORTED attempt re-enters the interrupted state
and keeps running until StopExecution or `/fakeaws/finish` ends it. With
`replay` off (the default, for tests), the redriven attempt runs until one of
those two ends it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import FaithfulStepFunctions, StartResponse

REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
# AWS's limits for a redrive.
WINDOW_SECONDS = 14 * 24 * 3600
MAX_REDRIVES = 1000
MAX_EVENTS = 25_000
# Client tokens remembered (per execution and token), oldest forgotten first.
TOKENS_KEPT = 10_000
TERMINAL_STATUS = {
    "ExecutionFailed": ("FAILED", "executionFailedEventDetails"),
    "ExecutionTimedOut": ("TIMED_OUT", "executionTimedOutEventDetails"),
    "ExecutionAborted": ("ABORTED", "executionAbortedEventDetails"),
}


@dataclass
class Redrives:
    """What the endpoint keeps of redrives beside the execution overlays."""

    replay: bool = False
    replay_seconds: float = 3.0
    # (executionArn, clientToken) -> the redriveDate answered.
    tokens: OrderedDict[tuple[str, str], float] = field(default_factory=OrderedDict)

    def configure(self, replay: bool | None = None, replay_seconds: float | None = None) -> None:
        if replay is not None:
            self.replay = bool(replay)
        if replay_seconds is not None:
            self.replay_seconds = max(0.0, float(replay_seconds))


def redrive_status(
    described: dict[str, Any], machine_type: str, history_length: int, now: float
) -> tuple[str, str | None]:
    """(redriveStatus, redriveStatusReason) of an execution, as DescribeExecution says them."""
    status = str(described.get("status", ""))
    if machine_type != "STANDARD":
        return "NOT_REDRIVABLE", "Express executions cannot be redriven"
    if status not in REDRIVABLE:
        return "NOT_REDRIVABLE", f"Execution is {status} and cannot be redriven"
    if now - float(described.get("startDate") or 0) >= WINDOW_SECONDS:
        return "NOT_REDRIVABLE", "Execution started more than 14 days ago and cannot be redriven"
    if int(described.get("redriveCount") or 0) >= MAX_REDRIVES:
        return "NOT_REDRIVABLE", f"Execution was redriven {MAX_REDRIVES} times already"
    if history_length >= MAX_EVENTS - 1:
        return "NOT_REDRIVABLE", "Execution history has too many events to be redriven"
    return "REDRIVABLE", None


def with_status(
    app: FaithfulStepFunctions, environ: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """A DescribeExecution answer with AWS's redrive fields."""
    from .app import _find_execution, _machine_type

    arn = str(data.get("executionArn", ""))
    execution = _find_execution(arn)
    machine_type = _machine_type(execution) if execution is not None else "STANDARD"
    length = len(_history_of(app, environ, arn)) if data.get("status") in REDRIVABLE else 0
    out = dict(data)
    out.setdefault("redriveCount", 0)
    status, reason = redrive_status(out, machine_type, length, time.time())
    out["redriveStatus"] = status
    if reason:
        out["redriveStatusReason"] = reason
    else:
        out.pop("redriveStatusReason", None)
    return out


def redrive_execution(
    app: FaithfulStepFunctions,
    environ: dict[str, Any],
    params: dict[str, Any],
    start_response: StartResponse,
) -> Iterable[bytes]:
    from .app import Overlay, _error, _find_execution, _machine_type, _now, _respond

    arn = str(params.get("executionArn", ""))
    token = params.get("clientToken")
    if token is not None and (not isinstance(token, str) or not 1 <= len(token) <= 64):
        return _error(
            start_response,
            "ValidationException",
            "1 validation error detected: Value at 'clientToken' failed to satisfy "
            "constraint: Member must have length between 1 and 64",
        )
    status, data = app._moto(environ, "DescribeExecution", {"executionArn": arn})
    if status != 200:
        return _respond(start_response, status, data)
    with app.lock:
        if token and (arn, token) in app.redrives.tokens:
            # The same request again: AWS answers it as it did, and does nothing more.
            return _respond(start_response, 200, {"redriveDate": app.redrives.tokens[(arn, token)]})
    described = app._overlay_execution(data)
    execution = _find_execution(arn)
    machine_type = _machine_type(execution) if execution is not None else "STANDARD"
    history = _history_of(app, environ, arn)
    redrivable, reason = redrive_status(described, machine_type, len(history), time.time())
    if redrivable != "REDRIVABLE":
        return _error(start_response, "ExecutionNotRedrivable", str(reason))
    now = _now()
    with app.lock:
        overlay = app.overlays.setdefault(arn, Overlay())
        if overlay.status not in (None, *REDRIVABLE) or (
            overlay.redrive_count != int(described.get("redriveCount") or 0)
        ):
            # Another redrive got here first, between the check and now.
            return _error(
                start_response,
                "ExecutionNotRedrivable",
                "Execution is RUNNING and cannot be redriven",
            )
        overlay.redrive_count += 1
        overlay.redrive_date = now
        overlay.status = "RUNNING"
        overlay.output = overlay.error = overlay.cause = overlay.end_date = None
        last_id = int(history[-1]["id"]) if history else 0
        overlay.extra_events.append(
            {
                "timestamp": now,
                "type": "ExecutionRedriven",
                "id": last_id + 1,
                "previousEventId": last_id,
                "executionRedrivenEventDetails": {"redriveCount": overlay.redrive_count},
            }
        )
        count = overlay.redrive_count
        if token:
            app.redrives.tokens[(arn, token)] = now
            while len(app.redrives.tokens) > TOKENS_KEPT:
                app.redrives.tokens.popitem(last=False)
        replay, seconds = app.redrives.replay, app.redrives.replay_seconds
    app._emit(arn)
    if replay:
        steps = replay_plan(history)
        if steps:
            threading.Thread(
                target=_replay,
                args=(app, arn, count, steps, seconds),
                name=f"fakeaws-redrive-{arn.rsplit(':', 1)[-1]}",
                daemon=True,
            ).start()
    return _respond(start_response, 200, {"redriveDate": now})


def _history_of(
    app: FaithfulStepFunctions, environ: dict[str, Any], arn: str
) -> list[dict[str, Any]]:
    """The whole history as GetExecutionHistory gives it (moto's, plus ours)."""
    status, data = app._history(environ, arn)
    if status != 200:
        return []
    events = list(data.get("events", []))
    overlay = app.overlays.get(arn)
    return app._overlay_history(events, overlay) if overlay else events


def replay_plan(history: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """The unsuccessful step of the last attempt, as (seconds after the redrive, event)
    pairs without ids, ending with the attempt's end (none after an abort)."""
    start = 0
    for i, event in enumerate(history):
        if _kind(event) == "ExecutionRedriven":
            start = i + 1
    attempt = history[start:]
    if not attempt or _kind(attempt[-1]) not in TERMINAL_STATUS:
        return []
    opened: dict[str, int] = {}
    for i, event in enumerate(attempt):
        kind = _kind(event)
        name = _state_name(event)
        if kind.endswith("StateEntered") and name is not None:
            opened.setdefault(name, i)
        elif kind.endswith("StateExited") and name is not None:
            opened.pop(name, None)
    first = min(opened.values()) if opened else len(attempt) - 1
    terminal = attempt[-1]
    picked = attempt[first:-1]
    if _kind(terminal) != "ExecutionAborted":
        picked.append(terminal)
    if not picked:
        return []
    origin = _epoch(picked[0].get("timestamp"))
    out = []
    for event in picked:
        body = {k: v for k, v in event.items() if k not in ("id", "previousEventId", "timestamp")}
        body["type"] = _kind(event)
        out.append((max(0.0, _epoch(event.get("timestamp")) - origin), body))
    return out


def _replay(
    app: FaithfulStepFunctions,
    arn: str,
    redrive_count: int,
    steps: list[tuple[float, dict[str, Any]]],
    seconds: float,
) -> None:
    """Append the replayed events at their (scaled) times, then end the attempt."""
    from .app import _now

    span = steps[-1][0]
    scale = min(1.0, seconds / span) if span > 0 else 1.0
    began = time.monotonic()
    # The redrive itself takes a moment in AWS before the step starts again.
    lead = min(0.2, seconds / 10)
    for offset, body in steps:
        wait = began + lead + offset * scale - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        ended = body.get("type") in TERMINAL_STATUS
        with app.lock:
            overlay = app.overlays.get(arn)
            if (
                overlay is None
                or overlay.redrive_count != redrive_count
                or overlay.status != "RUNNING"
            ):
                # Stopped, finished or redriven again meanwhile: this attempt is over.
                return
            last_id = int(overlay.extra_events[-1]["id"]) if overlay.extra_events else 0
            now = _now()
            overlay.extra_events.append(
                {"timestamp": now, "id": last_id + 1, "previousEventId": last_id, **body}
            )
            if ended:
                status, key = TERMINAL_STATUS[str(body["type"])]
                details = body.get(key) or {}
                overlay.status = status
                overlay.end_date = now
                overlay.output = None
                overlay.error = details.get("error")
                overlay.cause = details.get("cause")
        if ended:
            app._emit(arn)


def _kind(event: dict[str, Any]) -> str:
    """The event's type as AWS writes it (moto keeps an enum)."""
    kind = event.get("type", "")
    return str(getattr(kind, "value", kind))


def _state_name(event: dict[str, Any]) -> str | None:
    for key in ("stateEnteredEventDetails", "stateExitedEventDetails"):
        value = event.get(key)
        if isinstance(value, dict) and "name" in value:
            return str(value["name"])
    return None


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
