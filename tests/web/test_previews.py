"""Link previews: Open Graph / Twitter-card tags on the execution, history and
list pages, and, with SFNUI_PUBLIC_PREVIEWS, a minimal page of those tags
for chat crawlers, which cannot sign in."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest
import time_machine
from django.utils import timezone

from executions.models import Execution, StateMachine, SyncRun
from executions.sync import flows
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, PAYMENT, wait_until_finished

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 26, 15, 42, 3, tzinfo=dt.UTC)
BASE = "https://sfnui.example.com"
# When failed() executions were last synced, and 12 s later.
SYNCED = T0 + dt.timedelta(hours=3)
LATER = SYNCED + dt.timedelta(seconds=12)
SECRET_INPUT = "card-number-4111111111111111"
SECRET_OUTPUT = "the-output-token-42"
SECRET_CAUSE = "stack trace with db-password=hunter2"


class Page(HTMLParser):
    """The tags of a page, as a crawler reads them."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        if tag == "meta":
            key = values.get("property") or values.get("name")
            if key:
                self.meta[key] = values.get("content", "")
        if tag == "a":
            self.links.append(values.get("href", ""))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def failed(**fields: Any) -> Execution:
    sm = fields.pop("state_machine", None) or state_machine_row("order-pipeline")
    ex = execution_row(
        sm,
        name=fields.pop("name", "order-20261126-1542-7f3a"),
        status="FAILED",
        started=T0,
        stop_date=T0 + dt.timedelta(hours=2, minutes=13),
        input=json.dumps({"cardholder_pan": SECRET_INPUT}),
        output=SECRET_OUTPUT,
        error=fields.pop("error", "Payment.Declined\nsecond line"),
        cause=SECRET_CAUSE,
        synced_at=SYNCED,
        **fields,
    )
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": ex.input}),
            (
                "TaskStateEntered",
                "stateEnteredEventDetails",
                {"name": "ChargeCard", "input": ex.input},
            ),
            ("TaskFailed", "taskFailedEventDetails", {"error": ex.error, "cause": SECRET_CAUSE}),
            ("ExecutionFailed", "executionFailedEventDetails", {"error": ex.error}),
        ],
    )
    return ex


def url(ex: Execution | str, suffix: str = "") -> str:
    arn = ex if isinstance(ex, str) else ex.arn
    return f"/executions/{arn}/{suffix}"


@pytest.fixture
def previews(settings: Any) -> Any:
    settings.SFNUI_PUBLIC_PREVIEWS = True
    settings.SFNUI_BASE_URL = BASE
    return settings


# --- Off (the default): nothing changes for people signed out ------------------------------


@pytest.mark.parametrize("suffix", ["", "history/", "history/?event=3", "?raw=input"])
def test_with_the_setting_off_signed_out_requests_go_to_the_login(
    client: Any, settings: Any, suffix: str
) -> None:
    assert settings.SFNUI_PUBLIC_PREVIEWS is False
    ex = failed()
    response = client.get(url(ex, suffix))
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote(url(ex, suffix))


def test_with_the_setting_off_the_list_goes_to_the_login(client: Any) -> None:
    response = client.get("/executions/?status=FAILED")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote("/executions/?status=FAILED")


def test_with_the_setting_off_a_signed_out_post_goes_to_the_login(client: Any) -> None:
    ex = failed()
    response = client.post(url(ex))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- On: the tags and nothing else ------------------------------------------------------------


def assert_nothing_but_tags(body: str, page: Page) -> None:
    for secret in (SECRET_INPUT, SECRET_OUTPUT, SECRET_CAUSE, "hunter2", "cardholder_pan"):
        assert secret not in body, secret
    assert page.links == [page.links[0]]
    assert page.links[0].startswith("/accounts/login/?next=")
    for tag in ("form", "input", "textarea", "script", "button", "iframe", "img"):
        assert tag not in page.tags, tag
    assert page.text[-1] == "Sign in to sfnui to see this page"


def test_a_crawler_gets_the_tags_of_a_failed_execution_and_nothing_else(
    client: Any, previews: Any
) -> None:
    ex = failed()
    with time_machine.travel(LATER, tick=False):
        response = client.get(url(ex))
    assert response.status_code == 200
    body = response.content.decode()
    page = Page(body)
    assert page.meta["og:title"] == "FAILED · order-pipeline · order-20261126-1542-7f3a · 2 h 13 m"
    assert page.meta["twitter:title"] == page.meta["og:title"]
    assert page.meta["og:description"] == (
        "Failed in ChargeCard: Payment.Declined · started 2026-11-26 15:42 UTC · synced 12 s ago"
    )
    assert page.meta["twitter:description"] == page.meta["og:description"]
    assert page.meta["twitter:card"] == "summary"
    assert page.meta["og:url"] == f"{BASE}/executions/{ex.arn}/"
    assert page.meta["robots"] == "noindex, nofollow"
    assert_nothing_but_tags(body, page)
    assert page.links == ["/accounts/login/?next=" + quote(url(ex), safe="")]
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "private" in response["Cache-Control"]
    assert "Cookie" in response["Vary"]


