"""Query strings, validated: a bad value is answered with a 400 that names the
parameter and says why, never with a 500."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from executions import aws
from executions.arns import NotAnArn, parse_state_machine_arn
from executions.models import ExecutionStatus
from executions.reads import places, search
from executions.reads.queries import DEFAULT_PER_PAGE, MAX_PER_PAGE, Cursor, Filters
from executions.reads.versions import parse_alias_arn, parse_version_arn

STATUSES = tuple(ExecutionStatus.values)
# Long enough for an execution ARN inside an AWS console URL; a name is at
# most 80 characters, so nothing longer can match anyway.
MAX_QUERY = 4096
# Timestamps pasted from logs often carry nanoseconds; Python keeps microseconds.
_FRACTION = re.compile(r"([.,]\d{6})\d+")


def _shown(value: object) -> str:
    """A bad value, quoted and cut short for the error message."""
    text = str(value)
    return repr(text[:60] + "…") if len(text) > 60 else repr(text)


class StatusesField(forms.MultipleChoiceField):
    """`status` repeated (?status=FAILED&status=TIMED_OUT), or comma-separated,
    in any case."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=ExecutionStatus.choices, required=False, **kwargs)

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        out: list[str] = []
        for item in value:
            for part in str(item).split(","):
                part = part.strip().upper()
                if part and part not in out:
                    out.append(part)
        return out

    def validate(self, value: Any) -> None:
        for item in value:
            if item not in STATUSES:
                raise ValidationError(
                    f"{_shown(item)} is not an execution status; use one of {', '.join(STATUSES)}",
                    code="invalid_choice",
                )


class _RepeatedField(forms.Field):
    """A parameter that may be repeated (?account=A&account=B) or
    comma-separated, as `status` is."""

    # Reads every value of the parameter, not the last one only.
    widget = forms.MultipleHiddenInput
    # At most this many values: an IN list, not a way to send megabytes.
    MAX_VALUES = 50
    what = ""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def normalize(self, part: str) -> str:
        return part

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        out: list[str] = []
        for item in value:
            for part in str(item).split(","):
                part = self.normalize(part.strip())
                if part and part not in out:
                    out.append(part)
        if len(out) > self.MAX_VALUES:
            raise ValidationError(f"at most {self.MAX_VALUES} {self.what}s", code="max_values")
        return out

    def check(self, item: str) -> None:
        raise NotImplementedError

    def validate(self, value: Any) -> None:
        for item in value:
            self.check(item)


class AccountsField(_RepeatedField):
    """`account`: AWS account ids (12 digits), as the state machines' ARNs carry them."""

    what = "account"

    def check(self, item: str) -> None:
        if not places.ACCOUNT.fullmatch(item):
            raise ValidationError(
                f"{_shown(item)} is not an AWS account id (12 digits, e.g. 123456789012)",
                code="invalid",
            )


class RegionsField(_RepeatedField):
    """`region`: AWS region names, in any case."""

    what = "region"

    def normalize(self, part: str) -> str:
        return part.lower()

    def check(self, item: str) -> None:
        if not places.REGION.fullmatch(item):
            raise ValidationError(
                f"{_shown(item)} is not an AWS region name (e.g. us-east-1)", code="invalid"
            )
        if item not in aws.known_regions():
            raise ValidationError(f"AWS has no region {_shown(item)}", code="invalid")


_NOT_ISO = (
    "%(value)s is not an ISO 8601 time; use e.g. 2024-05-01T14:30:00Z, "
    "2024-05-01T14:30 (in the page's zone) or 2024-05-01"
)


class IsoDateTimeField(forms.Field):
    """ISO 8601, with or without a zone, in UTC. A time without a zone is in
    the page's zone (?tz=), so that what a person types means what the page
    shows. A time the database could not store once turned into UTC
    (9999-12-31T23:00-04:00) is refused, a 400 and never a 500.

    The executions list and the API name the bad value and show how to write
    one; a form may word its own: `error_messages` `invalid` (not a time) and
    `out_of_range` (beyond the years 1 to 9999 in UTC); `%(value)s` is the
    value, quoted and cut short."""

    default_error_messages = {"invalid": _NOT_ISO, "out_of_range": _NOT_ISO}

    def to_python(self, value: Any) -> dt.datetime | None:
        if value in self.empty_values:
            return None
        text = str(value).strip()
        if len(text) > 64:
            raise self._problem("invalid", text)
        try:
            parsed = dt.datetime.fromisoformat(_FRACTION.sub(r"\1", text))
        except (ValueError, OverflowError):
            raise self._problem("invalid", text) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.get_current_timezone())
        try:
            return parsed.astimezone(dt.UTC)
        except (ValueError, OverflowError):
            raise self._problem("out_of_range", text) from None

    def _problem(self, code: str, text: str) -> ValidationError:
        return ValidationError(self.error_messages[code], code=code, params={"value": _shown(text)})


