"""Hostile content in every field the pages show, made directly as cached rows
(tests/web/test_hostile_content.py checks the HTML and exports, and
tests/e2e/test_hostile_pages.py what Chromium does with them).

AWS refuses markup in execution and state machine names, but the cache is not
trusted to have come from AWS: names carry payloads too. Input and output are
256 KiB, the cause 32,768 characters with a long unbroken run (the layout must
wrap it), and events of many types carry payloads in every detail field.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from django.utils import timezone

from executions.models import Execution, HistoryEvent, StateMachine, StopRequest, SyncRun
from tests.support.factories import execution_row, state_machine_row

SCRIPT = "<script>window.__xss=1;alert(1)</script>"
IMG = '"><img src=x onerror="window.__xss=1;alert(2)">'
SVG = "<svg onload=window.__xss=1><a xlink:href=javascript:alert(4)>x</a></svg>"
LINK = "javascript:window.__xss=1;alert(3)"
ATTR = "' autofocus onfocus='window.__xss=1"
PAYLOADS = (SCRIPT, IMG, SVG, LINK, ATTR)
MIXED = " ".join(PAYLOADS)


class _Markup(HTMLParser):
    """What a browser would make of a page: elements and attributes that a
    payload creates if it is not escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            text = (value or "").strip().lower()
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>: an event handler")
            if name in ("href", "src", "xlink:href", "action", "formaction") and text.startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}={value!r}>: a javascript: URL")
            if tag == "img" and name == "src" and text == "x":
                self.problems.append("<img src=x>: the payload's image")
            if name == "autofocus" and tag not in ("input", "textarea", "select", "button"):
                self.problems.append(f"<{tag} autofocus>: the payload's attribute")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and "__xss" in data:
            self.problems.append("a <script> with the payload")


def markup_from_payloads(page: str) -> list[str]:
    """The elements and attributes of `page` that hostile content created."""
    parser = _Markup()
    parser.feed(page)
    parser.close()
    return parser.problems


KIB_256 = 256 * 1024
CAUSE_MAX = 32_768


def big_json(size: int, note: str) -> str:
    """A JSON document of exactly `size` characters, payloads first, then a
    long string with no space to break a line at."""
    head = {"note": note, "url": LINK, "html": IMG, "svg": SVG}
    text = json.dumps({**head, "blob": ""})
    filler = size - len(text)
    return json.dumps({**head, "blob": "B" * filler})


def long_cause() -> str:
    start = f"{MIXED}\n"
    return start + "C" * (CAUSE_MAX - len(start))


@dataclass
class HostileWorld:
    state_machine: StateMachine
    failed: Execution  # every field hostile, 256 KiB input and output, 32 KiB cause
    running: Execution  # hostile, running (the stop page, the live panel)
    child: Execution  # a distributed Map child: "/" in its ARN

    @property
    def executions(self) -> list[Execution]:
        return [self.failed, self.running, self.child]


def _events(ex: Execution, items: list[tuple[str, str, dict[str, Any] | None]]) -> None:
    rows = [
        HistoryEvent(
            execution=ex,
            event_id=i,
            previous_event_id=i - 1,
            timestamp=ex.start_date + dt.timedelta(seconds=i),
            type=event_type,
            details_key=key,
            details=details,
        )
        for i, (event_type, key, details) in enumerate(items, start=1)
    ]
    HistoryEvent.objects.bulk_create(rows)
    Execution.objects.filter(pk=ex.pk).update(last_event_id=len(rows))
    ex.last_event_id = len(rows)


