"""A Step Functions endpoint that behaves like AWS where moto does not.

`FaithfulStepFunctions` is a WSGI app wrapping moto's server app, in the same
process (so moto's state is shared). It passes everything through to moto
and adds:

- GetExecutionHistory paging: `maxResults`, `nextToken`, `reverseOrder` and
  `includeExecutionData`, with opaque tokens and `InvalidToken` for bad ones;
- StopExecution as AWS does it: `error` and `cause` kept and shown by
  DescribeExecution and the ExecutionAborted event, a `stopDate` in the
  answer, and a ValidationException for an execution that is not running;
- RedriveExecution (moto has none): the execution is RUNNING again with
  `redriveCount` + 1 and an ExecutionRedriven event; `/fakeaws/finish`
  then ends it with events of the caller's choosing;
- AWS's token buckets per region and operation (off unless configured),
  answering `ThrottlingException` like AWS when a bucket is empty;
- injected faults: throttle a share of calls (for a while, or for good), or
  all calls for a while; DescribeExecution not knowing young executions
  (eventual consistency); extra latency; pages shorter than maxResults;
- a count of every call per operation, and of the throttled ones.

Control endpoints (JSON): GET /fakeaws/calls, POST /fakeaws/reset,
POST /fakeaws/config {"quotas": "aws" | {...} | null, "faults": {...}},
POST /fakeaws/finish {"executionArn", "status", "events": [...], "output"}.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# AWS's us-east-1 numbers: (bucket size, refill per second).
AWS_QUOTAS: dict[str, tuple[float, float]] = {
    "ListStateMachines": (100, 5),
    "DescribeStateMachine": (200, 20),
    "ListExecutions": (200, 5),
    "DescribeExecution": (300, 15),
    "GetExecutionHistory": (400, 20),
    "StopExecution": (1000, 200),
    "StartExecution": (1300, 300),
    "RedriveExecution": (1000, 200),
}
_CREDENTIAL_REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")
OPEN = ("RUNNING", "PENDING_REDRIVE")
TERMINAL = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")

StartResponse = Callable[..., Any]


class TokenBucket:
    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Faults:
    # Share of calls (0..1) answered with ThrottlingException ...
    throttle_fraction: float = 0.0
    # ... until this time.monotonic() value (0: for good).
    throttle_fraction_until: float = 0.0
    # Every call throttled until this time.monotonic() value.
    throttle_until: float = 0.0
    # Operations the two above apply to (all when empty).
    throttle_operations: list[str] = field(default_factory=list)
    # DescribeExecution says ExecutionDoesNotExist for executions younger than this.
    describe_lag_seconds: float = 0.0
    # Added to every Step Functions call.
    latency_seconds: float = 0.0
    # At most this many items per page of GetExecutionHistory and
    # ListExecutions, whatever maxResults asks (0: no limit). AWS documents
    # maxResults as an upper bound only; tests use it to get many pages.
    page_limit: int = 0


@dataclass
class Overlay:
    """What we know of an execution that moto does not."""

    stop_error: str | None = None
    stop_cause: str | None = None
    stop_date: float | None = None
    redrive_count: int = 0
    redrive_date: float | None = None
    status: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    extra_events: list[dict[str, Any]] = field(default_factory=list)


class FaithfulStepFunctions:
    def __init__(self, inner: Callable[..., Iterable[bytes]] | None = None, seed: int = 0) -> None:
        if inner is None:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                create_backend_app,
            )

            inner = DomainDispatcherApplication(create_backend_app)
        self.inner = inner
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls: Counter[str] = Counter()
            # (operation, executionArn) for the calls about one execution.
            self.calls_by_execution: Counter[tuple[str, str]] = Counter()
            self.throttled: Counter[str] = Counter()
            self.quotas: dict[str, tuple[float, float]] | None = None
            self.buckets: dict[tuple[str, str], TokenBucket] = {}
            self.faults = Faults()
            self.overlays: dict[str, Overlay] = {}
            self.final_histories: dict[str, list[dict[str, Any]]] = {}

    # --- WSGI ------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/fakeaws/"):
            return self._control(environ, start_response, path)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("AWSStepFunctions."):
            return self.inner(environ, start_response)
        operation = target.split(".", 1)[1]
        body = _read_body(environ)
        region = _region(environ)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return _error(start_response, "SerializationException", "Malformed JSON body")
        with self.lock:
            self.calls[operation] += 1
            if isinstance(params, dict) and "executionArn" in params:
                self.calls_by_execution[(operation, str(params["executionArn"]))] += 1
            refused = self._throttle(region, operation)
            if refused:
                self.throttled[operation] += 1
            latency = self.faults.latency_seconds
        if latency:
            time.sleep(latency)
        if refused:
            return _error(start_response, "ThrottlingException", "Rate exceeded")
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return self._forward(environ, body, start_response)
        return handler(environ, params, start_response)

    def _throttle(self, region: str, operation: str) -> bool:
        f = self.faults
        if not f.throttle_operations or operation in f.throttle_operations:
            if time.monotonic() < f.throttle_until:
                return True
            if (
                f.throttle_fraction
                and (not f.throttle_fraction_until or time.monotonic() < f.throttle_fraction_until)
                and self.random.random() < f.throttle_fraction
            ):
                return True
        if self.quotas is None or operation not in self.quotas:
            return False
        bucket = self.buckets.get((region, operation))
        if bucket is None:
            bucket = self.buckets[(region, operation)] = TokenBucket(*self.quotas[operation])
        return not bucket.take()

    # --- Talking to moto ---------------------------------------------------------

    def _forward(
        self, environ: dict[str, Any], body: bytes, start_response: StartResponse
    ) -> Iterable[bytes]:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        return self.inner(env, start_response)

    def _moto(
        self, environ: dict[str, Any], operation: str, params: dict[str, Any]
    ) -> tuple[int, Any]:
        """Call moto directly; returns (HTTP status, parsed JSON)."""
        body = json.dumps(params).encode()
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        env["HTTP_X_AMZ_TARGET"] = f"AWSStepFunctions.{operation}"
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"] = int(status.split()[0])

        chunks = b"".join(self.inner(env, capture))
        return captured["status"], json.loads(chunks or b"{}")

    # --- Operations ----------------------------------------------------------------

    def _op_DescribeExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        status, data = self._moto(environ, "DescribeExecution", params)
        if status != 200:
            return _respond(start_response, status, data)
        lag = self.faults.describe_lag_seconds
        if lag and time.time() - float(data.get("startDate", 0)) < lag:
            return _error(
                start_response,
                "ExecutionDoesNotExist",
                f"Execution Does Not Exist: '{params.get('executionArn')}'",
            )
        return _respond(start_response, 200, self._overlay_execution(data))

    def _op_ListExecutions(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        wanted = params.pop("statusFilter", None)
        limit = self.faults.page_limit
        if limit:
            params["maxResults"] = min(int(params.get("maxResults") or 100), limit)
        if wanted or self.overlays:
            # Statuses can differ from moto's (redrives): filter and page here.
            size = int(params.pop("maxResults", 0) or 100)
            token = params.pop("nextToken", None)
            status, data = self._moto(environ, "ListExecutions", {**params, "maxResults": 1000})
            if status != 200:
                return _respond(start_response, status, data)
            items = list(data.get("executions", []))
            while data.get("nextToken"):
                status, data = self._moto(
                    environ,
                    "ListExecutions",
                    {**params, "maxResults": 1000, "nextToken": data["nextToken"]},
                )
                items.extend(data.get("executions", []))
            items = [self._overlay_execution(i) for i in items]
            if wanted:
                items = [i for i in items if i["status"] == wanted]
            return self._page(start_response, "executions", items, size, token, params)
        return self._forward(environ, json.dumps(params).encode(), start_response)

    def _op_GetExecutionHistory(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = params.get("executionArn", "")
        status, data = self._history(environ, arn)
        if status != 200:
            return _respond(start_response, status, data)
        events = list(data.get("events", []))
        overlay = self.overlays.get(arn)
        if overlay:
            events = self._overlay_history(events, overlay)
        if params.get("includeExecutionData") is False:
            events = [_without_data(e) for e in events]
        if params.get("reverseOrder"):
            events.reverse()
        size = min(int(params.get("maxResults") or 100), 1000)
        return self._page(
            start_response, "events", events, size, params.get("nextToken"), {"a": arn}
        )

    def _op_StopExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = params.get("executionArn", "")
        for name, limit in (("error", 256), ("cause", 32768)):
            if len(params.get(name) or "") > limit:
                return _error(
                    start_response,
                    "ValidationException",
                    f"1 validation error detected: Value at '{name}' failed to satisfy "
                    f"constraint: Member must have length less than or equal to {limit}",
                )
        status, data = self._moto(environ, "DescribeExecution", {"executionArn": arn})
        if status != 200:
            return _respond(start_response, status, data)
        if self._overlay_execution(data)["status"] not in OPEN:
            return _error(start_response, "ValidationException", "Execution Is Not Running")
        status, answer = self._moto(environ, "StopExecution", {"executionArn": arn})
        if status != 200:
            return _respond(start_response, status, answer)
        # moto's interpreter thread writes ExecutionAborted a moment later;
        # AWS has it in the history by the time StopExecution answers.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, history = self._history(environ, arn)
            found = history.get("events") or [{}]
            if found[-1].get("type") in TERMINAL:
                break
            time.sleep(0.01)
        with self.lock:
            overlay = self.overlays.setdefault(arn, Overlay())
            overlay.stop_error = params.get("error")
            overlay.stop_cause = params.get("cause")
            overlay.stop_date = float(answer.get("stopDate") or time.time())
            if overlay.status in OPEN:
                overlay.status = "ABORTED"
        return _respond(start_response, 200, {"stopDate": overlay.stop_date})

    def _op_RedriveExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = params.get("executionArn", "")
        status, data = self._moto(environ, "DescribeExecution", {"executionArn": arn})
        if status != 200:
            return _respond(start_response, status, data)
        current = self._overlay_execution(data)["status"]
        if current not in ("FAILED", "ABORTED", "TIMED_OUT"):
            return _error(
                start_response,
                "ExecutionNotRedrivable",
                f"Execution with status {current} cannot be redriven",
            )
        status, history = self._history(environ, arn)
        now = time.time()
        with self.lock:
            overlay = self.overlays.setdefault(arn, Overlay())
            overlay.redrive_count += 1
            overlay.redrive_date = now
            overlay.status = "RUNNING"
            overlay.output = overlay.error = overlay.cause = None
            events = self._overlay_history(history.get("events", []), overlay)
            overlay.extra_events.append(
                {
                    "timestamp": now,
                    "type": "ExecutionRedriven",
                    "id": len(events) + 1,
                    "previousEventId": len(events),
                    "executionRedrivenEventDetails": {"redriveCount": overlay.redrive_count},
                }
            )
        return _respond(start_response, 200, {"redriveDate": now})

    def _history(self, environ: dict[str, Any], arn: str) -> tuple[int, Any]:
        """moto's whole history of an execution.

        Read from moto's backend in this process: moto's own HTTP answer
        serialises a 25,000-event history in tens of seconds, per page. A
        finished history never changes, so it is kept.
        """
        with self.lock:
            final = self.final_histories.get(arn)
        if final is not None:
            return 200, {"events": final}
        try:
            from moto.stepfunctions.responses import get_backend

            parts = arn.split(":")
            backend = get_backend(parts[4], parts[3])
            events = [dict(e) for e in backend.get_execution_history(arn)["events"]]
        except Exception:
            # Unknown or malformed: let moto answer with AWS's error shapes.
            return self._moto(environ, "GetExecutionHistory", {"executionArn": arn})
        if events and events[-1].get("type") in TERMINAL:
            with self.lock:
                self.final_histories[arn] = events
        return 200, {"events": events}

    # --- Overlays ------------------------------------------------------------------

    def _overlay_execution(self, data: dict[str, Any]) -> dict[str, Any]:
        overlay = self.overlays.get(data.get("executionArn", ""))
        out = dict(data)
        if overlay is None:
            return out
        if overlay.stop_date is not None and out.get("status") == "ABORTED":
            out["stopDate"] = overlay.stop_date
            for key, value in (("error", overlay.stop_error), ("cause", overlay.stop_cause)):
                if value:
                    out[key] = value
                else:
                    out.pop(key, None)
        if overlay.redrive_count:
            out["redriveCount"] = overlay.redrive_count
            out["redriveDate"] = overlay.redrive_date
            out["status"] = overlay.status or out["status"]
            if out["status"] in OPEN:
                out.pop("stopDate", None)
                for key in ("output", "error", "cause"):
                    out.pop(key, None)
            else:
                for key, value in (
                    ("output", overlay.output),
                    ("error", overlay.error),
                    ("cause", overlay.cause),
                ):
                    if value is not None:
                        out[key] = value
        return out

    def _overlay_history(
        self, events: list[dict[str, Any]], overlay: Overlay
    ) -> list[dict[str, Any]]:
        out = []
        for event in events:
            if event.get("type") == "ExecutionAborted" and overlay.stop_date is not None:
                details = {}
                if overlay.stop_error:
                    details["error"] = overlay.stop_error
                if overlay.stop_cause:
                    details["cause"] = overlay.stop_cause
                event = {**event, "executionAbortedEventDetails": details}
            out.append(event)
        return out + list(overlay.extra_events)

    def finish(self, arn: str, status: str, events: list[dict[str, Any]], **result: Any) -> None:
        """End a redriven execution: append `events` (ids filled in) and set its status."""
        with self.lock:
            overlay = self.overlays[arn]
            next_id = overlay.extra_events[-1]["id"] + 1 if overlay.extra_events else 1
            for event in events:
                overlay.extra_events.append(
                    {
                        "timestamp": time.time(),
                        "id": next_id,
                        "previousEventId": next_id - 1,
                        **event,
                    }
                )
                next_id += 1
            overlay.status = status
            overlay.output = result.get("output")
            overlay.error = result.get("error")
            overlay.cause = result.get("cause")

    # --- Paging --------------------------------------------------------------------

    def _page(
        self,
        start_response: StartResponse,
        key: str,
        items: list[dict[str, Any]],
        size: int,
        token: str | None,
        scope: dict[str, Any],
    ) -> Iterable[bytes]:
        start = 0
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                if decoded.get("s") != _scope_key(scope):
                    raise ValueError("token from another request")
                start = int(decoded["o"])
            except (ValueError, KeyError, TypeError):
                return _error(start_response, "InvalidToken", f"Invalid Token: '{token[:64]}'")
        end = start + max(1, min(size, 1000, self.faults.page_limit or 1000))
        body: dict[str, Any] = {key: items[start:end]}
        if end < len(items):
            body["nextToken"] = base64.urlsafe_b64encode(
                json.dumps({"o": end, "s": _scope_key(scope)}).encode()
            ).decode()
        return _respond(start_response, 200, body)

    # --- Control -------------------------------------------------------------------

    def _control(
        self, environ: dict[str, Any], start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        body = json.loads(_read_body(environ) or b"{}")
        if path == "/fakeaws/calls":
            with self.lock:
                by_execution: dict[str, dict[str, int]] = {}
                for (op, arn), n in self.calls_by_execution.items():
                    by_execution.setdefault(arn, {})[op] = n
                return _respond(
                    start_response,
                    200,
                    {
                        "calls": dict(self.calls),
                        "throttled": dict(self.throttled),
                        "by_execution": by_execution,
                    },
                )
        if path == "/fakeaws/reset":
            self.reset()
            return _respond(start_response, 200, {})
        if path == "/fakeaws/config":
            self.configure(**body)
            return _respond(start_response, 200, {})
        if path == "/fakeaws/finish":
            self.finish(
                body.pop("executionArn"), body.pop("status"), body.pop("events", []), **body
            )
            return _respond(start_response, 200, {})
        return _respond(start_response, 404, {"message": f"no such control endpoint {path}"})

    def configure(self, quotas: Any = "unchanged", faults: dict[str, Any] | None = None) -> None:
        with self.lock:
            if quotas != "unchanged":
                self.quotas = AWS_QUOTAS if quotas == "aws" else quotas
                self.buckets = {}
            if faults is not None:
                faults = dict(faults)
                now = time.monotonic()
                if "throttle_for_seconds" in faults:
                    faults["throttle_until"] = now + faults.pop("throttle_for_seconds")
                if "throttle_fraction_for_seconds" in faults:
                    faults["throttle_fraction_until"] = now + faults.pop(
                        "throttle_fraction_for_seconds"
                    )
                self.faults = Faults(**faults)


def _scope_key(scope: dict[str, Any]) -> str:
    return json.dumps(scope, sort_keys=True)[:200]


def _without_data(event: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in ("input", "output")}
        out[key] = value
    return out


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length else b""


def _region(environ: dict[str, Any]) -> str:
    match = _CREDENTIAL_REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else "us-east-1"


def _respond(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    payload = json.dumps(body, default=_json_default).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def _error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    return _respond(start_response, 400, {"__type": code, "message": message})


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"cannot serialise {type(value).__name__}")
