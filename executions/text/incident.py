"""What an execution looks like in an incident channel: a short Markdown
summary to paste (copy for incident), or to post when a watched execution
finishes. The words of a link preview are in link_preview.py.

Plain functions of what the pages already read (the execution, where it
failed or where it is now), so that they cost no query of their own. Times
are in UTC whatever zone the page shows: a channel needs one clock.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from executions.arns import console_url
from executions.history import progress
from executions.history.progress import FailurePoint, OpenState
from executions.history.stuck import Stuck
from executions.models import Execution, ExecutionStatus, StopRequest
from executions.times import human_seconds

# How much of an error and a cause a summary carries.
ERROR_CHARS = 200
CAUSE_LINES = 3
CAUSE_CHARS = 300
# Open states named in a summary of a running execution.
OPEN_STATES_NAMED = 3
# Causes are at most 32 KiB in AWS; anything larger is not parsed for a summary.
CAUSE_MAX_PARSE = 64 * 1024

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_BACKTICKS = re.compile(r"`+")
# Markdown that plain text must not trigger.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+|!~])")


def base_url(request: HttpRequest) -> str:
    """The dashboard's public address, for links that leave the page:
    SFNUI_BASE_URL, else the address this request came to."""
    configured: str = settings.SFNUI_BASE_URL
    if configured:
        return configured.rstrip("/")
    return request.build_absolute_uri("/").rstrip("/")


def utc_text(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def one_line(text: str | None, limit: int) -> str:
    """The first non-empty line, cut to `limit` characters."""
    if not text:
        return ""
    for line in text.splitlines():
        line = CONTROL.sub("", line).strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


def first_lines(text: str | None, lines: int, limit: int) -> list[str]:
    if not text:
        return []
    out: list[str] = []
    used = 0
    for line in text.splitlines():
        line = CONTROL.sub("", line).rstrip()
        if not line.strip():
            continue
        if used + len(line) > limit:
            out.append(line[: max(0, limit - used - 1)] + "…")
            break
        out.append(line)
        used += len(line)
        if len(out) == lines:
            break
    return out


def cause_summary(cause: str | None) -> str:
    """One line that says what went wrong: "ErrorType: message" for the JSON
    that Lambda and most SDKs put in a cause, else the cause itself."""
    if not cause:
        return ""
    if len(cause) <= CAUSE_MAX_PARSE and cause.lstrip().startswith("{"):
        try:
            parsed = json.loads(cause)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            message = parsed.get("errorMessage") or parsed.get("message")
            kind = parsed.get("errorType") or parsed.get("name")
            if isinstance(message, str) and message:
                return f"{kind}: {message}" if isinstance(kind, str) and kind else message
    return cause


def code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds: nothing in
    it is taken for formatting, a link or a mention."""
    text = CONTROL.sub("", text).replace("\n", " ")
    longest = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plain(text: str) -> str:
    """Text that Markdown shows as written."""
    return _MARKDOWN.sub(r"\\\1", CONTROL.sub("", text))


