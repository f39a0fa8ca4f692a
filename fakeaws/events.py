"""Step Functions' own EventBridge events, which moto does not send.

AWS puts an event on the default event bus of the execution's account and
region for every status change of a Standard execution (source `aws.states`,
detail-type `Step Functions Execution Status Change`). Here:

- `status_change_detail` builds the event's detail from a DescribeExecution
  answer, with AWS's field shapes and its 248 KB payload rule;
- `StatusEvents` hands events to moto's EventBridge backend in this process
  (which routes them to whatever rules exist), with delivery faults for tests
  and benchmarks: drop a share, deliver a share twice, delay each one;
- `watch_execution_ends` routes the end of every moto execution to the apps
  that asked for it (see `_install_hook` for why a hook rather than polling).

moto is imported when first needed, as in fakeaws.app: importing fakeaws
(every test run does) must not cost moto's import.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import heapq
import itertools
import json
import logging
import random
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol

SOURCE = "aws.states"
DETAIL_TYPE = "Step Functions Execution Status Change"
# AWS leaves the input out (then the output) when the escaped strings exceed this.
PAYLOAD_LIMIT = 248 * 1024
REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
# How many emitted events /fakeaws/events lists: enough for a test or a
# benchmark's check, small enough to answer in one response.
KEEP = 5000
OUTCOMES = ("emitted", "delivered", "dropped", "duplicated", "failed")

log = logging.getLogger(__name__)


def epoch_ms(value: float | dt.datetime | None) -> int | None:
    """Epoch milliseconds, as the events carry them; floats are epoch seconds."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        # moto's serialiser truncates to the millisecond: so does this.
        return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000
    return round(float(value) * 1000)


