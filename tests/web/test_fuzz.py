"""Fuzzing every URL pattern: hypothesis builds paths, query strings, form
bodies, methods and headers for each pattern the URL resolver knows (so a new
page is covered the day it is added), as an anonymous visitor, a viewer, an
operator and, for the admin, a superuser.

No answer may be a 5xx; every 4xx says what is wrong (never an empty body);
no answer carries a stack trace or the secret key. AWS is a closed port
(unknown ARNs: 503) or the fake endpoint (unknown ARNs: 404).

SFNUI_FUZZ_EXAMPLES scales the number of examples per pattern and role
(default 8; the admin gets a third of it, at least 3).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client
from django.urls.resolvers import RegexPattern, RoutePattern
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from executions.models import StopRequest
from executions.web.converters import ExecutionArnConverter, StateMachineArnConverter
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.urlmap import TOKEN, Endpoint, endpoints

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("SFNUI_FUZZ_EXAMPLES", "8"))
# .ci/run sets SFNUI_CI; hosted CI services set CI.
_CI = bool(os.environ.get("SFNUI_CI") or os.environ.get("CI"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The database and the signed-in users are set up once per test; every
    # example starts from a fresh client.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    # CI replays the same examples every run (a landing must not depend on
    # luck); a developer's run explores new ones, and replays its failures.
    derandomize=_CI,
    database=None
    if _CI
    else DirectoryBasedExampleDatabase(str(django_settings.VAR_DIR / "hypothesis")),
    print_blob=True,
)

# --- The URL map ----------------------------------------------------------------------

ENDPOINTS = endpoints()
APP = [e for e in ENDPOINTS if not e.admin]
ADMIN = [e for e in ENDPOINTS if e.admin]


def test_the_url_map_is_enumerated() -> None:
    """The fuzzing below covers what the resolver knows, including the pages
    that take an ARN; if this breaks, the enumeration missed patterns."""
    names = {e.name for e in ENDPOINTS}
    assert {"execution_list", "execution_detail", "execution_stop", "healthz", "login"} <= names
    assert "api_execution_detail" in names
    assert len(ADMIN) > 10


# --- Values -------------------------------------------------------------------------------

ODD = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%00",
    "%2F",
    "%252F",
    "/",
    "//",
    "..",
    "../..",
    "%",
    "%zz",
    "%C3%28",
    "\\",
    "'",
    '"',
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "\r\nSet-Cookie: pwned=1",
    "é",
    "日本語",
    "😀",
    "\u202e",
    "\ufeff",
    "\u0000\u0001\u001f\u007f",
    "x" * 300,
    "x" * 5000,
    "-1",
    "0",
    "-0",
    "9" * 40,
    "-" + "9" * 40,
    "1e999",
    "NaN",
    "inf",
    "null",
    "true",
    "[]",
    "{}",
    "arn:",
    ":::::::",
]
STATUS_VALUES = [
    "RUNNING",
    "running",
    "SUCCEEDED,FAILED",
    "FAILED, TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
    "DONE",
    "RUNNING,",
    ",,,",
    "SUCCEEDED" * 100,
]
DATES = [
    "2024-05-01",
    "2024-05-01T14:30:00Z",
    "2024-05-01T14:30:00.123456789+02:00",
    "2024-02-30",
    "2024-13-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:00-04:00",
    "1970-01-01T00:00:00Z",
    "yesterday",
    "2024-05-01T25:00",
    "+275760-09-13",
    "2024-05-01T14:30:00+99:00",
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Etc/GMT+14",
    "Mars/Olympus_Mons",
    "../../../etc/passwd",
    "/etc/localtime",
    "UTC\x00",
    "Europe/" + "B" * 300,
    "utc",
    "",
    " Europe/Berlin ",
]
PLACES = [
    "123456789012",
    "210987654321",
    "123456789012,210987654321",
    "12345678901",
    "1234567890123",
    "١٢٣٤٥٦٧٨٩٠١٢",  # digits, but not ASCII ones
    "us-east-1",
    "EU-WEST-1",
    "us-east-1,eu-west-1",
    "xx-nowhere-9",
    "us-east-1,",
    ",".join(["us-east-1"] * 60),
]
NUMBERS = ["-1", "0", "1", "2", "500", "2147483648", str(2**63), str(2**64), "1.5", "0x10", "1_000"]
CURSORS = [
    "n0.0",
    "p0.0",
    "n-1.-1",
    "n999999999999999999.9999999999999999999",
    "x1.1",
    "n1",
    "Zm9v",
]
KEYS = [
    "status",
    "state_machine",
    "account",
    "region",
    "q",
    "started_after",
    "started_before",
    "cursor",
    "per_page",
    "tz",
    "type",
    "failures",
    "page",
    "event",
    "detail",
    "raw",
    "whole",
    "user",
    "outcome",
    "execution",
    "requested_after",
    "requested_before",
    "batch",
    "format",
    "next",
    "error",
    "cause",
    "request_token",
    "username",
    "password",
    # the admin's
    "o",
    "p",
    "e",
    "all",
    "_popup",
    "_to_field",
    "_changelist_filters",
]
# The stop form's limits either side, and AWS's 256 KiB payloads (bodies only:
# no server takes a URL that long).
QUERY_SIZES = [0, 1, 255, 256, 257, 4096, 4097, 8000]
BODY_SIZES = [0, 1, 255, 256, 257, 32_767, 32_768, 32_769, 262_144]

# Surrogates cannot be encoded.
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
text = st.text(
    alphabet=st.characters(exclude_categories=SURROGATES),
    max_size=60,
)


def long_text(sizes: list[int]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda c, n: c * n, st.sampled_from(["x", "é", "<", "\x00", "😀"]), st.sampled_from(sizes)
    )


uuids = st.one_of(st.uuids().map(str), st.sampled_from(["not-a-uuid", "", "0" * 32, "{}"]))

_names = st.one_of(
    st.sampled_from(["etl-1", "run-1", "x", "A" * 80, "A" * 81, "a b", "a:b", "a/b", "ü", "😀"]),
    st.sampled_from(ODD),
    st.from_regex(r"[A-Za-z0-9_.-]{1,80}", fullmatch=True),
    text,
)
_partitions = st.sampled_from(["aws", "aws-cn", "aws-us-gov", "awz", ""])
_regions = st.sampled_from(
    ["us-east-1", "eu-west-1", "cn-north-1", "xx-nowhere-9", "US-EAST-1", ""]
)
_accounts = st.one_of(
    st.sampled_from(["123456789012", "12345", ""]), st.from_regex(r"\d{12}", fullmatch=True)
)


def execution_arns(known: list[str]) -> st.SearchStrategy[str]:
    shaped = st.builds(
        lambda p, r, a, k, sm, n: f"arn:{p}:states:{r}:{a}:{k}:{sm}:{n}",
        _partitions,
        _regions,
        _accounts,
        st.sampled_from(["execution", "execution", "express", "stateMachine", "activity"]),
        _names,
        _names,
    )
    child = st.builds(
        lambda sm, label, n: f"arn:aws:states:us-east-1:123456789012:execution:{sm}/{label}:{n}",
        _names,
        _names,
        _names,
    )
    return st.one_of(
        st.sampled_from(known),
        shaped,
        child,
        st.builds(lambda a, tail: a + tail, st.sampled_from(known), st.sampled_from(ODD)),
        st.just("arn:aws:states:us-east-1:123456789012:execution:sm:" + "n" * 10_000),
        st.sampled_from(ODD),
        text,
    )


def state_machine_arns(known: list[str]) -> st.SearchStrategy[str]:
    shaped = st.builds(
        lambda p, r, a, k, n: f"arn:{p}:states:{r}:{a}:{k}:{n}",
        _partitions,
        _regions,
        _accounts,
        st.sampled_from(["stateMachine", "stateMachine", "execution"]),
        _names,
    )
    return st.one_of(
        st.sampled_from(known),
        shaped,
        st.builds(lambda a: a + ":v1", st.sampled_from(known)),
        st.sampled_from(ODD),
        text,
    )


def values(known: dict[str, list[str]], *, sizes: list[int]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ODD),
        st.sampled_from(STATUS_VALUES),
        st.sampled_from(DATES),
        st.sampled_from(ZONES),
        st.sampled_from(NUMBERS),
        st.sampled_from(PLACES),
        st.sampled_from(CURSORS),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        text,
        long_text(sizes),
        uuids,
        execution_arns(known["executions"]),
        state_machine_arns(known["state_machines"]),
        st.sampled_from(["input", "output", "both", "json", "TaskFailed", "ExecutionFailed"]),
    )


def pairs(
    known: dict[str, list[str]], *, sizes: list[int]
) -> st.SearchStrategy[list[tuple[str, str]]]:
    key = st.one_of(st.sampled_from(KEYS), text)
    # Repeated keys come naturally: a list of pairs, not a dict.
    return st.lists(st.tuples(key, values(known, sizes=sizes)), max_size=6)


# --- Paths --------------------------------------------------------------------------------


def _encode(value: str, how: str) -> str:
    if how == "as-aws-prints-it":  # colons and slashes raw, as the app's own links
        return quote(value, safe=":/")
    if how == "all-encoded":  # "/" as %2F: the server decodes it to "/"
        return quote(value, safe="")
    return quote(value, safe=":/%")  # a literal "%2F" reaches the server as is


def _segment(pattern: Any, known: dict[str, list[str]]) -> st.SearchStrategy[str]:
    if isinstance(pattern, RoutePattern):
        route = str(pattern)
        parts: list[st.SearchStrategy[str]] = []
        pos = 0
        for match in TOKEN.finditer(route):
            parts.append(st.just(route[pos : match.start()]))
            converter = pattern.converters[match["parameter"]]
            if isinstance(converter, ExecutionArnConverter):
                raw = execution_arns(known["executions"])
            elif isinstance(converter, StateMachineArnConverter):
                raw = state_machine_arns(known["state_machines"])
            else:
                raw = st.one_of(
                    st.from_regex(converter.regex, fullmatch=True),
                    st.sampled_from(known["pks"]),
                    st.sampled_from(ODD),
                )
            parts.append(
                st.builds(
                    _encode,
                    raw,
                    st.sampled_from(["as-aws-prints-it", "all-encoded", "percent-kept"]),
                )
            )
            pos = match.end()
        parts.append(st.just(route[pos:]))
        return st.tuples(*parts).map("".join)
    assert isinstance(pattern, RegexPattern)
    regex = str(pattern.regex.pattern).removeprefix("^").removesuffix("$").removesuffix(r"\Z")
    return st.from_regex(regex, fullmatch=True).map(lambda s: quote(s, safe="/:"))


def paths(endpoint: Endpoint, known: dict[str, list[str]]) -> st.SearchStrategy[str]:
    return st.tuples(*(_segment(p, known) for p in endpoint.patterns)).map(
        lambda parts: "/" + "".join(parts)
    )


# --- Requests -----------------------------------------------------------------------------

METHODS = ["GET", "GET", "GET", "HEAD", "POST", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
RAW_QUERIES = ["", "", "", "&%zz=%C3%28", "&status", "&=x", "&&&", "&tz=%00", "&q=%F0%9F%98%80"]


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


HEADERS = [
    {},
    {},
    {"HX-Request": "true"},
    {"HX-Request": "true", "HX-Target": "timeline"},
    {"Accept": "application/json"},
    {"Authorization": "Basic !!!"},
    {"Authorization": _basic("viewer:viewer-pass-123")},
    {"Authorization": _basic("viewer:wrong")},
    {"Authorization": "Bearer x"},
]


# A form labelled with another charset than UTF-8 is one Django refuses (400).
CHARSETS = ["", "", "", "; charset=utf-8", "; charset=utf-16", "; charset=latin-1", "; charset=x"]


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    raw_query: str
    body: list[tuple[str, str]]
    headers: dict[str, str]
    charset: str = ""

    def send(self, client: Client) -> Any:
        query = urlencode(self.query) + self.raw_query
        url = f"{self.path}?{query.lstrip('&')}" if query else self.path
        body = urlencode(self.body) if self.method not in ("GET", "HEAD") else ""
        return client.generic(
            self.method,
            url,
            data=body,
            content_type="application/x-www-form-urlencoded" + self.charset,
            headers=self.headers,
        )


def requests_for(endpoint: Endpoint, known: dict[str, list[str]]) -> st.SearchStrategy[Request]:
    return st.builds(
        Request,
        method=st.sampled_from(METHODS),
        path=paths(endpoint, known),
        query=pairs(known, sizes=QUERY_SIZES),
        raw_query=st.sampled_from(RAW_QUERIES),
        body=pairs(known, sizes=BODY_SIZES),
        headers=st.sampled_from(HEADERS),
        charset=st.sampled_from(CHARSETS),
    )


# --- What every answer must be --------------------------------------------------------------

_TAGS = re.compile(r"<[^>]*>")


def _body(response: Any) -> bytes:
    if response.streaming:
        # Consumed here, so an error halfway through an export fails the test.
        return b"".join(response.streaming_content)
    return bytes(response.content)


def check(request: Request, response: Any) -> None:
    what = f"{request.method} {request.path[:300]!r}"
    body = _body(response)
    text = body.decode("utf-8", "replace")
    if response.status_code == 503 and request.method != "HEAD":
        # The one 5xx allowed: an ARN the cache lacks, and AWS (a closed
        # port here) cannot be asked. It must say so. And /healthz saying
        # "not ready": on SQLite, the example's own transaction holds the
        # write lock its database check needs.
        not_ready = request.path == "/healthz" and json.loads(body)["status"] == "fail"
        assert "AWS is unreachable" in text or "AWS is throttling" in text or not_ready, what
    else:
        assert response.status_code < 500 or response.status_code == 503, (
            f"{what}: {response.status_code}"
        )
    assert "Traceback (most recent call last)" not in text, what
    assert django_settings.SECRET_KEY not in text, what
    if response.status_code < 400 or request.method == "HEAD":
        return
    content_type = response.get("Content-Type", "")
    if content_type.startswith("application/json"):
        payload = json.loads(body)
        assert payload.get("message") or payload.get("error"), f"{what}: {payload}"
        return
    words = html.unescape(_TAGS.sub(" ", text.split("<main>", 1)[-1])).split()
    assert len(words) >= 3, f"{what}: {response.status_code} without a message: {text[:300]!r}"


# --- The data the pages show ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    # Users are made per test; the hashing they are made with is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # One attempt at the closed port: no retry back-off for each unknown ARN.
    settings.SFNUI_AWS_MAX_ATTEMPTS = 1


@pytest.fixture(autouse=True)
def _quick_healthz(monkeypatch: pytest.MonkeyPatch) -> None:
    # /healthz checks the shared cache from a thread of its own, which waits
    # for the test's open transaction on SQLite until the check's deadline.
    monkeypatch.setattr("executions.probes.CHECK_TIMEOUT", 0.3)


@pytest.fixture
def known(django_user_model: Any) -> dict[str, list[str]]:
    sm = state_machine_row("order-pipeline")
    other = state_machine_row("nightly-etl")
    running = execution_row(sm, name="etl-1", status="RUNNING")
    failed = execution_row(
        other, name="run-1", status="FAILED", error="Order.Invalid", cause="no items", output=None
    )
    done = execution_row(sm, name="run-2", status="SUCCEEDED")
    child = execution_row(sm, name="child-1", status="SUCCEEDED")
    child.arn = child.arn.replace(":order-pipeline:child-1", ":order-pipeline/label:child-1")
    child.save(update_fields=["arn"])
    for ex in (running, failed, done):
        events(
            ex,
            [
                ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
                ("PassStateEntered", "stateEnteredEventDetails", {"name": "A", "input": "{}"}),
                ("TaskFailed", "taskFailedEventDetails", {"error": "E", "cause": "c"}),
            ],
        )
    StopRequest.objects.create(
        execution=running, username="oncall", outcome="FAILED", aws_response="AWS unreachable"
    )
    superuser = django_user_model.objects.create_superuser("root", password="root-pass-123")
    return {
        "executions": [running.arn, failed.arn, done.arn, child.arn],
        "state_machines": [sm.arn, other.arn],
        "pks": [str(running.pk), str(sm.pk), str(superuser.pk), "1"],
    }


@pytest.fixture
def people(django_user_model: Any) -> dict[str, Any]:
    viewer = django_user_model.objects.create_user("viewer", password="viewer-pass-123")
    operator = django_user_model.objects.create_user("oncall", password="oncall-pass-123")
    operator.user_permissions.add(Permission.objects.get(codename="stop_execution"))
    return {
        "anonymous": None,
        "viewer": viewer,
        "operator": operator,
        "superuser": django_user_model.objects.get(username="root"),
    }


def _client(who: Any) -> Client:
    client = Client(raise_request_exception=True)
    if who is not None:
        client.force_login(who)
    return client


def _send(request: Request, who: Any) -> Any:
    """One example, rolled back after it: what it changed (a user the admin
    deleted, the superuser included; a stop recorded) is not the next
    example's world."""
    with transaction.atomic():
        response = request.send(_client(who))
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize("role", ["anonymous", "viewer", "operator"])
@pytest.mark.parametrize("endpoint", APP, ids=str)
def test_no_request_to_a_page_is_a_server_error(
    endpoint: Endpoint, role: str, known: dict[str, list[str]], people: dict[str, Any]
) -> None:
    # AWS is a closed port here: an ARN the cache lacks is a 503 (or a 404
    # when it is not an ARN at all), never a 500.
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        request = data.draw(requests_for(endpoint, known), label="request")
        check(request, _send(request, people[role]))

    run()


