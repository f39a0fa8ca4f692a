"""A Step Functions endpoint that behaves like AWS where moto does not.

`FaithfulStepFunctions` is a WSGI app wrapping moto's server app, in the same
process (so moto's state is shared: its STS, SQS and EventBridge answer on
the same port). It passes everything through to moto and adds:

- GetExecutionHistory paging: `maxResults`, `nextToken`, `reverseOrder` and
  `includeExecutionData`, with opaque tokens and `InvalidToken` for bad ones;
- StartExecution of an Express workflow as AWS answers it (see
  fakeaws.express: an `express:` ARN, not idempotent by name, nothing of it
  in DescribeExecution, history or ListExecutions; the workflow is not run);
- StopExecution as AWS does it: `error` and `cause` kept and shown by
  DescribeExecution and the ExecutionAborted event, a `stopDate` in the
  answer, and a ValidationException for an execution that is not running;
- RedriveExecution (moto has none), with AWS's rules (see fakeaws.redrive:
  which executions, `clientToken`, the redrive fields of DescribeExecution):
  the execution is RUNNING again with `redriveCount` + 1 and an
  ExecutionRedriven event; `/fakeaws/finish` then ends it with events of the
  caller's choosing, or StopExecution does, or (`redrive.replay`) a replay of
  the unsuccessful step;
- Distributed Map runs (see fakeaws.map_runs: simulated, attached to a
  running execution): ListMapRuns, DescribeMapRun, UpdateMapRun, the
  children through ListExecutions(mapRunArn), DescribeExecution and
  GetExecutionHistory, and the parent's MapRun* events;
- versions and aliases beyond moto (see fakeaws.versions): publishing,
  listing and deleting versions, starts of a version or an alias (weighted),
  executions that say which version and alias started them, and
  DescribeStateMachineForExecution with the definition the execution ran;
- the `stopDate` of a TIMED_OUT execution (DescribeExecution, ListExecutions),
  which moto leaves out;
- Step Functions' EventBridge events (moto sends none, see fakeaws.events):
  "Step Functions Execution Status Change" from `aws.states` on the default
  bus of the execution's account and region, for every status change of a
  Standard execution (start, end, stop, redrive, finish), with delivery
  faults on demand (drop, duplicate, delay, off);
- AWS's token buckets per account, region and operation (off unless
  configured), answering `ThrottlingException` like AWS when one is empty;
  the account is moto's for the request's access key, so credentials of an
  assumed role count against the role's account;
- injected faults: throttle a share of calls (for a while, or for good), or
  all calls for a while; DescribeExecution not knowing young executions
  (eventual consistency); extra latency, fixed or drawn for each call from a
  distribution given by its p50 and p95 (see fakeaws.latency); pages shorter
  than maxResults;
- a count of every call per operation, per "account:region" and operation,
  and of the throttled ones.

All of it works for executions of any account (an ARN says whose it is).

Control endpoints (JSON):
- GET /fakeaws/calls: {"calls", "throttled": {operation: n}, "latency_seconds"
  (injected latency slept, all calls together), "by_execution":
  {arn: {operation: n}}, "by_target", "throttled_by_target":
  {"account:region": {operation: n}}, "events": {outcome: n}};
- GET /fakeaws/events: {"settings", "counts": {"emitted", "delivered",
  "dropped", "duplicated", "failed"}, "pending", "emitted": [{"executionArn",
  "status", "redriveCount", "time", "copies"}, ...] (the last 5,000)};
- POST /fakeaws/reset;
- POST /fakeaws/config {"quotas": "aws" | {...} | null, "faults": {...},
  "events": {"enabled", "drop_fraction", "duplicate_fraction", "delay_seconds"},
  "redrive": {"replay", "replay_seconds"}};
- POST /fakeaws/finish {"executionArn", "status", "events": [...], "output"};
- POST /fakeaws/map-runs {"execution_arn", "items": [{"seconds", "fail"}, ...],
  "label", "max_concurrency", "tolerated_failure_percentage",
  "tolerated_failure_count", "execution_type"} -> {"mapRunArn"}: a simulated
  Distributed Map Run of a running execution (see fakeaws.map_runs).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import os
import random
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import express, map_runs, redrive
from .events import StatusEvents, epoch_seconds, status_change_detail, watch_execution_ends
from .latency import BadLatency, Latency
from .versions import Versions

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
# Ends of executions not (yet) known to be this app's, kept for the start
# that may still be on its way (see `_started`); bounded, since executions
# of other apps in the process end here too.
ENDED_EARLY_KEEP = 10_000

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
    # And a draw from this distribution (fakeaws.latency; None: off).
    latency: Latency | None = None
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
    # Of the redriven run, which moto knows nothing of.
    status: str | None = None
    end_date: float | None = None
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
        self.events = StatusEvents(self.random)
        self.reset()
        watch_execution_ends(self)

    def reset(self) -> None:
        self.events.reset()
        with self.lock:
            self.calls: Counter[str] = Counter()
            # (operation, executionArn) for the calls about one execution.
            self.calls_by_execution: Counter[tuple[str, str]] = Counter()
            self.throttled: Counter[str] = Counter()
            # ("account:region", operation), as AWS's quotas are counted.
            self.calls_by_target: Counter[tuple[str, str]] = Counter()
            self.throttled_by_target: Counter[tuple[str, str]] = Counter()
            self.quotas: dict[str, tuple[float, float]] | None = None
            self.buckets: dict[tuple[str, str, str], TokenBucket] = {}
            self.faults = Faults()
            # Seconds of injected latency slept so far, all calls together.
            self.latency_waited = 0.0
            self.overlays: dict[str, Overlay] = {}
            self.versions = Versions(self)
            self.final_histories: dict[str, list[dict[str, Any]]] = {}
            # Executions started through this app: False while their RUNNING
            # event is being emitted, True once it has been.
            self.started_here: dict[str, bool] = {}
            self.ended_early: OrderedDict[str, None] = OrderedDict()
            # Executions a StopExecution here is ending: it reports the ABORTED.
            self.stopping: set[str] = set()
            self.redrives = redrive.Redrives()
            self.map_runs = map_runs.MapRuns(map_runs.parent_end)

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
        account = _account(environ)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return _error(start_response, "SerializationException", "Malformed JSON body")
        with self.lock:
            self.calls[operation] += 1
            self.calls_by_target[(f"{account}:{region}", operation)] += 1
            if isinstance(params, dict) and "executionArn" in params:
                self.calls_by_execution[(operation, str(params["executionArn"]))] += 1
            refused = self._throttle(account, region, operation)
            if refused:
                self.throttled[operation] += 1
                self.throttled_by_target[(f"{account}:{region}", operation)] += 1
            latency = self.faults.latency_seconds
            if self.faults.latency is not None:
                latency += self.faults.latency.draw()
            self.latency_waited += latency
        if latency:
            time.sleep(latency)
        if refused:
            return _error(start_response, "ThrottlingException", "Rate exceeded")
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return self._forward(environ, body, start_response)
        return handler(environ, params, start_response)

    def _throttle(self, account: str, region: str, operation: str) -> bool:
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
        # AWS's buckets are per account, region and operation.
        key = (account, region, operation)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(*self.quotas[operation])
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

    def _op_StartExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        # An Express workflow's start: AWS's answer (fakeaws.express), not moto's.
        of_express = express.respond_or_none(params, start_response)
        if of_express is not None:
            return of_express
        of_version = self.versions.start(environ, params, start_response)
        if of_version is not None:
            return of_version
        # moto's own answer goes back untouched; only its ARN is needed here.
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = status, headers

        with self.versions.start_lock:
            body = b"".join(self._forward(environ, json.dumps(params).encode(), capture))
        if captured["status"].startswith("200"):
            try:
                arn = str(json.loads(body)["executionArn"])
            except (ValueError, KeyError, TypeError):
                arn = ""
            if arn:
                self._started(arn)
        start_response(captured["status"], captured["headers"])
        return [body]

    def _op_DescribeExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        child = map_runs.handle(self, "DescribeExecution", params, start_response)
        if child is not None:
            return child
        status, data = self._moto(environ, "DescribeExecution", params)
        if status != 200:
            return _respond(start_response, status, data)
        if data.get("status") == "TIMED_OUT" and "stopDate" not in data:
            # moto leaves it out for TIMED_OUT alone; AWS has it, and so
            # does the TIMED_OUT event.
            execution = _find_execution(str(data.get("executionArn", "")))
            if execution is not None and execution.stop_date is not None:
                data["stopDate"] = epoch_seconds(execution.stop_date)
        lag = self.faults.describe_lag_seconds
        if lag and time.time() - float(data.get("startDate", 0)) < lag:
            return _error(
                start_response,
                "ExecutionDoesNotExist",
                f"Execution Does Not Exist: '{params.get('executionArn')}'",
            )
        described = redrive.with_status(self, environ, self._overlay_execution(data))
        return _respond(start_response, 200, self.versions.annotate(described))

    def _op_ListExecutions(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        if self.versions.qualified(params.get("stateMachineArn")):
            return self.versions.list_executions(environ, params, start_response)
        children = map_runs.handle(self, "ListExecutions", params, start_response)
        if children is not None:
            return children
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
            items = [
                self.versions.annotate(_timed_out_stop(self._overlay_execution(i))) for i in items
            ]
            if wanted:
                items = [i for i in items if i["status"] == wanted]
            return self._page(start_response, "executions", items, size, token, params)
        status, data = self._moto(environ, "ListExecutions", params)
        if status == 200:
            data["executions"] = [
                self.versions.annotate(_timed_out_stop(i)) for i in data.get("executions", [])
            ]
        return _respond(start_response, status, data)

    def _op_GetExecutionHistory(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        arn = params.get("executionArn", "")
        child = map_runs.handle(self, "GetExecutionHistory", params, start_response)
        if child is not None:
            return child
        status, data = self._history(environ, arn)
        if status != 200:
            return _respond(start_response, status, data)
        events = list(data.get("events", []))
        overlay = self.overlays.get(arn)
        if overlay:
            events = self._overlay_history(events, overlay)
        events = self.map_runs.parent_history(arn, events)
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
        overlay = self.overlays.get(arn)
        if overlay is not None and overlay.status in OPEN:
            return self._stop_redriven(arn, overlay, params, start_response)
        with self.lock:
            self.stopping.add(arn)
        status, answer = self._moto(environ, "StopExecution", {"executionArn": arn})
        if status != 200:
            with self.lock:
                self.stopping.discard(arn)
            return _respond(start_response, status, answer)
        # moto's interpreter thread writes ExecutionAborted, then sets the
        # status, a moment later; AWS has both by the time StopExecution
        # answers (and the ABORTED event needs the status).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, history = self._history(environ, arn)
            found = history.get("events") or [{}]
            execution = _find_execution(arn)
            if found[-1].get("type") in TERMINAL and (
                execution is None or execution.status != "RUNNING"
            ):
                break
            time.sleep(0.01)
        with self.lock:
            overlay = self.overlays.setdefault(arn, Overlay())
            overlay.stop_error = params.get("error")
            overlay.stop_cause = params.get("cause")
            overlay.stop_date = float(answer.get("stopDate") or _now())
            # Who reports the ABORTED, decided under the lock that
            # `execution_ended` takes: here if moto has set the status (its
            # hook then stays quiet), else the hook, once it does (the
            # reasons above are in place by then).
            execution = _find_execution(arn)
            report_here = execution is None or execution.status != "RUNNING"
            if not report_here:
                self.stopping.discard(arn)
        if report_here:
            # Only if the stop did end it: an execution that ended by itself
            # a moment before had its own event from moto's thread.
            self._emit(arn, only_if="ABORTED")
        return _respond(start_response, 200, {"stopDate": overlay.stop_date})

    def _stop_redriven(
        self,
        arn: str,
        overlay: Overlay,
        params: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Stop a redriven run: moto's own run ended before the redrive, so
        the stop is all ours (status, dates, reasons, the ExecutionAborted event)."""
        now = _now()
        details = {k: params[k] for k in ("error", "cause") if params.get(k)}
        with self.lock:
            overlay.status = "ABORTED"
            overlay.end_date = now
            overlay.output = None
            overlay.error = params.get("error") or None
            overlay.cause = params.get("cause") or None
            last_id = overlay.extra_events[-1]["id"] if overlay.extra_events else 0
            overlay.extra_events.append(
                {
                    "timestamp": now,
                    "type": "ExecutionAborted",
                    "id": last_id + 1,
                    "previousEventId": last_id,
                    "executionAbortedEventDetails": details,
                }
            )
        self._emit(arn)
        return _respond(start_response, 200, {"stopDate": now})

    def _op_RedriveExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return redrive.redrive_execution(self, environ, params, start_response)

    def _op_ListMapRuns(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return map_runs.answer(self, "ListMapRuns", params, start_response)

    def _op_DescribeMapRun(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return map_runs.answer(self, "DescribeMapRun", params, start_response)

    def _op_UpdateMapRun(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return map_runs.answer(self, "UpdateMapRun", params, start_response)

    def _op_PublishStateMachineVersion(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return self.versions.publish(environ, params, start_response)

    def _op_ListStateMachineVersions(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return self.versions.list_versions(environ, params, start_response)

    def _op_DeleteStateMachineVersion(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return self.versions.delete_version(environ, params, start_response)

    def _op_DescribeStateMachineForExecution(
        self, environ: dict[str, Any], params: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        return self.versions.describe_for_execution(environ, params, start_response)

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
                for key in ("output", "outputDetails", "error", "cause"):
                    out.pop(key, None)
            else:
                # The redriven run's end, not moto's first one (whose error
                # would otherwise show on a redrive that succeeded).
                if overlay.end_date is not None:
                    out["stopDate"] = overlay.end_date
                for key, value in (
                    ("output", overlay.output),
                    ("error", overlay.error),
                    ("cause", overlay.cause),
                ):
                    if value is not None:
                        out[key] = value
                    else:
                        out.pop(key, None)
                if out["status"] == "SUCCEEDED" and "output" in out:
                    out["outputDetails"] = {"included": True}
                else:
                    out.pop("outputDetails", None)
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
            overlay.end_date = _now()
            overlay.output = result.get("output")
            overlay.error = result.get("error")
            overlay.cause = result.get("cause")
        self._emit(arn)

    # --- Status-change events --------------------------------------------------------

    def _started(self, arn: str) -> None:
        """StartExecution answered: the RUNNING event, and the end if it came first."""
        with self.lock:
            if arn in self.started_here:
                # AWS's idempotent start (same name and input): no new execution.
                return
            self.started_here[arn] = False
        self._emit(arn, as_status="RUNNING")
        with self.lock:
            self.started_here[arn] = True
            ended = arn in self.ended_early
            if ended:
                del self.ended_early[arn]
        if ended:
            self._emit(arn)

    def stopping_through_api(self, arn: str) -> bool:
        with self.lock:
            return arn in self.stopping

    def execution_ended(self, execution: Any, stopped_through_api: bool) -> None:
        """moto ended an execution (from its thread, see fakeaws.events)."""
        arn = str(execution.exec_arn)
        with self.lock:
            if not self.started_here.get(arn):
                # Not ours, or its RUNNING event is still being emitted:
                # `_started` emits this end after it, in order.
                self.ended_early[arn] = None
                while len(self.ended_early) > ENDED_EARLY_KEEP:
                    self.ended_early.popitem(last=False)
                return
        if stopped_through_api and execution.status == "ABORTED":
            # `_op_StopExecution` reports it, with the stop's error and cause.
            return
        self._emit(arn, execution=execution)

    def _emit(
        self,
        arn: str,
        as_status: str | None = None,
        only_if: str | None = None,
        execution: Any = None,
    ) -> None:
        """The status-change event of `arn`, from what DescribeExecution says of it now."""
        if not self.events.enabled:
            return
        execution = execution or _find_execution(arn)
        if execution is None or _machine_type(execution) != "STANDARD":
            return
        described = self._overlay_execution(_described(execution))
        if only_if and described["status"] != only_if:
            return
        detail = status_change_detail(described, as_status)
        if detail["status"] in OPEN:
            when = described.get("redriveDate") or described.get("startDate")
        else:
            when = described.get("stopDate")
        self.events.emit(detail, float(when or _now()))

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
            events = self.events.counted()
            with self.lock:
                return _respond(
                    start_response,
                    200,
                    {
                        "calls": dict(self.calls),
                        "throttled": dict(self.throttled),
                        "latency_seconds": self.latency_waited,
                        "by_execution": _nested(self.calls_by_execution, outer=1),
                        "by_target": _nested(self.calls_by_target, outer=0),
                        "throttled_by_target": _nested(self.throttled_by_target, outer=0),
                        "events": events,
                    },
                )
        if path == "/fakeaws/events":
            return _respond(start_response, 200, self.events.snapshot())
        if path == "/fakeaws/reset":
            self.reset()
            return _respond(start_response, 200, {})
        if path == "/fakeaws/config":
            try:
                self.configure(**body)
            except (BadLatency, TypeError) as exc:
                return _respond(start_response, 400, {"message": f"bad config: {exc}"})
            return _respond(start_response, 200, {})
        if path == "/fakeaws/map-runs":
            run = self.map_runs.create(**body)
            return _respond(start_response, 200, {"mapRunArn": run.arn})
        if path == "/fakeaws/finish":
            self.finish(
                body.pop("executionArn"), body.pop("status"), body.pop("events", []), **body
            )
            return _respond(start_response, 200, {})
        return _respond(start_response, 404, {"message": f"no such control endpoint {path}"})

    def configure(
        self,
        quotas: Any = "unchanged",
        faults: dict[str, Any] | None = None,
        events: dict[str, Any] | None = None,
        redrive: dict[str, Any] | None = None,
    ) -> None:
        """Set what is given; `faults` and `events` replace the whole previous
        setting (`{}`: none), `quotas` "aws", {operation: (size, refill)} or None."""
        if events is not None:
            self.events.configure(**events)
        with self.lock:
            if redrive is not None:
                self.redrives.configure(**redrive)
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
                if "latency" in faults:
                    faults["latency"] = Latency.from_config(faults["latency"])
                self.faults = Faults(**faults)


def _find_execution(arn: str) -> Any:
    """moto's object for an execution ARN (of any account and region), or None."""
    parts = arn.split(":")
    if len(parts) != 8 or parts[5] != "execution":
        return None
    from moto.stepfunctions.responses import get_backend

    backend = get_backend(parts[4], parts[3])
    machine_arn = ":".join([*parts[:5], "stateMachine", parts[6]])
    machine = next((m for m in backend.state_machines if m.arn == machine_arn), None)
    if machine is None:
        return None
    # Executions of a published version are kept by the version.
    owners: list[Any] = [machine, *machine.versions.values()]
    for owner in owners:
        # The newest last: a start looks up the one it just made.
        for execution in reversed(owner.executions):
            if execution.execution_arn == arn:
                return execution
    return None


def _timed_out_stop(item: dict[str, Any]) -> dict[str, Any]:
    """moto leaves the stopDate out of a TIMED_OUT execution (AWS does not)."""
    if item.get("status") == "TIMED_OUT" and "stopDate" not in item:
        execution = _find_execution(str(item.get("executionArn", "")))
        if execution is not None and execution.stop_date is not None:
            item = {**item, "stopDate": epoch_seconds(execution.stop_date)}
    return item


def _machine_type(execution: Any) -> str:
    # moto's `sm_type` says STANDARD for every machine; `type` is the real one.
    machine = getattr(execution, "state_machine", None)
    if machine is None:
        from moto.stepfunctions.responses import get_backend

        parts = str(execution.execution_arn).split(":")
        try:
            machine = get_backend(parts[4], parts[3]).describe_state_machine(
                execution.state_machine_arn
            )
        except Exception:
            return "STANDARD"
    return str(getattr(machine, "type", "STANDARD"))


def _described(execution: Any) -> dict[str, Any]:
    """moto's DescribeExecution answer for `execution`, parsed, without going
    through its HTTP layer (milliseconds a call, in moto's execution thread).

    Mirrors `moto.stepfunctions.responses.StepFunctionResponse.describe_execution`,
    plus the stopDate of TIMED_OUT, as `_op_DescribeExecution` adds it.
    """
    status = str(execution.status)
    out: dict[str, Any] = {
        "executionArn": execution.execution_arn,
        "input": execution.execution_input,
        "name": execution.name,
        "startDate": epoch_seconds(execution.start_date),
        "stateMachineArn": execution.state_machine_arn,
        "status": status,
    }
    if status in ("SUCCEEDED", "ABORTED", "FAILED", "TIMED_OUT") and execution.stop_date:
        out["stopDate"] = epoch_seconds(execution.stop_date)
    if status == "SUCCEEDED":
        if isinstance(execution.output, str):
            out["output"] = execution.output
        elif execution.output is not None:
            out["output"] = json.dumps(execution.output)
        out["outputDetails"] = execution.output_details
    if execution.error is not None:
        out["error"] = execution.error
    if execution.cause is not None:
        out["cause"] = execution.cause
    return out


def _nested(counts: Counter[tuple[str, str]], outer: int) -> dict[str, dict[str, int]]:
    """{(a, b): n} as {a: {b: n}} (outer=0) or {b: {a: n}} (outer=1)."""
    out: dict[str, dict[str, int]] = {}
    for key, n in counts.items():
        out.setdefault(key[outer], {})[key[1 - outer]] = n
    return out


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


def _account(environ: dict[str, Any]) -> str:
    """The account moto serves the request from, found the way moto finds it
    (`BaseResponse.get_current_account`): assumed-role keys map to the role's
    account, any other key to moto's default one."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if "HTTP_X_MOTO_ACCOUNT_ID" in environ:
        return str(environ["HTTP_X_MOTO_ACCOUNT_ID"])
    from moto.core.responses import BaseResponse
    from moto.iam.models import get_account_id_from

    match = BaseResponse.access_key_regex.search(environ.get("HTTP_AUTHORIZATION", ""))
    return get_account_id_from(match.group(1) if match else "AKIAEXAMPLE")


def _now() -> float:
    """time.time() truncated to the millisecond, as AWS's dates are."""
    return math.floor(time.time() * 1000) / 1000


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