def epoch_seconds(value: dt.datetime) -> float:
    """A datetime as moto's JSON answers give it (seconds, truncated to ms)."""
    return calendar.timegm(value.utctimetuple()) + (value.microsecond // 1000) / 1000.0


def status_change_detail(described: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """The detail of the event for `described` (a DescribeExecution answer).

    `status` overrides the described one: the RUNNING event of a start is
    built after moto answers, when a short execution may have ended already.
    """
    status = status or str(described["status"])
    running = status in ("RUNNING", "PENDING_REDRIVE")
    data_in = described.get("input")
    data_out = described.get("output") if status == "SUCCEEDED" else None
    size_in = len(json.dumps(data_in)) if data_in is not None else 0
    size_out = len(json.dumps(data_out)) if data_out is not None else 0
    input_included = size_in + size_out <= PAYLOAD_LIMIT
    output_included = size_out <= PAYLOAD_LIMIT
    redrivable = status in REDRIVABLE
    return {
        "executionArn": described["executionArn"],
        "stateMachineArn": described["stateMachineArn"],
        "name": described["name"],
        "status": status,
        "startDate": epoch_ms(described.get("startDate")),
        "stopDate": None if running else epoch_ms(described.get("stopDate")),
        "input": data_in if input_included else None,
        "inputDetails": {"included": input_included},
        "output": data_out if output_included else None,
        "outputDetails": None if data_out is None else {"included": output_included},
        "redriveCount": int(described.get("redriveCount") or 0),
        "redriveDate": epoch_ms(described.get("redriveDate")),
        "redriveStatus": "REDRIVABLE" if redrivable else "NOT_REDRIVABLE",
        "redriveStatusReason": (
            None if redrivable else f"Execution is {status} and cannot be redriven"
        ),
        "error": None if running else described.get("error"),
        "cause": None if running else described.get("cause"),
    }


@dataclass
class EventSettings:
    # False: no event at all, as if Step Functions sent none.
    enabled: bool = True
    # Share of events (0..1) never delivered ...
    drop_fraction: float = 0.0
    # ... and of the others, delivered twice (EventBridge is at least once).
    duplicate_fraction: float = 0.0
    # Each delivery waits a uniform random time in [0, this]: they can cross.
    delay_seconds: float = 0.0


class StatusEvents:
    """Status-change events handed to moto's EventBridge, with delivery faults."""

    def __init__(self, rng: random.Random) -> None:
        # The app's seeded generator: a test that sets the seed gets the
        # same drops and duplicates every run.
        self.random = rng
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        # (due on time.monotonic(), sequence, generation, entry): delayed deliveries.
        self._pending: list[tuple[float, int, int, dict[str, Any]]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        # A delivery scheduled before a reset must not reach the next test's rules.
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.settings = EventSettings()
            self.counts: Counter[str] = Counter()
            self.emitted: deque[dict[str, Any]] = deque(maxlen=KEEP)
            self._pending.clear()
            self.generation += 1

    def configure(self, **settings: Any) -> None:
        with self.lock:
            self.settings = EventSettings(**settings)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def emit(self, detail: dict[str, Any], when: float) -> None:
        """Publish one status change (`when`: its time, epoch seconds)."""
        arn = str(detail["executionArn"])
        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(detail),
            "Resources": [arn],
            "Time": when,
        }
        with self.lock:
            settings = self.settings
            if not settings.enabled:
                return
            copies = 1
            # Draw only for the faults that are on, so that turning one on
            # does not change the choices of another (throttling shares the
            # generator).
            if settings.drop_fraction and self.random.random() < settings.drop_fraction:
                copies = 0
            elif settings.duplicate_fraction and self.random.random() < settings.duplicate_fraction:
                copies = 2
            self.counts["emitted"] += 1
            if copies == 0:
                self.counts["dropped"] += 1
            elif copies == 2:
                self.counts["duplicated"] += 1
            self.emitted.append(
                {
                    "executionArn": arn,
                    "status": detail["status"],
                    "redriveCount": detail["redriveCount"],
                    "time": time.time(),
                    "copies": copies,
                }
            )
            delays = [
                self.random.uniform(0, settings.delay_seconds) if settings.delay_seconds else 0.0
                for _ in range(copies)
            ]
            generation = self.generation
            for delay in delays:
                if delay > 0:
                    self._schedule(time.monotonic() + delay, generation, entry)
        for delay in delays:
            if delay <= 0:
                self._deliver(entry, generation)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "settings": asdict(self.settings),
                "counts": self._counts(),
                "pending": len(self._pending),
                "emitted": list(self.emitted),
            }

    def counted(self) -> dict[str, int]:
        with self.lock:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        return {outcome: self.counts[outcome] for outcome in OUTCOMES}

    def _deliver(self, entry: dict[str, Any], generation: int) -> None:
        with self.lock:
            if generation != self.generation:
                return
        from moto.events.models import events_backends

        _, _, _, region, account, *_ = entry["Resources"][0].split(":")
        try:
            answers = events_backends[account][region].put_events([entry])
            failed = any("ErrorCode" in a for a in answers)
        except Exception:
            # A target that is gone (a deleted queue) must not break the
            # execution's thread or the request that emitted the event.
            log.exception("fakeaws: delivering a Step Functions event failed")
            failed = True
        with self.lock:
            if generation == self.generation:
                self.counts["failed" if failed else "delivered"] += 1

    # --- Delayed deliveries: one thread while there are any -------------------------
    # (A timer thread per event would be thousands of threads in a benchmark.)

    def _schedule(self, due: float, generation: int, entry: dict[str, Any]) -> None:
        """Called with self.lock held."""
        heapq.heappush(self._pending, (due, next(self._sequence), generation, entry))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fakeaws-events", daemon=True)
            self._thread.start()
        else:
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if not self._pending:
                        self._thread = None
                        return
                    due = self._pending[0][0]
                    now = time.monotonic()
                    if due <= now:
                        _, _, generation, entry = heapq.heappop(self._pending)
                        break
                    self._wake.wait(due - now)
            self._deliver(entry, generation)


# --- The end of moto's executions -------------------------------------------------------


class EndListener(Protocol):
    def stopping_through_api(self, arn: str) -> bool: ...

    def execution_ended(self, execution: Any, stopped_through_api: bool) -> None: ...


_listeners: weakref.WeakSet[EndListener] = weakref.WeakSet()
_listeners_lock = threading.Lock()


def watch_execution_ends(listener: EndListener) -> None:
    """Call `listener.execution_ended` for every execution moto ends, from then on.

    Held weakly: an app that is dropped stops listening. Every listener hears
    every end (moto's state is one per process, whichever app started the
    execution); each decides whether the execution is its own.
    """
    with _listeners_lock:
        _install_hook()
        _listeners.add(listener)


def _execution_ended(execution: Any) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    arn = str(execution.exec_arn)
    # A StopExecution through any app reports the ABORTED itself, with its
    # error and cause: the hook must not report a second one without them.
    stopped = any(listener.stopping_through_api(arn) for listener in listeners)
    for listener in listeners:
        try:
            listener.execution_ended(execution, stopped)
        except Exception:
            # Never break moto's execution thread.
            log.exception("fakeaws: reporting the end of %s failed", arn)


def _install_hook() -> None:
    """Wrap moto's `terminated()`, once per process, when the first app
    listens (not at import: `import fakeaws` stays free of moto's parser).

    moto's execution thread calls it right after it sets the final status
    (SUCCEEDED, FAILED, TIMED_OUT, ABORTED), once per execution. Hooking it
    reports an end at once and cannot miss one; polling would have to list
    every running execution of every account and region on each tick, trading
    API-like work against how late the event comes. The price is depending
    on a moto internal, which fails loudly (at import) if moto renames it.
    """
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication.terminated
    if getattr(original, "_fakeaws_hook", False):
        return

    @functools.wraps(original)
    def terminated(self: Any) -> None:
        original(self)
        _execution_ended(self.execution)

    terminated._fakeaws_hook = True  # type: ignore[attr-defined]
    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
