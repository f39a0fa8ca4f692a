"""The Amazon States Language, the little of it the dashboard reads: the
states of a definition by name (nested ones too), the reference paths and
timestamps of Wait states, and how Retry rules match errors and space their
attempts. Plain functions of a definition's text and values.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

# Retry defaults.
DEFAULT_INTERVAL = 1.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF = 2.0
# Error names with a wildcard meaning in Retry and Catch.
_TIMEOUTS = frozenset(("States.Timeout", "States.HeartbeatTimeout"))


# --- The definition ------------------------------------------------------------------------


@lru_cache(maxsize=64)
def parsed(definition: str) -> dict[str, Any] | None:
    """The definition as a dict; None when it is not a JSON object."""
    try:
        value = json.loads(definition)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@lru_cache(maxsize=64)
def state_index(definition: str) -> dict[str, dict[str, Any]]:
    """Every state of a definition by name, nested ones too (Map iterators and
    item processors, Parallel branches). State names are unique in a state
    machine; should one repeat, the outermost wins."""
    machine = parsed(definition)
    out: dict[str, dict[str, Any]] = {}
    if machine is None:
        return out
    pending: list[Any] = [machine]
    while pending:
        machine = pending.pop(0)
        states = machine.get("States") if isinstance(machine, dict) else None
        if not isinstance(states, dict):
            continue
        for name, state in states.items():
            if not isinstance(state, dict):
                continue
            out.setdefault(str(name), state)
            branches = state.get("Branches")
            if isinstance(branches, list):
                pending.extend(branches)
            for key in ("Iterator", "ItemProcessor"):
                if isinstance(state.get(key), dict):
                    pending.append(state[key])
    return out


@lru_cache(maxsize=64)
def nested_states(definition: str) -> frozenset[str]:
    """Names of the states inside a Map or a Parallel state: the ones that may
    have several visits open at once."""
    out: set[str] = set()
    for state in state_index(definition).values():
        branches = state.get("Branches")
        machines = list(branches) if isinstance(branches, list) else []
        machines += [
            state[k] for k in ("Iterator", "ItemProcessor") if isinstance(state.get(k), dict)
        ]
        for machine in machines:
            states = machine.get("States") if isinstance(machine, dict) else None
            if isinstance(states, dict):
                out.update(str(name) for name in states)
    return frozenset(out)


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# --- JSONPath, the small part Wait states use ----------------------------------------------

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def resolve_path(path: str, document: Any) -> tuple[bool, Any]:
    """(found, value) for a reference path such as `$.a.b[0]` or `$['a b']`."""
    if not isinstance(path, str) or not path.startswith("$") or path.startswith("$$"):
        return False, None
    value = document
    pos = 1
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            return False, None
        key, index, quoted, double = match.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return False, None
            value = value[int(index)]
        else:
            name = next(k for k in (key, quoted, double) if k is not None)
            if not isinstance(value, dict) or name not in value:
                return False, None
            value = value[name]
        pos = match.end()
    return True, value


def parse_timestamp(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None  # ASL timestamps carry their zone ("Z" or an offset)
    return stamp.astimezone(dt.UTC)


# --- Retry rules -----------------------------------------------------------------------------


def rule_matches(error_equals: Iterable[Any], error: str) -> bool:
    """Whether a Retry (or Catch) rule's ErrorEquals takes this error."""
    names = {str(e) for e in error_equals}
    if error in names or "States.ALL" in names:
        return True
    if "States.TaskFailed" in names and error not in _TIMEOUTS:
        return True
    return "States.Timeout" in names and error == "States.HeartbeatTimeout"


def matching_rule(retriers: Sequence[Any], error: str) -> int | None:
    for i, rule in enumerate(retriers):
        if isinstance(rule, dict) and rule_matches(rule.get("ErrorEquals") or (), error):
            return i
    return None


def retry_delay(rule: dict[str, Any], retry_number: int) -> float:
    """Seconds before the `retry_number`-th retry (1-based) by this rule:
    IntervalSeconds * BackoffRate^(n-1), capped by MaxDelaySeconds."""
    interval = number(rule.get("IntervalSeconds"))
    backoff = number(rule.get("BackoffRate"))
    interval = DEFAULT_INTERVAL if interval is None else interval
    backoff = DEFAULT_BACKOFF if backoff is None else backoff
    try:
        delay = interval * backoff ** max(0, retry_number - 1)
    except OverflowError:
        delay = float("inf")
    cap = number(rule.get("MaxDelaySeconds"))
    if cap is not None and cap > 0:
        delay = min(delay, cap)
    return min(delay, 10 * 365 * 86400.0)


def max_attempts(rule: dict[str, Any]) -> int:
    value = number(rule.get("MaxAttempts"))
    return DEFAULT_MAX_ATTEMPTS if value is None else max(0, int(value))
