"""The failures page's query: a named window (`window=1h`) or a range
(`since`, optionally `until`), checked so that a bad one is a 400 that says why."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from executions.reads import failures
from executions.web.forms import IsoDateTimeField

_WINDOWS = ", ".join(failures.WINDOWS)


class FailuresForm(forms.Form):
    window = forms.ChoiceField(
        required=False,
        choices=[(name, name) for name in failures.WINDOWS],
        error_messages={"invalid_choice": f"%(value)s is not a window; use one of {_WINDOWS}"},
    )
    since = IsoDateTimeField(required=False)
    until = IsoDateTimeField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if data.get("window") and (since or until):
            raise ValidationError("give a window or a range (since, until), not both")
        if until is not None and since is None and "since" not in self.errors:
            self.add_error("since", "a range needs its start (since) as well as its end")
        if since is not None and until is None and since >= timezone.now():
            self.add_error("since", "is in the future: nothing has failed there yet")
        if since is not None and until is not None and until <= since:
            self.add_error("until", "must be later than since")
        elif since is not None and (until or timezone.now()) - since > failures.MAX_RANGE:
            self.add_error(
                "until" if until else "since",
                f"a range spans at most {failures.MAX_RANGE.days} days",
            )
        return data

    def bounds(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, str]:
        """(start, end, the window's name or "" for a range)."""
        data = self.cleaned_data
        since, until = data.get("since"), data.get("until")
        if since is not None:
            return since, until or now, ""
        name = data.get("window") or failures.DEFAULT_WINDOW
        return now - failures.WINDOWS[name], now, name

    def problems(self) -> list[tuple[str, str]]:
        out = [
            (name, "; ".join(str(m) for m in self.errors[name]))
            for name in self.fields
            if name in self.errors
        ]
        out += [("window", str(m)) for m in self.non_field_errors()]
        return out