@pytest.mark.parametrize(
    "suffix", ["history/", "history/?failures=1", "?raw=input", "?whole=output"]
)
def test_the_history_page_and_any_query_give_the_same_preview(
    client: Any, previews: Any, suffix: str
) -> None:
    ex = failed()
    response = client.get(url(ex, suffix))
    assert response.status_code == 200
    body = response.content.decode()
    page = Page(body)
    assert page.meta["og:title"].startswith("FAILED · order-pipeline")
    assert page.meta["og:url"] == BASE + url(ex, suffix)
    assert_nothing_but_tags(body, page)


def test_a_running_execution_says_where_it_is(client: Any, previews: Any) -> None:
    ex = execution_row(
        name="nightly-1",
        status="RUNNING",
        started=T0,
        synced_at=T0 + dt.timedelta(minutes=29, seconds=57),
        input=json.dumps({"cardholder_pan": SECRET_INPUT}),
    )
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("WaitStateEntered", "stateEnteredEventDetails", {"name": "Sleep", "input": "{}"}),
        ],
        step=60,
    )
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        body = client.get(url(ex)).content.decode()
    page = Page(body)
    assert page.meta["og:title"] == "RUNNING · order-pipeline · nightly-1 · 30 m"
    assert page.meta["og:description"] == (
        "In Sleep (Wait) for 29 m · started 2026-11-26 15:42 UTC · synced 3 s ago"
    )
    assert_nothing_but_tags(body, page)


def test_signed_out_requests_never_look_up_an_unknown_arn_in_aws(
    client: Any, previews: Any, fake_aws: Any, make_state_machine: Callable[..., str], start: Any
) -> None:
    # AWS knows it, the cache does not: a crawler must not make us ask.
    arn = start(make_state_machine("nightly", LONG_WAIT), "never-opened")
    before = fake_aws.post("/fakeaws/calls", {})["calls"].get("DescribeExecution", 0)
    for suffix in ("", "history/"):
        response = client.get(url(arn, suffix))
        assert response.status_code == 404
        page = Page(response.content.decode())
        assert page.meta["og:title"] == "sfnui: sign in to see this page"
        assert "og:description" not in page.meta
        assert page.links == ["/accounts/login/?next=" + quote(url(arn, suffix), safe="")]
    assert fake_aws.post("/fakeaws/calls", {})["calls"].get("DescribeExecution", 0) == before
    assert not Execution.objects.filter(arn=arn).exists()
    assert not SyncRun.objects.filter(kind=SyncRun.Kind.LOOKUP).exists()


def test_a_malformed_arn_is_a_minimal_404(client: Any, previews: Any) -> None:
    response = client.get("/executions/arn:aws:states:nope/")
    assert response.status_code == 404
    assert Page(response.content.decode()).tags.count("a") == 1


def test_signed_out_posts_are_refused(client: Any, previews: Any) -> None:
    ex = failed()
    assert client.post(url(ex)).status_code == 405
    assert client.post("/executions/").status_code == 405


def test_the_list_preview_names_the_filter_and_counts_nothing(client: Any, previews: Any) -> None:
    payments = state_machine_row("payment-capture")
    for _ in range(3):
        execution_row(payments, status="FAILED", input=json.dumps({"cardholder_pan": SECRET_INPUT}))
    execution_row(payments, status="RUNNING")
    execution_row(payments, status="SUCCEEDED")
    execution_row(state_machine_row("other"), status="FAILED")
    synced = timezone.now()
    SyncRun.objects.create(
        kind="list",
        region="us-east-1",
        started_at=synced,
        finished_at=synced,
        api_calls={"ListExecutions": 1},
        ok=True,
    )
    query = f"?status=FAILED&status=RUNNING&state_machine={payments.arn}"
    with time_machine.travel(synced + dt.timedelta(seconds=20), tick=False):
        response = client.get("/executions/" + query)
    assert response.status_code == 200
    body = response.content.decode()
    page = Page(body)
    assert page.meta["og:title"] == "Executions · RUNNING, FAILED · payment-capture"
    # Counts told a script what matched (issue 10, item 7): signed out, none.
    assert page.meta["og:description"] == (
        "Executions filtered by this link: sign in to see them · synced 20 s ago"
    )
    assert page.meta["og:url"] == BASE + "/executions/" + query
    assert_nothing_but_tags(body, page)
    assert "payment-capture:run-" not in body  # no execution is listed


