"""The two history exports, produced a batch at a time so that a 25,000-event
history is never one string in memory.

history.txt keeps the layout of the seed library's `format_history`: one
block per event, in id order, lines ending in "\\n":

    <Type> [<id>] @ <timestamp>
    <Type> [<id>] @ <timestamp>:
      <details line>
    ...
    Output: <json>

- `<timestamp>` is ISO 8601 in UTC with milliseconds: 2024-05-01T12:00:00.123Z.
- An event that has details ends its first line with `:` and is followed by
  one line indented by two spaces: `label: value` pairs joined by ", " (state
  name, resource, error, cause, worker, map length or index, redrive count,
  timeouts...), control characters escaped (`\\n`) so that it stays one line.
  Payloads (input, output, parameters) are left out; an event whose details
  hold nothing else, or that has no details, is its first line alone.
- `Output: <json>` comes last, only when the execution succeeded: its output
  on one line.

For example (ORDER_PIPELINE of the tests, synced from moto):

    ExecutionStarted [1] @ 2026-11-26T17:37:42.784Z:
      role: arn:aws:iam::123456789012:role/sfn
    PassStateEntered [2] @ 2026-11-26T17:37:42.787Z:
      name: Validate
    ...
    MapStateStarted [7] @ 2026-11-26T17:37:42.807Z:
      items: 3
    MapIterationStarted [8] @ 2026-11-26T17:37:42.810Z:
      map: EachItem, index: 0
    ...
    LambdaFunctionScheduled [27] @ 2026-11-26T17:37:42.834Z:
      resource: arn:aws:lambda:us-east-1:123456789012:function:bill
    LambdaFunctionStarted [28] @ 2026-11-26T17:37:42.835Z
    LambdaFunctionSucceeded [29] @ 2026-11-26T17:37:43.090Z
    ...
    ExecutionSucceeded [37] @ 2026-11-26T17:37:44.093Z
    Output: {"items": [1, 2, 3], "reserved": [1, 2, 3], "shipped": [...]}

and a failure (PAYMENT):

    TaskFailed [5] @ 2026-11-26T17:37:45.218Z:
      resource: dynamodb:getItem, error: DynamoDB.ResourceNotFoundException, cause: Requested...
    ...
    ExecutionFailed [11] @ 2026-11-26T17:37:46.252Z:
      error: Payment.Declined, cause: the card was declined

history.json is `{"events": [...]}` with each event as GetExecutionHistory
returns it: timestamp (ISO 8601), type, id, previousEventId and its one
`*EventDetails` member under its own name. `<`, `>` and `&` are written as
\\u escapes, which JSON readers decode to the same strings.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..models import Execution, ExecutionStatus
from .events import describe, one_line, summary_text


def iso_ms(ts: dt.datetime) -> str:
    """2024-05-01T12:00:00.123Z: UTC, to the millisecond (AWS's precision)."""
    utc = ts.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def details_line(event_type: str, details: Any) -> str:
    """The indented line of history.txt; "" when there is none."""
    if not isinstance(details, dict) or not details:
        return ""
    desc = describe(event_type, details)
    line = summary_text(desc, cause_chars=None)
    if line or not desc.fields:
        return line
    # A type (or member) this code does not know: say what is there.
    return ", ".join(f"{f.label}: {one_line(f.value)}" for f in desc.fields)


def text_block(event_id: int, timestamp: dt.datetime | str, event_type: str, details: Any) -> str:
    """One event's block. `timestamp` may be iso_ms() text already."""
    at = timestamp if isinstance(timestamp, str) else iso_ms(timestamp)
    head = f"{one_line(event_type)} [{event_id}] @ {at}"
    line = details_line(event_type, details)
    return f"{head}:\n  {line}\n" if line else f"{head}\n"


class _Lines:
    """details_line() of details that come as JSON text, each distinct (type,
    text) worked out once: a long history repeats itself (the same states,
    resources and errors thousands of times), and describing an event costs
    more than looking it up. Bounded, so that a history of all-distinct
    events does not hold them all."""

    LIMIT = 5000

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], str] = {}

    def __call__(self, event_type: str, text: str) -> str:
        key = (event_type, text)
        line = self.known.get(key)
        if line is None:
            try:
                details = json.loads(text)
            except ValueError:
                details = None
            line = details_line(event_type, details)
            if len(self.known) >= self.LIMIT:
                self.known.clear()
            self.known[key] = line
        return line


def output_line(output: str | None) -> str:
    """`Output: <json>` on one line, the seed library's way (re-serialised)."""
    if output is None:
        return ""
    try:
        text = json.dumps(json.loads(output), ensure_ascii=False)
    except ValueError:
        text = one_line(output)
    return f"Output: {text}\n"


def text_chunks(execution: Execution, batches: Iterable[list[tuple[Any, ...]]]) -> Iterator[str]:
    """history.txt, one string per batch of events. Details may come decoded
    or as JSON text (source.batches(payloads=False): what the lines need)."""
    succeeded_output: str | None = None
    lines = _Lines()
    for rows in batches:
        parts = []
        for event_id, _prev, ts, event_type, _key, details in rows:
            at = ts if isinstance(ts, str) else iso_ms(ts)
            head = f"{one_line(event_type)} [{event_id}] @ {at}"
            if isinstance(details, str):
                line = lines(event_type, details)
            else:
                line = details_line(event_type, details)
            parts.append(f"{head}:\n  {line}\n" if line else f"{head}\n")
            if event_type == "ExecutionSucceeded":
                value = _member(details, "output")
                succeeded_output = value if isinstance(value, str) else None
        yield "".join(parts)
    if execution.status == ExecutionStatus.SUCCEEDED:
        # The described output; the final event's while DescribeExecution lags.
        line = output_line(execution.output if execution.output is not None else succeeded_output)
        if line:
            yield line


def _member(details: Any, key: str) -> Any:
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return None
    return details.get(key) if isinstance(details, dict) else None


def _safe_json(text: str) -> str:
    # Valid JSON either way; this keeps markup out of the bytes for any
    # reader that sniffs, or a page that embeds it.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def json_chunks(batches: Iterable[list[tuple[Any, ...]]]) -> Iterator[str]:
    """history.json, one string per batch. `details` must be the JSON text the
    database holds (source.batches(raw_details=True)): it is copied, not
    decoded and encoded again. A timestamp may be iso_ms() text already."""
    yield '{"events": ['
    first = True
    # A history has a few dozen types and keys: quote each once.
    quoted: dict[str, str] = {}
    for rows in batches:
        parts = []
        for event_id, prev, ts, event_type, key, details in rows:
            at = ts if isinstance(ts, str) else iso_ms(ts)
            name = quoted.get(event_type) or quoted.setdefault(event_type, json.dumps(event_type))
            head = (
                f'{{"timestamp": "{at}", "type": {name}, '
                f'"id": {int(event_id)}, "previousEventId": {int(prev or 0)}'
            )
            if key and details is not None:
                member = quoted.get(key) or quoted.setdefault(key, json.dumps(key))
                head += f", {member}: {_json_text(details)}"
            parts.append(head + "}")
        if parts:
            yield ("" if first else ", ") + _safe_json(", ".join(parts))
            first = False
    yield "]}\n"


def _json_text(details: Any) -> str:
    if isinstance(details, str):
        return details  # the database's own JSON text
    return json.dumps(details, ensure_ascii=False)
