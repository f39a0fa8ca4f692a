"""/executions/<arn>/: one execution, where it is now, why it failed, its
input and output, and the live refresh while it runs."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.utils import timezone

from executions import tasks
from executions.models import Execution, HistoryEvent, StopRequest, SyncRun
from executions.sync import freshness
from executions.text.payloads import pretty_json
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import FAIL, LONG_WAIT, PAYMENT, wait_until_finished

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def url(ex: Execution | str, query: str = "") -> str:
    arn = ex if isinstance(ex, str) else ex.arn
    return f"/executions/{arn}/" + (f"?{query}" if query else "")


def page(client: Any, ex: Execution | str, query: str = "", **kwargs: Any) -> str:
    response = client.get(url(ex, query), **kwargs)
    assert response.status_code == 200, response.content[:500]
    return str(response.content.decode())


def failed_with_history(name: str = "f-1", state: str = "Charge", **fields: Any) -> Execution:
    ex = execution_row(
        name=name,
        status="FAILED",
        started=T0,
        error=fields.pop("error", "Payment.Declined"),
        cause=fields.pop("cause", "the card was declined"),
        **fields,
    )
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": state, "input": "{}"}),
            (
                "TaskFailed",
                "taskFailedEventDetails",
                {"error": ex.error, "cause": ex.cause, "resource": "x", "resourceType": "lambda"},
            ),
            (
                "ExecutionFailed",
                "executionFailedEventDetails",
                {"error": ex.error, "cause": ex.cause},
            ),
        ],
    )
    return ex


def running_with_history(name: str = "r-1", state: str = "Sleep", **fields: Any) -> Execution:
    ex = execution_row(name=name, status="RUNNING", started=timezone.now(), **fields)
    events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("WaitStateEntered", "stateEnteredEventDetails", {"name": state, "input": "{}"}),
        ],
    )
    return ex


# --- Access ----------------------------------------------------------------------------


def test_anonymous_people_are_sent_to_the_login_page(client: Any) -> None:
    ex = execution_row()
    response = client.get(url(ex))
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=" + quote(url(ex))


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_it_only_answers_get(viewer_client: Any, method: str) -> None:
    ex = execution_row()
    assert getattr(viewer_client, method)(url(ex)).status_code == 405


def test_a_malformed_arn_is_a_404_that_says_it_is_not_an_execution_arn(
    viewer_client: Any,
) -> None:
    response = viewer_client.get("/executions/arn:aws:states:us-east-1:nope/")
    assert response.status_code == 404
    assert "is not a Step Functions execution ARN" in response.content.decode()


def test_an_arn_aws_does_not_know_is_a_404_that_says_so(viewer_client: Any, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:nowhere:ghost"
    response = viewer_client.get(url(arn))
    assert response.status_code == 404
    body = response.content.decode()
    assert "Execution not found" in body
    assert "AWS does not know the execution" in body
    assert not Execution.objects.filter(arn=arn).exists()


def test_an_execution_the_cache_lacks_is_looked_up_on_first_open(
    viewer_client: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    arn = start(make_state_machine("fails", FAIL), "pasted", {"order": 7})
    wait_until_finished(sfn, [arn])
    body = page(viewer_client, arn)
    assert Execution.objects.get(arn=arn).status == "FAILED"
    assert "pasted" in body
    assert "&quot;order&quot;: 7" in body


# --- Accounts and regions ------------------------------------------------------------

OTHER = "210987654321"
OTHER_ROLE = f"arn:aws:iam::{OTHER}:role/sfnui-reader"


def identities(settings: Any, *, default: bool = True, name: str = "prod") -> None:
    """A role in OTHER (us-east-1, eu-west-1) named `name`, and unless told
    otherwise the default identity in us-east-1."""
    entries = [{"role_arn": "", "external_id": "", "regions": ["us-east-1"], "name": ""}]
    settings.SFNUI_ACCOUNTS = [
        *(entries if default else []),
        {
            "role_arn": OTHER_ROLE,
            "external_id": "",
            "regions": ["us-east-1", "eu-west-1"],
            "name": name,
        },
    ]


def test_the_account_and_region_are_shown_with_the_identitys_name(
    viewer_client: Any, settings: Any
) -> None:
    identities(settings)
    ex = execution_row(state_machine_row("orders", account=OTHER, region="eu-west-1"))
    body = page(viewer_client, ex)
    assert f'<span id="execution-account">prod <span class="mono muted">({OTHER})</span>' in body
    assert '<span id="execution-region">eu-west-1</span>' in body
    home = execution_row(state_machine_row("orders"))
    body = page(viewer_client, home)
    assert '<span id="execution-account"><span class="mono">123456789012</span>' in body
    assert '<span id="execution-region">us-east-1</span>' in body


def test_an_execution_of_another_configured_account_is_looked_up_with_its_role(
    viewer_client: Any, fake_aws: Any, settings: Any
) -> None:
    import boto3

    identities(settings)
    sts = boto3.client("sts", region_name="eu-west-1", endpoint_url=fake_aws.url)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER}:role/test", RoleSessionName="test")[
        "Credentials"
    ]
    other = boto3.client(
        "stepfunctions",
        region_name="eu-west-1",
        endpoint_url=fake_aws.url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    sm = other.create_state_machine(
        name="elsewhere", definition=json.dumps(FAIL), roleArn=f"arn:aws:iam::{OTHER}:role/sfn"
    )["stateMachineArn"]
    arn = other.start_execution(stateMachineArn=sm, name="pasted", input="{}")["executionArn"]
    wait_until_finished(other, [arn])
    body = page(viewer_client, arn)
    ex = Execution.objects.select_related("state_machine").get(arn=arn)
    assert (ex.status, ex.state_machine.account, ex.state_machine.region) == (
        "FAILED",
        OTHER,
        "eu-west-1",
    )
    assert SyncRun.objects.get(kind="lookup").account == OTHER
    assert f'prod <span class="mono muted">({OTHER})</span>' in body


@pytest.mark.parametrize(
    ("arn", "says"),
    [
        (
            "arn:aws:states:xx-nowhere-9:123456789012:execution:orders:run-1",
            "this dashboard does not read region 'xx-nowhere-9': AWS has no such region",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:execution:orders:run-1",
            "this dashboard does not read account 123456789012",
        ),
    ],
)
def test_an_arn_no_identity_reads_is_a_404_that_says_so_and_sends_nothing(
    viewer_client: Any, settings: Any, arn: str, says: str
) -> None:
    # Only the role of OTHER: no identity for 123456789012. (Any call would go
    # to a closed port and answer 503.)
    identities(settings, default=False)
    for path in (url(arn), f"/executions/{arn}/history/", f"/api/executions/{arn}/"):
        response = viewer_client.get(path)
        assert response.status_code == 404, path
        body = html.unescape(response.content.decode())
        assert "Not an account or region this dashboard reads" in body
        assert says in body
        assert f"This dashboard reads prod ({OTHER}) in us-east-1, eu-west-1." in body
        assert "AWS is unreachable" not in body
    assert not SyncRun.objects.exists()  # nothing sent, nothing that makes the bar warn
    assert not Execution.objects.filter(arn=arn).exists()


# --- A running execution ---------------------------------------------------------------


def test_a_running_execution_shows_where_it_is_and_refreshes_itself(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "n-1", {"day": "monday"})
    body = page(viewer_client, arn)
    ex = Execution.objects.get(arn=arn)
    assert ex.status == "RUNNING"
    assert "Where it is now" in body
    sleep = HistoryEvent.objects.get(execution=ex, type="WaitStateEntered")
    assert f"?event={sleep.event_id}#event-{sleep.event_id}" in body
    assert ">Sleep</a>" in body
    assert f'data-since="{sleep.timestamp.isoformat().replace("+00:00", "Z")}"' in body
    assert "data synced" in body
    assert 'hx-trigger="every 3s"' in body
    assert "No output yet: the execution is still running." in body
    assert ex.name in body


def test_the_live_part_alone_answers_the_htmx_refresh(viewer_client: Any) -> None:
    ex = running_with_history(state="Sleep")
    response = viewer_client.get(url(ex), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="live"')
    assert "Sleep" in body
    assert "<html" not in body
    assert "Input" not in body
    assert "HX-Request" in response["Vary"]


def test_when_it_finishes_the_refresh_replaces_the_whole_panel(viewer_client: Any) -> None:
    ex = running_with_history()
    Execution.objects.filter(pk=ex.pk).update(
        status="FAILED", stop_date=timezone.now(), error="Boom", cause="why", history_complete=True
    )
    response = viewer_client.get(url(ex), headers={"HX-Request": "true"})
    assert response["HX-Retarget"] == "#execution"
    assert response["HX-Reswap"] == "outerHTML"
    body = response.content.decode()
    assert '<div id="execution"' in body
    assert 'class="banner failed failure"' in body
    assert "hx-trigger" not in body
    assert "<title>" in body


def test_a_finished_execution_does_not_refresh(viewer_client: Any) -> None:
    text = page(viewer_client, execution_row(status="SUCCEEDED"))
    # The graph card loads once after the page (hx-trigger="load"); nothing polls.
    assert re.findall(r'hx-trigger="([^"]*)"', text) == ["load"]


def test_watching_a_stale_running_execution_makes_it_sync_now(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(tasks.sync_execution_now, "delay_on_commit", sent.append, raising=False)
    ex = running_with_history(synced_at=timezone.now() - dt.timedelta(minutes=5))
    page(viewer_client, ex)
    assert sent == [ex.arn]
    ex.refresh_from_db()
    assert ex.sync_due_at is not None
    assert ex.sync_due_at <= timezone.now()


def test_a_fresh_or_finished_execution_is_not_synced_again(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(tasks.sync_execution_now, "delay_on_commit", sent.append, raising=False)
    page(viewer_client, running_with_history(synced_at=timezone.now()))
    page(viewer_client, execution_row(status="SUCCEEDED", synced_at=T0))
    assert sent == []


def test_the_page_works_when_the_broker_is_down(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any) -> None:
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(tasks.sync_execution_now, "delay_on_commit", down, raising=False)
    ex = running_with_history(synced_at=timezone.now() - dt.timedelta(minutes=5))
    assert "Where it is now" in page(viewer_client, ex)


def test_stale_data_is_flagged(viewer_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        tasks.sync_execution_now, "delay_on_commit", lambda arn: None, raising=False
    )
    ex = running_with_history(
        synced_at=timezone.now() - dt.timedelta(minutes=30), sync_error="AccessDenied: no"
    )
    body = page(viewer_client, ex)
    assert "the sync is behind, this may no longer be true" in body
    assert "AccessDenied: no" in body


def test_a_running_execution_not_synced_yet_says_so(viewer_client: Any) -> None:
    ex = execution_row(status="RUNNING", started=timezone.now())
    assert "its history has not been synced" in page(viewer_client, ex)


# --- Stop button and stop records ------------------------------------------------------


def test_the_stop_button_is_for_operators_and_running_executions_only(
    client: Any, user: Any, operator: Any
) -> None:
    running, done = running_with_history(), execution_row(status="SUCCEEDED")
    stop_link = f'href="/executions/{running.arn}/stop/"'
    client.force_login(operator)
    assert stop_link in page(client, running)
    assert "/stop/" not in page(client, done)
    client.force_login(user)
    assert "/stop/" not in page(client, running)


def test_stop_records_are_listed(viewer_client: Any) -> None:
    ex = execution_row(status="ABORTED", started=T0)
    StopRequest.objects.create(
        execution=ex,
        username="alice",
        error="Manual.Stop",
        cause="runaway loop",
        status_before="RUNNING",
        outcome="STOPPED",
        aws_response='{"stopDate": "2024-05-01T12:01:00Z"}',
    )
    body = page(viewer_client, ex)
    assert "Stop requests from this dashboard" in body
    assert "alice" in body
    assert "Manual.Stop" in body
    assert "runaway loop" in body
    assert "stopped by <strong>alice</strong> from this dashboard" in body


# --- Failed, timed out, aborted --------------------------------------------------------


def test_a_failed_execution_opens_with_a_banner_linking_the_failing_state(
    viewer_client: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    arn = start(make_state_machine("fails", FAIL), "f-1")
    wait_until_finished(sfn, [arn])
    body = page(viewer_client, arn)
    ex = Execution.objects.get(arn=arn)
    boom = HistoryEvent.objects.get(execution=ex, type="FailStateEntered")
    assert 'class="banner failed failure"' in body
    assert body.index("banner failed") < body.index("Execution ARN")
    assert "<strong>Boom</strong>" in body
    assert f"/executions/{arn}/history/?event={boom.event_id}#event-{boom.event_id}" in body
    assert "Order.Invalid" in body
    assert "the order has no items" in body
    assert "No output: the execution failed (see the error above)." in body


def test_a_caught_task_failure_shows_where_it_ended(
    viewer_client: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    arn = start(make_state_machine("payments", PAYMENT), "p-1")
    wait_until_finished(sfn, [arn])
    body = page(viewer_client, arn, "tz=Europe/Berlin")
    ex = Execution.objects.get(arn=arn)
    declined = HistoryEvent.objects.filter(execution=ex, type="FailStateEntered").get()
    assert "<strong>Declined</strong>" in body
    assert "Payment.Declined" in body
    assert (
        f"/executions/{arn}/history/?event={declined.event_id}&amp;tz=Europe%2FBerlin"
        f"#event-{declined.event_id}" in body
    )


@pytest.mark.parametrize(
    ("status", "css", "headline", "no_output"),
    [
        ("TIMED_OUT", "timed-out", "Timed out", "No output: the execution timed out"),
        ("ABORTED", "aborted", "Aborted", "No output: the execution was aborted"),
    ],
)
def test_timed_out_and_aborted_get_their_banner(
    viewer_client: Any, status: str, css: str, headline: str, no_output: str
) -> None:
    ex = execution_row(status=status, started=T0, error="States.Timeout", cause="too slow")
    body = page(viewer_client, ex)
    assert f'class="banner {css} failure"' in body
    assert f"<strong>{headline}</strong>" in body
    assert no_output in body


def test_a_long_cause_is_folded_and_a_json_cause_pretty_printed(viewer_client: Any) -> None:
    cause = json.dumps(
        {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": ["line"] * 100}
    )
    ex = failed_with_history(cause=cause)
    body = page(viewer_client, ex)
    assert '<details class="cause">' in body
    # What went wrong in one line; the stack trace folded under it.
    assert '<summary><span class="mono">ValueError: boom</span>' in body
    assert "&quot;errorType&quot;: &quot;ValueError&quot;," in body
    short = failed_with_history(name="f-2", cause="short cause")
    assert '<details class="cause">' not in page(viewer_client, short)


def test_without_history_the_banner_says_the_state_is_not_known_yet(viewer_client: Any) -> None:
    ex = execution_row(status="FAILED", error="E", cause="C", history_complete=False)
    assert "not known yet" in page(viewer_client, ex)


# --- Input and output ------------------------------------------------------------------


def test_json_is_pretty_printed_exactly_as_stored() -> None:
    text = '{"amount":1.10,"huge":1e400,"dup":1,"dup":2,"empty":{},"list":[],"s":"a,b:{c}"}'
    pretty = pretty_json(text)
    assert pretty is not None
    assert json.loads(pretty) == json.loads(text)
    assert '"amount": 1.10,' in pretty
    assert '"huge": 1e400,' in pretty
    assert '"dup": 1,\n  "dup": 2,' in pretty
    assert '"empty": {},' in pretty
    assert '"s": "a,b:{c}"' in pretty
    assert pretty_json("not json") is None
    assert pretty_json("[" * 5000 + "]" * 5000) is None


def test_input_and_output_are_shown_pretty(viewer_client: Any) -> None:
    ex = execution_row(input='{"order":{"id":7}}', output='["done"]')
    body = page(viewer_client, ex)
    assert "{\n  &quot;order&quot;: {\n    &quot;id&quot;: 7\n  }\n}" in body
    assert "[\n  &quot;done&quot;\n]" in body


def test_text_that_is_not_json_is_shown_as_stored(viewer_client: Any) -> None:
    ex = execution_row(input="plain text, not json")
    body = page(viewer_client, ex)
    assert "plain text, not json" in body
    assert "not JSON: shown as stored" in body


def test_a_256_kib_input_renders_folded_and_downloads_byte_exact(viewer_client: Any) -> None:
    items = [{"sku": f"SKU-{i:06d}", "name": "Grüße ✓", "qty": i} for i in range(4300)]
    raw = json.dumps({"items": items}, ensure_ascii=False)
    raw = raw[:-2] + "]" + " " * (256 * 1024 - len(raw.encode())) + "}"
    assert len(raw.encode()) == 256 * 1024
    ex = execution_row(input=raw, output=raw)
    body = page(viewer_client, ex)
    assert '<details class="more">' in body
    assert "Show all of it (256 KiB" in body
    # The page shows the start of each; the rest comes when unfolded.
    assert "SKU-000001" in body
    assert "SKU-004299" not in body
    assert len(body) < 64 * 1024
    assert f'hx-get="/executions/{ex.arn}/?whole=input"' in body
    whole = page(viewer_client, ex, "whole=output", headers={"HX-Request": "true"})
    assert whole.startswith("<pre") or "<pre" in whole[:200]
    assert "SKU-004299" in whole
    assert "<html" not in whole
    # Too big for a copy button; a download instead.
    assert f'href="/executions/{ex.arn}/?raw=input" download' in body

    download = viewer_client.get(url(ex, "raw=input"))
    assert download.status_code == 200
    assert download["Content-Type"] == "text/plain; charset=utf-8"
    assert download["Content-Disposition"].startswith("attachment;")
    assert download.content == raw.encode("utf-8")
    assert viewer_client.get(url(ex, "raw=output")).content == raw.encode("utf-8")


def test_small_payloads_have_a_copy_button(viewer_client: Any) -> None:
    ex = execution_row(input='{"a": 1}')
    assert 'data-copy="{&quot;a&quot;: 1}"' in page(viewer_client, ex)


def test_raw_downloads_of_missing_or_unknown_payloads(viewer_client: Any) -> None:
    ex = running_with_history()
    missing = viewer_client.get(url(ex, "raw=output"))
    assert missing.status_code == 404
    assert "No output yet: the execution is still running." in missing.content.decode()
    bad = viewer_client.get(url(ex, "raw=secrets"))
    assert bad.status_code == 400
    assert "bad value for raw" in bad.content.decode()
    assert viewer_client.get(url(ex, "whole=output")).status_code == 404
    assert viewer_client.get(url(ex, "whole=%00")).status_code == 400


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("RUNNING", "No output yet: the execution is still running."),
        ("PENDING_REDRIVE", "No output yet: the execution is waiting to be redriven."),
        ("FAILED", "No output: the execution failed (see the error above)."),
        ("TIMED_OUT", "No output: the execution timed out (see the error above)."),
        ("ABORTED", "No output: the execution was aborted (stopped) before it finished."),
        ("SUCCEEDED", "No output: AWS returned none for this execution."),
    ],
)
def test_a_missing_output_says_why(viewer_client: Any, status: str, why: str) -> None:
    ex = execution_row(status=status, output=None)
    assert why in page(viewer_client, ex)


def test_a_payload_not_fetched_yet_says_so(viewer_client: Any) -> None:
    ex = execution_row(status="SUCCEEDED", input=None, output=None, described_at=None)
    body = page(viewer_client, ex)
    assert body.count("Not fetched yet: the sync has not described this execution.") == 2


# --- Facts -----------------------------------------------------------------------------


def test_the_facts_of_an_execution(viewer_client: Any) -> None:
    ex = execution_row(
        status="SUCCEEDED",
        started=T0,
        redrive_count=2,
        redrive_date=T0 + dt.timedelta(hours=1),
        redrive_status="NOT_REDRIVABLE",
        redrive_status_reason="Execution is SUCCEEDED and cannot be redriven",
        map_run_arn="arn:aws:states:us-east-1:123456789012:mapRun:orders/map:abc",
        state_machine_version_arn="arn:aws:states:us-east-1:123456789012:stateMachine:orders:3",
        state_machine_alias_arn="arn:aws:states:us-east-1:123456789012:stateMachine:orders:prod",
        last_event_id=12,
    )
    body = page(viewer_client, ex, "tz=Europe/Berlin")
    assert "2024-05-01 14:00:00.000 CEST" in body
    assert "2024-05-01 14:00:42.000 CEST" in body
    assert "42 s" in body
    assert "redriven 2 times, last at 2024-05-01 15:00:00 CEST" in body
    assert "NOT_REDRIVABLE" in body
    assert "cannot be redriven" in body
    assert "mapRun:orders/map:abc" in body
    assert "stateMachine:orders:3" in body
    assert "stateMachine:orders:prod" in body
    assert "12 events stored (complete)" in body
    assert f'data-copy="{ex.arn}"' in body
    assert "Copy ARN" in body
    console = "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/"
    assert console + ex.arn in body
    q = "?tz=Europe%2FBerlin"
    for link in ("history/", "history.txt", "history.json"):
        assert f'href="/executions/{ex.arn}/{link}{q}"' in body
    assert f'href="/state-machines/{ex.state_machine.arn}/{q}"' in body


def test_the_query_count_does_not_grow_with_the_history(
    viewer_client: Any,
    django_assert_max_num_queries: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex = execution_row(status="RUNNING", started=timezone.now())
    items: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})
    ]
    for i in range(300):
        items.append(("PassStateEntered", "stateEnteredEventDetails", {"name": f"S{i}"}))
        items.append(("PassStateExited", "stateExitedEventDetails", {"name": f"S{i}"}))
    items.append(("WaitStateEntered", "stateEnteredEventDetails", {"name": "Sleep"}))
    events(ex, items)
    # session, user, execution, open states (3), stops, the stop permission,
    # the watchers, the start permission (the Re-run button), its Map Runs,
    # and the sync bar's two (none with Redis).
    bar = 0 if settings.REDIS_URL else 2
    # The bar's answer, shared for a moment (Redis): long enough for this test.
    monkeypatch.setattr(freshness, "SHARED_TTL", 600.0)
    viewer_client.get("/executions/?status=SUCCEEDED")
    with django_assert_max_num_queries(11 + bar):
        body = page(viewer_client, ex)
    assert ">Sleep</a>" in body
    done = failed_with_history()
    # session, user, execution, failure point, stops, the watch posts, a
    # permission (the Redrive or Re-run button), its Map Runs, the sync bar.
    with django_assert_max_num_queries(8 + bar):
        page(viewer_client, done)


# --- Hostile content -------------------------------------------------------------------


@pytest.mark.parametrize("payload", [SCRIPT, IMG])
def test_hostile_content_is_escaped_everywhere(viewer_client: Any, payload: str) -> None:
    sm = state_machine_row("evil")
    hostile = {"input": json.dumps({"x": payload}), "output": payload}
    failed = failed_with_history(
        name="evil-failed", state=payload, error=payload, cause=payload, **hostile
    )
    running = running_with_history(name="evil-running", state=payload, state_machine=sm)
    Execution.objects.filter(pk__in=[failed.pk, running.pk]).update(name=payload)
    lambda_style = failed_with_history(
        name="evil-lambda", cause=json.dumps({"errorType": payload, "errorMessage": payload})
    )
    for ex in (failed, running, lambda_style):
        body = page(viewer_client, ex)
        assert "<script>alert(1)" not in body
        assert "<img src=x" not in body
        assert html.escape(payload) in body