def _history(ex: Execution, *, finished: bool) -> None:
    task = {
        "resourceType": "lambda",
        "resource": LINK,
        "region": "us-east-1",
        "parameters": json.dumps({"FunctionName": SCRIPT, "Payload": IMG}),
    }
    items: list[tuple[str, str, dict[str, Any] | None]] = [
        (
            "ExecutionStarted",
            "executionStartedEventDetails",
            {"input": ex.input or "{}", "roleArn": LINK},
        ),
        ("PassStateEntered", "stateEnteredEventDetails", {"name": SCRIPT, "input": IMG}),
        ("PassStateExited", "stateExitedEventDetails", {"name": SCRIPT, "output": SVG}),
        ("MapStateEntered", "stateEnteredEventDetails", {"name": IMG, "input": "[1, 2]"}),
        ("MapStateStarted", "mapStateStartedEventDetails", {"length": 2}),
        ("MapIterationStarted", "mapIterationStartedEventDetails", {"name": IMG, "index": 0}),
        ("TaskStateEntered", "stateEnteredEventDetails", {"name": SVG, "input": MIXED}),
        ("TaskScheduled", "taskScheduledEventDetails", task),
        ("TaskStarted", "taskStartedEventDetails", {"resourceType": "lambda", "resource": LINK}),
        (
            "TaskFailed",
            "taskFailedEventDetails",
            {"resourceType": "lambda", "resource": LINK, "error": SCRIPT, "cause": ex.cause},
        ),
        ("MapIterationFailed", "mapIterationFailedEventDetails", {"name": IMG, "index": 0}),
        ("MapStateFailed", "", None),
    ]
    if finished:
        items.append(
            (
                "ExecutionFailed",
                "executionFailedEventDetails",
                {"error": ex.error, "cause": ex.cause},
            )
        )
    _events(ex, items)


def make_hostile_world() -> HostileWorld:
    definition = json.dumps(
        {
            "Comment": MIXED,
            "StartAt": SCRIPT,
            "States": {
                SCRIPT: {"Type": "Pass", "Next": IMG},
                IMG: {"Type": "Fail", "Error": SCRIPT, "Cause": IMG},
            },
        }
    )
    sm = state_machine_row("hostile", definition=definition, list_error=f"ListExecutions: {MIXED}")
    failed = execution_row(
        sm,
        name="xss-failed",
        status="FAILED",
        input=big_json(KIB_256, SCRIPT),
        output=big_json(KIB_256, IMG),
        error=SCRIPT,
        cause=long_cause(),
    )
    running = execution_row(
        sm,
        name="xss-running",
        status="RUNNING",
        input=big_json(4096, SVG),
        output=None,
        sync_error=f"GetExecutionHistory failed: {MIXED}",
        sync_due_at=timezone.now(),
    )
    child = execution_row(sm, name="xss-child", status="SUCCEEDED", output=json.dumps(MIXED))
    # A distributed Map child: its ARN has a "/" (the Map run's label).
    Execution.objects.filter(pk=child.pk).update(
        arn=child.arn.replace(":hostile:xss-child", ":hostile/map-label:xss-child")
    )
    child.refresh_from_db()
    _history(failed, finished=True)
    _history(running, finished=False)
    # The cache holds what it holds: names with markup too.
    StateMachine.objects.filter(pk=sm.pk).update(name=SCRIPT)
    Execution.objects.filter(pk=failed.pk).update(name=f"xss-failed{IMG}")
    Execution.objects.filter(pk=running.pk).update(name=f"xss-running{SCRIPT}")
    for ex in (failed, running, child):
        ex.refresh_from_db()
    sm.refresh_from_db()
    for outcome, response in (("STOPPED", "{}"), ("FAILED", MIXED), ("REFUSED", SCRIPT)):
        StopRequest.objects.create(
            execution=running if outcome != "REFUSED" else failed,
            username=f"mallory{SCRIPT}"[:150],
            error=SCRIPT,
            cause=long_cause(),
            status_before="RUNNING",
            outcome=outcome,
            aws_response=response,
            request_token=uuid.uuid4(),
        )
    now = timezone.now()
    SyncRun.objects.create(
        kind=SyncRun.Kind.LIST,
        region="us-east-1",
        state_machine=sm,
        started_at=now - dt.timedelta(seconds=30),
        finished_at=now - dt.timedelta(seconds=29),
        ok=False,
        error=f"AccessDenied: {MIXED}",
        api_calls={SCRIPT: 1, "ListExecutions": 2},
    )
    return HostileWorld(sm, failed, running, child)
