"""What each history event says, in words: a one-line summary, the detail
fields, and the payloads (input, output, parameters) to fold away.

Every one of the 62 HistoryEventType values of the Step Functions API (the
list is in executions/event_types.py, with the `*EventDetails` member each
carries) is described here. A type AWS adds later still renders: its details
are read generically, key by key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..event_types import DETAILS_KEY, FAILURE_TYPES

# What to say for the types that carry no details (the table's State column
# names the state).
_PLAIN: dict[str, str] = {
    "LambdaFunctionStarted": "the Lambda function started",
    "MapStateAborted": "the Map state was aborted",
    "MapStateFailed": "the Map state failed",
    "MapStateSucceeded": "every iteration succeeded",
    "ParallelStateAborted": "the Parallel state was aborted",
    "ParallelStateFailed": "a branch failed",
    "ParallelStateStarted": "the branches started",
    "ParallelStateSucceeded": "every branch succeeded",
    "TaskStateAborted": "the task was aborted",
    "WaitStateAborted": "the wait was aborted",
    "MapRunAborted": "the Map Run was aborted",
    "MapRunSucceeded": "the Map Run succeeded",
}

# Members that hold JSON documents: folded away, never in a one-liner.
PAYLOAD_KEYS = ("input", "output", "parameters", "assignedVariables")
# How much of a cause the one-line summary shows; the details show it all.
SUMMARY_CAUSE_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of an event's summary: `label: value`."""

    label: str
    value: str
    cls: str = ""  # "error", "cause", "name": how the page styles it


@dataclass(frozen=True, slots=True)
class Payload:
    label: str  # "input", "output", "parameters", "assigned variables"
    text: str  # as AWS sent it (a JSON document, usually)
    truncated_by_aws: bool


@dataclass(frozen=True, slots=True)
class Description:
    parts: list[Part]  # the one-line summary
    fields: list[Part]  # the rest of the details, for the fold
    payloads: list[Payload]
    failed: bool


def details_key_for(event_type: str) -> str:
    """The details member of a type; for an unknown type, the name AWS's
    pattern gives it (lowerCamel type + "EventDetails")."""
    if event_type in DETAILS_KEY:
        return DETAILS_KEY[event_type]
    return event_type[:1].lower() + event_type[1:] + "EventDetails" if event_type else ""


def one_line(value: str) -> str:
    """A value that keeps a text line a line: control characters escaped."""
    if not _CONTROL.search(value):
        return value
    return _CONTROL.sub(lambda m: _CONTROL_ESCAPES.get(m[0], f"\\u{ord(m[0]):04x}"), value)


def size_label(text: str) -> str:
    n = len(text.encode("utf-8", "surrogatepass"))
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _words(key: str) -> str:
    """taskCredentials -> task credentials."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", key).lower()


def _resource(details: dict[str, Any]) -> str:
    resource = _text(details.get("resource"))
    kind = _text(details.get("resourceType"))
    if kind and resource and not resource.startswith("arn:"):
        return f"{kind}:{resource}"
    return resource or kind


def _seconds(value: Any) -> str:
    return f"{value} s" if isinstance(value, int | float) else _text(value)


def describe(event_type: str, details: Any) -> Description:
    """The summary parts, detail fields and payloads of one event."""
    d: dict[str, Any] = details if isinstance(details, dict) else {}
    parts: list[Part] = []
    used: set[str] = set()

    def add(label: str, key: str, cls: str = "", fmt: Any = _text) -> None:
        if key in d and d[key] not in (None, ""):
            parts.append(Part(label, fmt(d[key]), cls))
            used.add(key)

    if event_type.startswith("MapIteration"):
        add("map", "name", "name")
        add("index", "index")
    elif "name" in d:
        add("name", "name", "name")
    add("state", "state", "name")  # EvaluationFailed
    resource = _resource(d)
    if resource:
        parts.append(Part("resource", resource))
        used.update(("resource", "resourceType"))
    add("region", "region")
    add("worker", "workerName")
    add("items", "length")
    add("redrive", "redriveCount", fmt=lambda v: f"#{v}")
    add("map run", "mapRunArn")
    add("role", "roleArn")
    add("version", "stateMachineVersionArn")
    add("alias", "stateMachineAliasArn")
    add("timeout", "timeoutInSeconds", fmt=_seconds)
    add("heartbeat", "heartbeatInSeconds", fmt=_seconds)
    if resource.endswith(".waitForTaskToken"):
        parts.append(Part("callback", "waits for a task token"))
    add("error", "error", "error")
    add("location", "location")
    add("cause", "cause", "cause")

    payloads: list[Payload] = []
    for key in PAYLOAD_KEYS:
        if key not in d or d[key] is None:
            continue
        used.update((key, key + "Details"))
        value = d[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        flags = d.get(key + "Details")
        truncated = isinstance(flags, dict) and bool(flags.get("truncated"))
        payloads.append(Payload(_words(key), text, truncated))

    fields: list[Part] = []
    for key, value in d.items():
        if key in used or value is None:
            continue
        if isinstance(value, dict) and set(value) == {"truncated"}:
            # inputDetails without its input: only worth saying when true.
            if value["truncated"]:
                fields.append(Part(_words(key), "truncated by AWS"))
            continue
        if isinstance(value, dict) and "roleArn" in value and len(value) == 1:
            fields.append(Part(_words(key), _text(value["roleArn"])))
            continue
        fields.append(Part(_words(key), _text(value)))

    if not parts and not payloads and not fields:
        parts.append(Part("", _PLAIN.get(event_type) or _words(event_type)))
    return Description(parts, fields, payloads, event_type in FAILURE_TYPES)


def summary_text(desc: Description, *, cause_chars: int | None = SUMMARY_CAUSE_CHARS) -> str:
    """The summary as one line of text: `label: value, label: value`."""
    out = []
    for part in desc.parts:
        value = part.value
        if part.cls == "cause" and cause_chars is not None and len(value) > cause_chars:
            value = value[:cause_chars] + "…"
        value = one_line(value)
        out.append(f"{part.label}: {value}" if part.label else value)
    return ", ".join(p for p in out if p)


def payload_preview(payload: Payload) -> str:
    """A payload summary for places with no room for it: `input (1.2 KB)`."""
    return f"{payload.label} ({size_label(payload.text)})"


def pretty(text: str, limit: int | None = None) -> tuple[str, bool]:
    """A payload indented for reading when it is JSON (else as it is), cut at
    `limit` characters. Returns (text, whether it was cut). Only the part
    shown is encoded: a 256 KiB payload costs one parse, not a full dump."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        out = text
    else:
        if not isinstance(value, dict | list):
            out = text
        else:
            encoder = json.JSONEncoder(indent=2, ensure_ascii=False)
            pieces: list[str] = []
            size = 0
            for chunk in encoder.iterencode(value):
                pieces.append(chunk)
                size += len(chunk)
                if limit is not None and size > limit:
                    break
            out = "".join(pieces)
    if limit is not None and len(out) > limit:
        return out[:limit], True
    return out, False
