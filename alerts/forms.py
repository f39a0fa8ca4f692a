"""What people type on /alerts/: a rule (its kind decides which fields count),
a mute, and the audit page's query. A mistake is a 400 that says which field
and why."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import forms
from django.utils import timezone

from executions.models import StateMachine
from executions.times import human_seconds
from executions.web.forms import IsoDateTimeField

from .models import AlertRule

_PART = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_HELP = "e.g. 45s, 15m, 2h, 1h30m or 1d"
# Executions may run a year; a longer rule could never fire.
MAX_DURATION = 365 * 86400
# Failures are counted over at most a week (the failures index's window).
MAX_WINDOW = 7 * 86400
MAX_MUTE = dt.timedelta(days=30)


def parse_duration(text: str) -> int:
    """Seconds of "2h", "1h30m", "90 s", "1d"; ValueError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or len(compact) > 32:
        raise ValueError(text)
    seconds = 0
    position = 0
    for match in _PART.finditer(compact):
        if match.start() != position:
            raise ValueError(text)
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(compact):
        raise ValueError(text)
    return seconds


def write_duration(seconds: int | None) -> str:
    """The shortest text parse_duration reads back as `seconds`."""
    if not seconds:
        return ""
    out = []
    for unit, size in _UNITS.items():
        value, seconds = divmod(seconds, size)
        if value:
            out.append(f"{value}{unit}")
    return "".join(out)


class DurationField(forms.CharField):
    def __init__(self, *, least: int, most: int, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("help_text", DURATION_HELP)
        super().__init__(**kwargs)
        self.least, self.most = least, most

    def clean(self, value: Any) -> int | None:
        text = super().clean(value)
        if not text:
            return None
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise forms.ValidationError(
                f"{text[:40]!r} is not a duration: write one such as 45s, 15m, 2h, 1h30m or 1d."
            ) from None
        if not self.least <= seconds <= self.most:
            raise forms.ValidationError(
                f"Between {human_seconds(self.least)} and {human_seconds(self.most)}, please."
            )
        return seconds


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="how the page and the posts name it")
    kind = forms.ChoiceField(choices=AlertRule.Kind.choices, label="When")
    state_machine = forms.CharField(
        max_length=2048,
        required=False,
        label="State machine",
        help_text="its name or ARN; empty: any (not for “No start”)",
    )
    duration = DurationField(
        least=10, most=MAX_DURATION, label="Longer than / for", help_text=DURATION_HELP
    )
    threshold = forms.IntegerField(
        min_value=1, max_value=1_000_000, required=False, label="Failures (N)"
    )
    window = DurationField(least=60, most=MAX_WINDOW, label="Within (M)")
    error = forms.CharField(
        max_length=256, required=False, label="Error", help_text="exact; empty: any error"
    )
    percent = forms.FloatField(
        min_value=1,
        max_value=100,
        required=False,
        label="Share of the tolerance (%)",
        help_text="fires when failures reach this share of what the Map Run tolerates",
    )

    # Which fields each kind needs (the others are ignored and cleared).
    NEEDS = {
        AlertRule.Kind.LONG_RUNNING: ("duration",),
        AlertRule.Kind.FAILURES: ("threshold", "window"),
        AlertRule.Kind.MAP_RUN_TOLERANCE: ("percent",),
        AlertRule.Kind.NO_START: ("state_machine", "duration"),
    }
    USES = {
        AlertRule.Kind.LONG_RUNNING: ("duration",),
        AlertRule.Kind.FAILURES: ("threshold", "window", "error"),
        AlertRule.Kind.MAP_RUN_TOLERANCE: ("percent",),
        AlertRule.Kind.NO_START: ("duration",),
    }

    @classmethod
    def for_rule(cls, rule: AlertRule) -> RuleForm:
        return cls(
            initial={
                "name": rule.name,
                "kind": rule.kind,
                "state_machine": rule.state_machine_arn,
                "duration": write_duration(rule.duration_seconds),
                "threshold": rule.threshold,
                "window": write_duration(rule.window_seconds),
                "error": rule.error,
                "percent": rule.percent,
            }
        )

    def clean_state_machine(self) -> StateMachine | None:
        text: str = self.cleaned_data["state_machine"].strip()
        if not text:
            return None
        field = "arn" if text.startswith("arn:") else "name"
        found = list(StateMachine.objects.filter(**{field: text}).only("arn", "name")[:2])
        if not found:
            what = "with the ARN" if field == "arn" else "named"
            raise forms.ValidationError(
                f"No state machine {what} {text[:100]!r} in the cache (see State machines)."
            )
        if len(found) > 1:
            raise forms.ValidationError(
                f"Several state machines are named {text[:100]!r} (in other accounts or "
                "regions): paste the ARN of the one you mean."
            )
        return found[0]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if not kind:
            return data
        kind = AlertRule.Kind(kind)
        for name in self.NEEDS[kind]:
            if name not in self.errors and data.get(name) in (None, ""):
                self.add_error(name, f"“{AlertRule.Kind(kind).label}” needs this.")
        return data

    def apply(self, rule: AlertRule) -> list[str]:
        """Set the rule from the form; the changes in words, for the audit."""
        data = self.cleaned_data
        kind = AlertRule.Kind(data["kind"])
        uses = self.USES[kind]
        machine: StateMachine | None = data["state_machine"]
        before = rule.condition if rule.pk else ""
        old_name = rule.name
        rule.name = data["name"].strip()
        rule.kind = kind
        rule.state_machine_arn = machine.arn if machine else ""
        rule.state_machine_name = machine.name if machine else ""
        rule.duration_seconds = data["duration"] if "duration" in uses else None
        rule.threshold = data["threshold"] if "threshold" in uses else None
        rule.window_seconds = data["window"] if "window" in uses else None
        rule.error = data["error"].strip() if "error" in uses else ""
        rule.percent = data["percent"] if "percent" in uses else None
        changes = []
        if rule.pk and old_name != rule.name:
            changes.append(f"name {old_name!r} → {rule.name!r}")
        if rule.pk and before != rule.condition:
            changes.append(f"{before} → {rule.condition}")
        return changes


class MuteForm(forms.Form):
    """Mute for a while (`for`) or until a time (`until`, in the page's
    zone), or `unmute`."""

    FOR = [("30m", "30 min"), ("1h", "1 h"), ("4h", "4 h"), ("1d", "1 day")]

    action = forms.ChoiceField(choices=[("mute", "mute"), ("unmute", "unmute")])
    for_ = forms.ChoiceField(choices=FOR, required=False, label="For")
    until = IsoDateTimeField(required=False, label="Until")

    def __init__(self, data: Any = None, **kwargs: Any) -> None:
        if data is not None and "for" in data:
            data = data.copy()
            data["for_"] = data.get("for")
        super().__init__(data, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") != "mute" or self.errors:
            return data
        now = timezone.now()
        until: dt.datetime | None = data.get("until")
        if until is None and data.get("for_"):
            until = now + dt.timedelta(seconds=parse_duration(data["for_"]))
        if until is None:
            raise forms.ValidationError("Say how long to mute: pick a duration or a time.")
        if until <= now:
            raise forms.ValidationError("That time has passed: a mute must end in the future.")
        if until > now + MAX_MUTE:
            raise forms.ValidationError(
                "At most 30 days: a rule nobody wants for longer is better deleted."
            )
        data["until"] = until
        return data


class AuditForm(forms.Form):
    rule = forms.IntegerField(min_value=1, required=False)
    # Keyset: the rows older than this id.
    before = forms.IntegerField(min_value=1, required=False)