def test_a_bad_list_filter_is_a_minimal_400(client: Any, previews: Any) -> None:
    response = client.get("/executions/?status=NOPE")
    assert response.status_code == 400
    assert Page(response.content.decode()).tags.count("a") == 1


def test_without_a_base_url_og_url_is_the_address_of_the_request(
    client: Any, settings: Any
) -> None:
    settings.SFNUI_PUBLIC_PREVIEWS = True
    ex = failed()
    page = Page(client.get(url(ex), HTTP_HOST="localhost").content.decode())
    assert page.meta["og:url"] == f"http://localhost/executions/{ex.arn}/"


# --- Signed in: the page, with the same tags ---------------------------------------------


def test_signed_in_people_get_the_whole_page_with_the_tags(
    viewer_client: Any, previews: Any
) -> None:
    ex = failed()
    body = viewer_client.get(url(ex)).content.decode()
    page = Page(body)
    assert page.meta["og:title"] == "FAILED · order-pipeline · order-20261126-1542-7f3a · 2 h 13 m"
    assert "Failed in ChargeCard: Payment.Declined" in page.meta["og:description"]
    assert SECRET_CAUSE in html.unescape(body)  # the page itself, for a person
    history = Page(viewer_client.get(url(ex, "history/")).content.decode())
    assert history.meta["og:title"] == page.meta["og:title"]
    assert history.meta["og:url"] == f"{BASE}/executions/{ex.arn}/history/"
    listed = Page(viewer_client.get("/executions/?status=FAILED").content.decode())
    assert listed.meta["og:title"] == "Executions · FAILED"
    assert listed.meta["og:description"].startswith("1 matching (failed 1) · ")