class ExecutionFilterForm(forms.Form):
    """The executions list's filters, shared by the page and the JSON API."""

    status = StatusesField()
    state_machine = forms.CharField(required=False, max_length=2048)
    version = forms.CharField(required=False, max_length=2048)
    alias = forms.CharField(required=False, max_length=2048)
    account = AccountsField()
    region = RegionsField()
    q = forms.CharField(required=False, max_length=MAX_QUERY)
    started_after = IsoDateTimeField(required=False)
    started_before = IsoDateTimeField(required=False)
    # AWS's redriveFilter values.
    redriven = forms.ChoiceField(
        required=False,
        choices=[("", "either"), ("REDRIVEN", "redriven"), ("NOT_REDRIVEN", "not redriven")],
        error_messages={"invalid_choice": "must be REDRIVEN or NOT_REDRIVEN"},
    )
    # Exact, as the failures page links to its groups; present but empty
    # means "none" (no error, failing state unknown).
    failed_error = forms.CharField(required=False, max_length=256, strip=False)
    failed_state = forms.CharField(required=False, max_length=80, strip=False)
    stopped_after = IsoDateTimeField(required=False)
    stopped_before = IsoDateTimeField(required=False)
    cursor = forms.CharField(required=False, max_length=200)
    per_page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PER_PAGE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["state_machine"].error_messages["max_length"] = (
            "too long for a state machine ARN"
        )
        self.fields["q"].error_messages["max_length"] = (
            f"longer than {MAX_QUERY} characters: not a name, a search, an ARN or a console URL"
        )
        self.fields["cursor"].error_messages["max_length"] = "not a page cursor of this list"
        self.fields["failed_error"].error_messages["max_length"] = (
            "longer than 256 characters: AWS allows no longer error"
        )
        self.fields["failed_state"].error_messages["max_length"] = (
            "longer than 80 characters: AWS allows no longer state name"
        )
        self.fields["per_page"].error_messages.update(
            {
                "invalid": "not a whole number",
                "min_value": "must be at least 1",
                "max_value": f"at most {MAX_PER_PAGE} executions per page",
            }
        )

    def clean_state_machine(self) -> str:
        arn: str = self.cleaned_data["state_machine"].strip()
        if arn:
            try:
                parse_state_machine_arn(arn)
            except NotAnArn:
                raise ValidationError(
                    f"{_shown(arn)} is not a state machine ARN (it should look like "
                    "arn:aws:states:us-east-1:123456789012:stateMachine:Name)",
                    code="invalid",
                ) from None
        return arn

    def clean_version(self) -> str:
        arn: str = self.cleaned_data["version"].strip()
        if arn:
            try:
                parse_version_arn(arn)
            except NotAnArn:
                raise ValidationError(
                    f"{_shown(arn)} is not a state machine version ARN (it should look like "
                    "arn:aws:states:us-east-1:123456789012:stateMachine:Name:3)",
                    code="invalid",
                ) from None
        return arn

    def clean_alias(self) -> str:
        arn: str = self.cleaned_data["alias"].strip()
        if arn:
            try:
                parse_alias_arn(arn)
            except NotAnArn:
                raise ValidationError(
                    f"{_shown(arn)} is not a state machine alias ARN (it should look like "
                    "arn:aws:states:us-east-1:123456789012:stateMachine:Name:live)",
                    code="invalid",
                ) from None
        return arn

    def clean_q(self) -> str:
        q: str = self.cleaned_data["q"]
        if q:
            try:
                search.parse(q)
            except search.SearchSyntaxError as e:
                raise ValidationError(str(e), code="invalid") from None
        return q

    def clean_cursor(self) -> Cursor | None:
        token: str = self.cleaned_data["cursor"].strip()
        if not token:
            return None
        try:
            return Cursor.decode(token)
        except ValueError:
            raise ValidationError(
                "not a page cursor of this list (it may be cut short); "
                "start again from the newest page",
                code="invalid",
            ) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        after, before = data.get("started_after"), data.get("started_before")
        if after is not None and before is not None and after >= before:
            self.add_error("started_before", "must be later than started_after")
        after, before = data.get("stopped_after"), data.get("stopped_before")
        if after is not None and before is not None and after >= before:
            self.add_error("stopped_before", "must be later than stopped_after")
        return data

    def problems(self) -> list[tuple[str, str]]:
        """(parameter, why) for each bad value, in the order of the fields."""
        return [
            (name, "; ".join(str(m) for m in self.errors[name]))
            for name in self.fields
            if name in self.errors
        ]

    def problem_message(self) -> str:
        return "; ".join(f"bad value for {name}: {why}" for name, why in self.problems())

    def filters(self) -> Filters:
        data = self.cleaned_data
        statuses = tuple(s for s in STATUSES if s in data["status"])
        return Filters(
            # All six is no status filter at all (and uses the plain index).
            statuses=() if len(statuses) == len(STATUSES) else statuses,
            state_machine_arn=data["state_machine"],
            version_arn=data["version"],
            alias_arn=data["alias"],
            accounts=tuple(sorted(data["account"])),
            regions=tuple(sorted(data["region"])),
            q=data["q"],
            started_after=data["started_after"],
            started_before=data["started_before"],
            redriven={"REDRIVEN": True, "NOT_REDRIVEN": False}.get(data.get("redriven") or ""),
            error=data["failed_error"] if "failed_error" in self.data else None,
            failed_state=data["failed_state"] if "failed_state" in self.data else None,
            stopped_after=data["stopped_after"],
            stopped_before=data["stopped_before"],
        )

    @property
    def page_size(self) -> int:
        return self.cleaned_data.get("per_page") or DEFAULT_PER_PAGE