@pytest.mark.parametrize("endpoint", ADMIN, ids=str)
def test_no_request_to_the_admin_is_a_server_error(
    endpoint: Endpoint, known: dict[str, list[str]], people: dict[str, Any]
) -> None:
    """As a superuser, who gets past the admin's own checks (signed out, the
    admin is a redirect: tests/web/test_access.py, and the free paths below)."""
    role = "superuser"

    @settings(FUZZ, max_examples=max(3, EXAMPLES // 3))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        request = data.draw(requests_for(endpoint, known), label="request")
        check(request, _send(request, people[role]))

    run()


@pytest.mark.parametrize("role", ["anonymous", "operator"])
def test_no_path_at_all_is_a_server_error(
    role: str, known: dict[str, list[str]], people: dict[str, Any]
) -> None:
    """Paths the URL map does not describe: stray segments, dot segments,
    encoded slashes and NULs under every prefix."""
    segment = st.one_of(
        st.sampled_from(["executions", "history", "history.txt", "stop", "api", "state-machines"]),
        st.sampled_from(ODD),
        execution_arns(known["executions"]),
        text,
    )
    path = st.builds(
        lambda prefix, parts, slash, how: (
            prefix + "/".join(_encode(p, how) for p in parts) + ("/" if slash else "")
        ),
        st.sampled_from(["/", "/executions/", "/api/executions/", "/state-machines/", "/admin/"]),
        st.lists(segment, max_size=4),
        st.booleans(),
        st.sampled_from(["as-aws-prints-it", "all-encoded", "percent-kept"]),
    )

    @settings(FUZZ, max_examples=EXAMPLES * 4)
    @given(path, st.sampled_from(["GET", "HEAD", "POST"]), st.sampled_from(HEADERS))
    def run(path: str, method: str, headers: dict[str, str]) -> None:
        request = Request(method, path, [], "", [], headers)
        check(request, _send(request, people[role]))

    run()


@pytest.mark.parametrize(
    "endpoint",
    [e for e in APP if "<arn:" in e.route or "<sm_arn:" in e.route],
    ids=str,
)
def test_arns_aws_does_not_know_are_a_404_not_a_500(
    endpoint: Endpoint, known: dict[str, list[str]], people: dict[str, Any], fake_aws: Any
) -> None:
    """With the fake endpoint answering: ExecutionDoesNotExist / InvalidArn
    from AWS become a 404 page that says so."""

    @settings(FUZZ, max_examples=max(4, EXAMPLES // 2))
    @given(paths(endpoint, known))
    def run(path: str) -> None:
        request = Request("GET", path, [], "", [], {})
        response = _send(request, people["operator"])
        check(request, response)
        if ":us-east-1:" in path:  # the fake answers there: found or not, never "unreachable"
            assert response.status_code != 503, path

    run()