def test_the_tags_of_a_real_execution_synced_from_aws(
    client: Any,
    previews: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    arn = start(make_state_machine("payments", PAYMENT), "pay-1", {"cardholder_pan": SECRET_INPUT})
    wait_until_finished(sfn, [arn])
    flows.import_execution(arn)
    body = client.get(url(arn)).content.decode()
    page = Page(body)
    assert page.meta["og:title"].startswith("FAILED · payments · pay-1 · ")
    assert page.meta["og:description"].startswith("Failed in Charge: Payment.Declined · started ")
    assert "the card was declined" not in body  # the cause
    assert SECRET_INPUT not in body
    assert_nothing_but_tags(body, page)


# --- Hostile names --------------------------------------------------------------------------

HOSTILE = '"><script>alert(1)</script><meta property="og:title" content="pwned'


def test_hostile_names_and_errors_stay_inside_their_attribute(client: Any, previews: Any) -> None:
    sm = state_machine_row("evil")
    StateMachine.objects.filter(pk=sm.pk).update(name=HOSTILE)
    ex = failed(state_machine=sm, error=HOSTILE)
    Execution.objects.filter(pk=ex.pk).update(name=HOSTILE)
    body = client.get(url(ex)).content.decode()
    assert "<script>" not in body
    assert '<meta property="og:title" content="pwned' not in body
    page = Page(body)
    # One og:title, holding the hostile text as text.
    assert body.count('property="og:title"') == 1
    assert page.meta["og:title"] == f"FAILED · {HOSTILE} · {HOSTILE} · 2 h 13 m"
    assert HOSTILE in page.meta["og:description"]
    assert html.escape(HOSTILE, quote=True) in body


# --- Enumeration (issue 10, item 7) ---------------------------------------------------------

NAME = "order-20261126-1542-7f3a"
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _as_sent(response: Any, prefix: str) -> str:
    """The answer with the text the request itself carried taken out: what
    is left is all the answer could tell about the cache."""
    return response.content.decode().replace(quote(prefix, safe=""), "~").replace(prefix, "~")


def walk(client: Any, start: str, limit: int = 40) -> tuple[str, int]:
    """The issue's script: extend a known prefix of a name one character at
    a time, keeping the character whose answer differs from one for a
    prefix that matches nothing. Returns what it learnt and its requests."""
    learnt, requests = start, 0
    while len(learnt) < limit:
        nothing = _as_sent(client.get("/executions/", {"q": learnt + "."}), learnt + ".")
        requests += 1
        for c in ALPHABET:
            requests += 1
            candidate = learnt + c
            if _as_sent(client.get("/executions/", {"q": candidate}), candidate) != nothing:
                learnt = candidate
                break
        else:
            return learnt, requests
    return learnt, requests


def test_a_prefix_walk_learns_nothing_from_the_list_preview(client: Any, previews: Any) -> None:
    previews.SFNUI_PREVIEW_LIMIT = 10_000
    failed(name=NAME)
    execution_row(name="order-20261126-0900-aaaa", status="SUCCEEDED")
    with time_machine.travel(LATER, tick=False):
        right = client.get("/executions/", {"q": "order-20261126-15", "status": "FAILED"})
        wrong = client.get("/executions/", {"q": "order-20261126-16", "status": "FAILED"})
        assert right.status_code == wrong.status_code == 200
        assert _as_sent(right, "order-20261126-15") == _as_sent(wrong, "order-20261126-16")
        # Before: the whole name in 196 requests.
        learnt, requests = walk(client, "order-")
    assert learnt == "order-"
    assert requests == len(ALPHABET) + 1


@pytest.mark.parametrize(
    "query",
    [
        {"status": "FAILED"},
        {"started_after": "2026-11-26T15:00:00Z"},
        {"state_machine": "arn:aws:states:us-east-1:123456789012:stateMachine:order-pipeline"},
    ],
)
def test_no_filter_changes_the_description(client: Any, previews: Any, query: Any) -> None:
    failed(name=NAME)
    with time_machine.travel(LATER, tick=False):
        matching = Page(client.get("/executions/", {"q": NAME, **query}).content.decode())
        other = Page(client.get("/executions/", {"q": "no-such-name", **query}).content.decode())
    assert matching.meta["og:description"] == other.meta["og:description"]
    assert "matching" not in matching.meta["og:description"]


def test_an_unknown_execution_looks_like_a_malformed_or_unread_one(
    client: Any, previews: Any
) -> None:
    """The preview of an execution says what it is: that it exists is what
    a link in the incident channel is for. What a guesser learns from a miss
    is only that: not whether the ARN was well formed, nor which accounts
    and regions are read; and guesses are rate limited."""
    failed(name=NAME)
    answers = []
    for arn in (
        "arn:aws:states:us-east-1:123456789012:execution:order-pipeline:order-x",
        "arn:aws:states:eu-west-3:999999999999:execution:order-pipeline:order-x",
        "arn:aws:states:us-east-1:123456789012:nope:order-pipeline:order-x",
    ):
        response = client.get(url(arn))
        answers.append((response.status_code, _as_sent(response, url(arn))))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 404


# --- Rate limit of signed-out requests (issue 10, item 7) ------------------------------------


def test_the_request_after_the_limit_gets_a_429_that_says_when(client: Any, previews: Any) -> None:
    previews.SFNUI_PREVIEW_LIMIT = 5
    ex = failed()
    paths = [url(ex), "/executions/?q=order", url(ex, "history/"), url("arn:aws:states:x"), "/"]
    assert [client.get(p).status_code for p in paths[:4]] == [200, 200, 200, 404]
    assert client.get("/executions/").status_code == 200
    refused = client.get(url(ex))
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 12
    body = refused.content.decode()
    assert "Too many requests from your address without signing in: at most 5 a minute" in body
    assert f"Try again in {refused['Retry-After']} s" in body
    assert SECRET_CAUSE not in body
    assert "og:description" not in Page(body).meta
    # Someone else, from another address, is not held back.
    assert client.get(url(ex), REMOTE_ADDR="10.1.2.3").status_code == 200


def test_behind_a_proxy_the_client_address_is_counted(client: Any, previews: Any) -> None:
    previews.SFNUI_PREVIEW_LIMIT = 2
    previews.SFNUI_PROXY_COUNT = 1
    ex = failed()

    def get(client_address: str, forged: str = "") -> int:
        hops = f"{forged}, {client_address}" if forged else client_address
        return int(
            client.get(url(ex), REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=hops).status_code
        )

    assert [get("203.0.113.7"), get("203.0.113.7"), get("203.0.113.7")] == [200, 200, 429]
    # What a client writes on the left itself changes nothing.
    assert get("203.0.113.7", forged="198.51.100.1") == 429
    assert get("203.0.113.8") == 200
    # One IPv6 machine holds a whole /64.
    assert [get("2001:db8::1"), get("2001:db8::2"), get("2001:db8::ffff")] == [200, 200, 429]


def test_signed_in_people_are_not_counted(viewer_client: Any, previews: Any) -> None:
    previews.SFNUI_PREVIEW_LIMIT = 1
    ex = failed()
    assert [viewer_client.get(url(ex)).status_code for _ in range(3)] == [200] * 3