def fenced(lines: Sequence[str], indent: str = "") -> list[str]:
    longest = max((len(m) for line in lines for m in _BACKTICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{indent}{fence}", *(f"{indent}{line}" for line in lines), f"{indent}{fence}"]


def status_label(status: str) -> str:
    return str(dict(ExecutionStatus.choices).get(status, status))


def duration_seconds(ex: Execution, now: dt.datetime) -> float:
    return ((ex.stop_date or now) - ex.start_date).total_seconds()


def event_url(base: str, ex: Execution, event_id: int) -> str:
    path = reverse("execution_history", args=[ex.arn])
    return f"{base}{path}?{urlencode({'event': event_id})}#event-{event_id}"


@dataclass(frozen=True)
class Where:
    """Where it went wrong (a finished execution) or where it is (a running one)."""

    label: str  # "Failed in", "Now in" ...
    states: list[str]
    event_id: int | None
    event_label: str  # "failing event", "current state"
    detail: str = ""  # "TaskFailed, event 12; caught, ended in Fail state NotCaptured"


def where(
    ex: Execution, failure: FailurePoint | None, open_states: Sequence[OpenState]
) -> Where | None:
    if ex.is_open:
        if not open_states:
            return None
        latest = max(open_states, key=lambda s: s.event_id)
        return Where(
            label="Now in",
            states=[s.name for s in open_states],
            event_id=latest.event_id,
            event_label="current state",
        )
    if failure is None:
        return None
    if failure.caught is not None:
        caught = failure.caught
        return Where(
            label="Failed in",
            states=[caught.state_name or failure.state_name],
            event_id=caught.event_id,
            event_label="failing event",
            detail=f"{caught.event_type}, event {caught.event_id}; caught, ended in "
            f"{code(failure.state_name) if failure.state_name else 'a Fail state'}, "
            f"event {failure.event_id}",
        )
    verb = {"TIMED_OUT": "Timed out in", "ABORTED": "Stopped in"}.get(ex.status, "Failed in")
    return Where(
        label=verb,
        states=[failure.state_name] if failure.state_name else [],
        event_id=failure.event_id,
        event_label="failing event",
        detail=f"{failure.event_type}, event {failure.event_id}",
    )


def summary(
    ex: Execution,
    *,
    base: str,
    now: dt.datetime,
    failure: FailurePoint | None = None,
    open_states: Sequence[OpenState] = (),
    stopped_by: str = "",
    why: Stuck | None = None,
) -> str:
    """The Markdown to paste in an incident channel. `why`: the "why is it
    still running" panel of a running execution, when the page has it."""
    sm = ex.state_machine
    lines = [f"**{status_label(ex.status).upper()}** · {plain(sm.name)} · {code(ex.name)}"]
    place = where(ex, failure, open_states)
    if place is not None and place.states:
        named = ", ".join(code(name) for name in place.states[:OPEN_STATES_NAMED])
        more = len(place.states) - OPEN_STATES_NAMED
        if more > 0:
            named += f" and {more} more"
        if ex.is_open:
            latest = max(open_states, key=lambda s: s.event_id)
            since = f" (since {utc_text(latest.entered_at)})" if len(open_states) == 1 else ""
            lines.append(f"- {place.label}: {named}{since}")
        else:
            lines.append(f"- {place.label}: {named} ({place.detail})")
    elif ex.is_open:
        lines.append("- Now in: between states (or its history is not synced yet)")
    if why is not None:
        lines.extend(why_lines(why))
    error = one_line(ex.error if ex.error is not None else (failure.error if failure else ""), 200)
    if error:
        lines.append(f"- Error: {code(error)}")
    cause_text = ex.cause if ex.cause is not None else (failure.cause if failure else "")
    cause = first_lines(cause_summary(cause_text), CAUSE_LINES, CAUSE_CHARS)
    if len(cause) == 1:
        lines.append(f"- Cause: {code(cause[0])}")
    elif cause:
        lines.append("- Cause:")
        lines.extend(fenced(cause, indent="  "))
    if stopped_by:
        lines.append(f"- Stopped by: {plain(stopped_by)} (from sfnui)")
    lines.append(f"- Started: {utc_text(ex.start_date)}")
    if ex.stop_date is not None:
        lines.append(f"- Stopped: {utc_text(ex.stop_date)}")
        lines.append(f"- Duration: {human_seconds(duration_seconds(ex, now))}")
    else:
        lines.append(
            f"- Running for: {human_seconds(duration_seconds(ex, now))} (as of {utc_text(now)})"
        )
    detail = f"{base}{reverse('execution_detail', args=[ex.arn])}"
    lines.append(f"- sfnui: {detail}")
    if place is not None and place.event_id is not None:
        lines.append(f"- {place.event_label.capitalize()}: {event_url(base, ex, place.event_id)}")
    console = console_url(ex.arn)
    if console:
        lines.append(f"- AWS console: {console}")
    lines.append("_Times in UTC._")
    return "\n".join(lines)


def summary_for(ex: Execution, *, base: str, now: dt.datetime | None = None) -> str:
    """The summary of an execution read from the cache (where it failed or
    where it is, who stopped it here), for callers that have not read those
    already, such as a notification when it finishes. A few queries."""
    stopped = (
        StopRequest.objects.filter(execution=ex, outcome=StopRequest.Outcome.STOPPED)
        .order_by("-requested_at")
        .values_list("username", flat=True)
        .first()
    )
    return summary(
        ex,
        base=base,
        now=now or timezone.now(),
        failure=progress.failure_point(ex),
        open_states=progress.open_states(ex),
        stopped_by=stopped or "",
    )


def why_lines(why: Stuck) -> list[str]:
    """The few facts of the "why is it still running" panel worth a line in
    the channel: retries, resume times, callbacks, Map progress, the history
    limit."""
    lines = []
    for r in why.shown[:OPEN_STATES_NAMED]:
        name = code(r.name)
        retry = r.retry
        if retry is not None:
            of = f" of {retry.max_attempts}" if retry.max_attempts else ""
            failed = f"attempt {retry.failures} failed with {code(retry.last_error)}"
            if retry.waiting and retry.next_at is not None:
                when = "by" if retry.jitter else "at"
                lines.append(
                    f"- Retrying {name}: {failed}; attempt {retry.attempt}{of} "
                    f"{when} {utc_text(retry.next_at)}"
                )
            elif retry.exhausted:
                lines.append(f"- {name}: {failed}, no retry left")
            else:
                lines.append(f"- {name}: on attempt {retry.attempt}{of} ({failed})")
        if r.resume is not None and r.resume.at is not None:
            lines.append(f"- {name} resumes at {utc_text(r.resume.at)}")
        if r.callback is not None:
            waits = "a task token" if r.callback.kind == "token" else "an activity worker"
            lines.append(
                f"- {name} waits for {waits}; last sign of life {utc_text(r.callback.last_sign_at)}"
            )
        if r.map is not None and not r.map.map_run_arn:
            total = f" of {r.map.total}" if r.map.total is not None else ""
            lines.append(
                f"- {name}: {r.map.done}{total} iterations done "
                f"({r.map.failed} failed), {r.map.running} running"
            )
    if why.events.warn:
        lines.append(
            f"- History: {why.events.used_label} of {why.events.limit_label} events "
            f"({why.events.percent_label}): AWS fails the execution at the limit"
        )
    return lines
