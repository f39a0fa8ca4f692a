"""The history exports: /executions/<arn>/history.txt and history.json (streamed)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from executions import history
from executions.models import Execution
from executions.sync import flows
from tests.support.factories import events, execution_row
from tests.support.helpers import FAIL, ORDER_PIPELINE, wait_until_finished
from tests.support.history_data import big_history, every_type

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
HEADER = re.compile(r"^(\w+) \[(\d+)\] @ (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)(:?)$")


def _get(client: Any, ex: Execution, ext: str) -> tuple[Any, bytes]:
    response = client.get(f"/executions/{ex.arn}/history.{ext}")
    assert response.streaming is True
    return response, b"".join(response.streaming_content)


def _blocks(text: str) -> list[tuple[str, int, str, str | None]]:
    """history.txt -> (type, id, timestamp, details line or None), checking
    the layout line by line."""
    lines = text.split("\n")
    assert lines[-1] == ""  # every line ends in a newline
    lines = lines[:-1]
    out: list[tuple[str, int, str, str | None]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Output: "):
            assert i == len(lines) - 1, "Output: comes last"
            break
        match = HEADER.match(line)
        assert match, f"line {i + 1} is not an event header: {line!r}"
        details = None
        if match[4] == ":":
            i += 1
            assert lines[i].startswith("  ")
            assert not lines[i].startswith("   ")
            details = lines[i][2:]
            assert details
        out.append((match[1], int(match[2]), match[3], details))
        i += 1
    return out


def _aws_events(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _run(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    name: str,
    definition: dict[str, Any],
    payload: dict[str, Any] | None = None,
) -> tuple[Execution, list[dict[str, Any]]]:
    arn = start(make_state_machine(name, definition), f"{name}-1", payload or {})
    wait_until_finished(sfn, [arn])
    return flows.import_execution(arn), _aws_events(sfn, arn)


# --- history.txt -------------------------------------------------------------------------


def test_the_text_of_a_succeeded_execution_follows_the_spec_and_ends_with_its_output(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    ex, aws = _run(make_state_machine, start, sfn, "orders", ORDER_PIPELINE, {"items": [1, 2]})
    response, body = _get(viewer_client, ex, "txt")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = body.decode()
    blocks = _blocks(text)
    # One block per event, in order, as AWS has them, timestamps in UTC to the ms.
    assert [(b[0], b[1]) for b in blocks] == [(e["type"], e["id"]) for e in aws]
    for block, event in zip(blocks, aws, strict=True):
        when = event["timestamp"].astimezone(dt.UTC)
        assert block[2] == when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    by_id = {b[1]: b for b in blocks}
    assert by_id[1][3] == "role: arn:aws:iam::123456789012:role/sfn"
    assert by_id[2][3] == "name: Validate"
    assert by_id[7][3] == "items: 2"
    lambda_scheduled = next(e["id"] for e in aws if e["type"] == "LambdaFunctionScheduled")
    assert by_id[lambda_scheduled][3] == (
        "resource: arn:aws:lambda:us-east-1:123456789012:function:bill"
    )
    started = next(e["id"] for e in aws if e["type"] == "LambdaFunctionStarted")
    assert by_id[started][3] is None  # no details: the header alone, no ":"
    assert f"LambdaFunctionStarted [{started}] @ {by_id[started][2]}\n" in text
    # Output last, on one line, the execution's output.
    last_line = text.rstrip("\n").split("\n")[-1]
    described = sfn.describe_execution(executionArn=ex.arn)["output"]
    assert last_line == "Output: " + json.dumps(json.loads(described))
    assert text.count("\nOutput: ") == 1


def test_the_text_of_a_failed_execution_has_no_output_line(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    ex, aws = _run(make_state_machine, start, sfn, "fails", FAIL)
    _, body = _get(viewer_client, ex, "txt")
    text = body.decode()
    assert "Output:" not in text
    blocks = _blocks(text)
    assert [b[0] for b in blocks] == [e["type"] for e in aws]
    assert blocks[-1][0] == "ExecutionFailed"
    assert blocks[-1][3] == "error: Order.Invalid, cause: the order has no items"
    assert blocks[-2][3] == "name: Boom"
    assert text.endswith(":\n  error: Order.Invalid, cause: the order has no items\n")


def test_every_one_of_the_62_event_types_is_in_the_text(viewer_client: Any) -> None:
    ex = execution_row(status="FAILED")
    every_type(ex)
    _, body = _get(viewer_client, ex, "txt")
    blocks = _blocks(body.decode())
    assert [b[0] for b in blocks] == list(history.DETAILS_KEY)
    for event_type, _, _, details in blocks:
        if history.DETAILS_KEY[event_type] in ("", "executionSucceededEventDetails"):
            assert details is None, event_type
        elif event_type in ("ActivitySucceeded", "LambdaFunctionSucceeded"):
            assert details is None, event_type  # their details are their output alone
        else:
            assert details, event_type
    text = body.decode()
    assert "ActivityStarted [4] @ " in text
    assert "\n  worker: worker-7\n" in text
    assert (
        "\n  resource: lambda:invoke, error: Err.TaskFailed, cause: cause of TaskFailed\n" in text
    )


def test_the_text_of_an_unknown_type_still_has_its_details(viewer_client: Any) -> None:
    ex = execution_row(status="RUNNING")
    events(
        ex, [("QuantumStateCollapsed", "quantumStateCollapsedEventDetails", {"observer": "cat"})]
    )
    _, body = _get(viewer_client, ex, "txt")
    assert body.decode().endswith(":\n  observer: cat\n")


def test_hostile_text_is_served_as_plain_text_never_html(viewer_client: Any) -> None:
    ex = execution_row(status="FAILED")
    every_type(ex, hostile=HOSTILE + "\nInjected [1] @ line")
    response, body = _get(viewer_client, ex, "txt")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    text = body.decode()
    assert HOSTILE in text  # the text is the text...
    # ...and a newline in a value cannot forge a block.
    assert [b[0] for b in _blocks(text)] == list(history.DETAILS_KEY)


# --- history.json ------------------------------------------------------------------------


def test_the_json_is_what_aws_returns(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    ex, aws = _run(make_state_machine, start, sfn, "orders", ORDER_PIPELINE, {"items": [1, 2, 3]})
    response, body = _get(viewer_client, ex, "json")
    assert response["Content-Type"] == "application/json"
    ours = json.loads(body)["events"]
    assert len(ours) == len(aws)
    for mine, theirs in zip(ours, aws, strict=True):
        when = dt.datetime.fromisoformat(mine.pop("timestamp"))
        assert when == theirs.pop("timestamp")
        assert mine == theirs


def test_the_json_of_every_type_keeps_its_details_under_its_own_key(viewer_client: Any) -> None:
    ex = execution_row()
    rows = every_type(ex, hostile=HOSTILE)
    _, body = _get(viewer_client, ex, "json")
    # No markup in the bytes, whatever the payloads hold...
    assert b"<" not in body
    assert b">" not in body
    ours = json.loads(body)["events"]
    assert [e["type"] for e in ours] == list(history.DETAILS_KEY)
    for event, row in zip(ours, rows, strict=True):
        key = history.DETAILS_KEY[row.type]
        expected = {"timestamp", "type", "id", "previousEventId"} | ({key} if key else set())
        assert set(event) == expected
        assert event["id"] == row.event_id
        assert event["previousEventId"] == row.previous_event_id
        if key:
            assert event[key] == row.details  # ...and the same strings once decoded
    assert ours[0]["timestamp"] == history.iso_ms(ex.start_date)


# --- Both ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["txt", "json"])
def test_exports_need_a_user_a_real_arn_and_a_get(client: Any, fake_aws: Any, ext: str) -> None:
    ex = execution_row()
    url = f"/executions/{ex.arn}/history.{ext}"
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    client.force_login(User.objects.create_user("reader", password="reader-pass-123"))
    assert client.post(url).status_code == 405
    assert client.put(url).status_code == 405
    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert client.get(f"/executions/nope/history.{ext}").status_code == 404
    unknown = "arn:aws:states:us-east-1:123456789012:execution:nothing:nobody"
    assert client.get(f"/executions/{unknown}/history.{ext}").status_code == 404


def test_exports_say_whether_the_history_is_complete(viewer_client: Any) -> None:
    running = execution_row(status="RUNNING")
    done = execution_row(status="SUCCEEDED")
    assert viewer_client.get(f"/executions/{running.arn}/history.json")["X-History-Complete"] == (
        "false"
    )
    response = viewer_client.get(f"/executions/{done.arn}/history.txt")
    assert response["X-History-Complete"] == "true"
    assert response["Content-Disposition"] == f'inline; filename="{done.name}-history.txt"'
    # No events yet: still valid, and an empty text.
    assert json.loads(
        b"".join(viewer_client.get(f"/executions/{running.arn}/history.json").streaming_content)
    ) == {"events": []}
    # A succeeded execution with no events cached still ends with its output.
    assert b"".join(response.streaming_content) == b'Output: {"ok": true}\n'


def test_a_25000_event_history_streams_complete(viewer_client: Any) -> None:
    ex = execution_row(name="big")
    assert big_history(ex) == 25_000
    response, body = _get(viewer_client, ex, "json")
    chunks = 0
    response = viewer_client.get(f"/executions/{ex.arn}/history.json")
    for _ in response.streaming_content:
        chunks += 1
    assert chunks >= 25  # one per batch of events: never one 25,000-event string
    events = json.loads(body)["events"]
    assert [e["id"] for e in events] == list(range(1, 25_001))
    assert events[0]["executionStartedEventDetails"]["input"] == json.dumps({"blob": "x" * 200_000})
    assert events[-1]["type"] == "ExecutionSucceeded"

    _, text = _get(viewer_client, ex, "txt")
    blocks = _blocks(text.decode())
    assert len(blocks) == 25_000
    assert [b[1] for b in blocks] == list(range(1, 25_001))
    assert text.decode().endswith('Output: {"ok": true}\n')
