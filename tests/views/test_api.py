"""/api/executions/ and /api/executions/<arn>/: JSON for scripts, with the
session or HTTP Basic auth, and the list's filters and cursor."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from executions import tasks
from executions.models import Execution
from executions.sync import flows
from tests.support.factories import execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db

LIST = "/api/executions/"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def detail_url(arn: str) -> str:
    return f"/api/executions/{arn}/"


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- Auth and methods ------------------------------------------------------------------


@pytest.mark.parametrize("path", [LIST, detail_url("arn:aws:states:us-east-1:1:execution:a:b")])
def test_anonymous_calls_get_a_401_not_the_login_page(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Basic realm="sfnui"')
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "Unauthorized"


def test_basic_auth_with_a_django_user_works(client: Any, user: Any) -> None:
    execution_row(name="scripted")
    response = client.get(LIST, headers=basic("viewer", "viewer-pass-123"))
    assert response.status_code == 200
    assert [e["name"] for e in response.json()["executions"]] == ["scripted"]
    # Basic auth opens no session.
    assert "sessionid" not in response.cookies


@pytest.mark.parametrize(
    "header",
    [
        basic("viewer", "wrong"),
        basic("nobody", "viewer-pass-123"),
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        {"Authorization": "Bearer abc"},
        {"Authorization": ""},
    ],
)
def test_wrong_credentials_get_a_401(client: Any, user: Any, header: dict[str, str]) -> None:
    response = client.get(LIST, headers=header)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response


def test_an_inactive_user_cannot_use_basic_auth(client: Any, user: Any) -> None:
    user.is_active = False
    user.save()
    assert client.get(LIST, headers=basic("viewer", "viewer-pass-123")).status_code == 401


def test_a_signed_in_session_works(viewer_client: Any) -> None:
    assert viewer_client.get(LIST).status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_only_answers_get(viewer_client: Any, method: str) -> None:
    ex = execution_row()
    for path in (LIST, detail_url(ex.arn)):
        response = getattr(viewer_client, method)(path)
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
        assert response.json()["error"] == "Method not allowed"


def test_head_is_allowed(viewer_client: Any) -> None:
    assert viewer_client.head(LIST).status_code == 200


# --- The list --------------------------------------------------------------------------


def test_the_list_gives_rows_and_a_cursor(viewer_client: Any) -> None:
    sm = state_machine_row("orders")
    for i in range(5):
        execution_row(
            sm, f"run-{i}", "FAILED" if i % 2 else "SUCCEEDED", T0 + dt.timedelta(minutes=i)
        )
    body = viewer_client.get(LIST, {"per_page": 2}).json()
    assert [e["name"] for e in body["executions"]] == ["run-4", "run-3"]
    first = body["executions"][0]
    assert first == {
        "arn": "arn:aws:states:us-east-1:123456789012:execution:orders:run-4",
        "name": "run-4",
        "state_machine_arn": sm.arn,
        "account": "123456789012",
        "region": "us-east-1",
        "status": "SUCCEEDED",
        "start_date": "2024-05-01T12:04:00Z",
        "stop_date": "2024-05-01T12:04:42Z",
        "error": None,
        "redrive_count": 0,
        "is_final": True,
        "url": "http://testserver/api/executions/" + first["arn"] + "/",
    }
    assert body["previous"] is None

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"per_page": 2}
        if cursor:
            params["cursor"] = cursor
        page = viewer_client.get(LIST, params).json()
        seen += [e["name"] for e in page["executions"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["run-4", "run-3", "run-2", "run-1", "run-0"]


def test_the_list_takes_the_page_filters(viewer_client: Any) -> None:
    sm, other = state_machine_row("orders"), state_machine_row("billing")
    execution_row(sm, "o-1", "FAILED", T0)
    execution_row(sm, "o-2", "RUNNING", T0 + dt.timedelta(hours=2))
    execution_row(other, "b-1", "FAILED", T0 + dt.timedelta(hours=1))

    def names(**params: Any) -> list[str]:
        response = viewer_client.get(LIST, params)
        assert response.status_code == 200
        return [e["name"] for e in response.json()["executions"]]

    assert names(status="FAILED") == ["b-1", "o-1"]
    assert names(status="FAILED", state_machine=sm.arn) == ["o-1"]
    assert names(q="O-") == ["o-2", "o-1"]
    assert names(started_after="2024-05-01T12:30:00Z") == ["o-2", "b-1"]
    assert names(started_before="2024-05-01T14:30", tz="Europe/Berlin") == ["o-1"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"status": "NOPE"}, "status"),
        ({"started_after": "last tuesday"}, "started_after"),
        ({"started_before": "2024-02-30"}, "started_before"),
        ({"cursor": "%%%"}, "cursor"),
        ({"state_machine": "orders"}, "state_machine"),
        ({"per_page": "500"}, "per_page"),
        ({"account": "prod"}, "account"),
        ({"region": "moon-base-1"}, "region"),
    ],
)
def test_bad_filters_are_a_400_in_json(
    viewer_client: Any, params: dict[str, str], parameter: str
) -> None:
    response = viewer_client.get(LIST, params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad query parameter"
    assert f"bad value for {parameter}:" in body["message"]


def test_the_list_filters_by_account_and_region_and_says_each(viewer_client: Any) -> None:
    home = state_machine_row("orders")
    prod = state_machine_row("orders", account="210987654321", region="eu-west-1")
    execution_row(home, "home-1", "FAILED", T0)
    execution_row(prod, "prod-1", "FAILED", T0 + dt.timedelta(minutes=1))
    execution_row(prod, "prod-2", "RUNNING", T0 + dt.timedelta(minutes=2))

    def rows(**params: Any) -> list[tuple[str, str, str]]:
        response = viewer_client.get(LIST, params)
        assert response.status_code == 200
        return [(e["name"], e["account"], e["region"]) for e in response.json()["executions"]]

    assert rows() == [
        ("prod-2", "210987654321", "eu-west-1"),
        ("prod-1", "210987654321", "eu-west-1"),
        ("home-1", "123456789012", "us-east-1"),
    ]
    assert rows(account="123456789012") == [("home-1", "123456789012", "us-east-1")]
    assert [r[0] for r in rows(region="eu-west-1", status="FAILED")] == ["prod-1"]
    assert rows(account="123456789012", region="eu-west-1") == []
    first = viewer_client.get(LIST, {"region": "eu-west-1", "per_page": 1}).json()
    older = viewer_client.get(LIST, {"region": "eu-west-1", "per_page": 1, "cursor": first["next"]})
    assert [e["name"] for e in older.json()["executions"]] == ["prod-1"]
    one = viewer_client.get(detail_url(prod.executions.get(name="prod-2").arn)).json()
    assert (one["account"], one["region"]) == ("210987654321", "eu-west-1")


def test_a_pasted_arn_in_q_is_a_name_search_in_the_api(viewer_client: Any) -> None:
    # Scripts get data, not redirects: an ARN matches no name.
    q = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1"
    response = viewer_client.get(LIST, {"q": q})
    assert response.status_code == 200
    assert response.json()["executions"] == []


def test_the_list_query_count_is_fixed(
    viewer_client: Any, django_assert_max_num_queries: Any
) -> None:
    sm = state_machine_row()
    for i in range(40):
        execution_row(sm, f"r-{i}", started=T0 + dt.timedelta(seconds=i))
    # session, user, the page.
    with django_assert_max_num_queries(3):
        viewer_client.get(LIST, {"status": ["FAILED", "SUCCEEDED"]})
    with django_assert_max_num_queries(3):
        viewer_client.get(LIST, {"account": "123456789012", "region": "us-east-1"})


# --- One execution ---------------------------------------------------------------------


def test_one_execution_with_everything_a_script_needs(viewer_client: Any) -> None:
    synced = timezone.now() - dt.timedelta(seconds=30)
    ex = execution_row(
        name="one",
        status="FAILED",
        started=T0,
        input='{"order": 1}',
        error="Order.Bad",
        cause="no items",
        redrive_count=1,
        redrive_date=T0 + dt.timedelta(hours=1),
        synced_at=synced,
        last_event_id=9,
    )
    response = viewer_client.get(detail_url(ex.arn))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    age = body.pop("data_age_seconds")
    assert 29 <= age <= 60
    assert body == {
        "arn": ex.arn,
        "name": "one",
        "state_machine_arn": ex.state_machine.arn,
        "account": "123456789012",
        "region": "us-east-1",
        "status": "FAILED",
        "is_final": True,
        "start_date": "2024-05-01T12:00:00Z",
        "stop_date": "2024-05-01T12:00:42Z",
        "input": '{"order": 1}',
        "output": None,
        "error": "Order.Bad",
        "cause": "no items",
        "redrive_count": 1,
        "redrive_date": "2024-05-01T13:00:00Z",
        "redrive_status": None,
        "redrive_status_reason": None,
        "map_run_arn": None,
        "state_machine_version_arn": None,
        "state_machine_alias_arn": None,
        "synced_at": synced.isoformat().replace("+00:00", "Z"),
        "sync_error": None,
        "history_complete": True,
        "history_events": 9,
        "console_url": (
            "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1"
            f"#/v2/executions/details/{ex.arn}"
        ),
        "url": f"http://testserver/executions/{ex.arn}/",
        "warnings": [],
    }


def test_a_malformed_arn_is_a_404_in_json(viewer_client: Any) -> None:
    response = viewer_client.get(detail_url("arn:aws:states:nope"))
    assert response.status_code == 404
    assert response.json()["error"] == "Not an execution ARN"


def test_an_arn_aws_does_not_know_is_a_404_in_json(viewer_client: Any, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:nowhere:ghost"
    response = viewer_client.get(detail_url(arn))
    assert response.status_code == 404
    assert response.json()["error"] == "Execution not found"
    assert "AWS does not know" in response.json()["message"]


def test_an_arn_of_a_region_no_identity_reads_is_a_404_in_json(
    viewer_client: Any, settings: Any
) -> None:
    settings.SFNUI_ACCOUNTS = [
        {
            "role_arn": "arn:aws:iam::210987654321:role/reader",
            "external_id": "",
            "regions": ["us-east-1"],
            "name": "prod",
        }
    ]
    arn = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1"
    response = viewer_client.get(detail_url(arn))
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "Not an account or region this dashboard reads"
    assert "this dashboard does not read account 123456789012" in body["message"]
    assert "prod (210987654321) in us-east-1" in body["message"]


def test_anonymous_callers_cannot_make_it_call_aws(client: Any, fake_aws: Any) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:nowhere:ghost"
    assert client.get(detail_url(arn)).status_code == 401


def test_a_script_can_wait_for_an_execution_to_finish(
    client: Any,
    user: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a deploy script does: poll with Basic auth until is_final. Here the
    execution ends when someone stops it in the console, outside sfnui."""
    # Stand in for the worker: the sync the API asks for runs at once.
    monkeypatch.setattr(
        tasks.sync_execution_now, "delay_on_commit", tasks.sync_execution_now, raising=False
    )
    settings.SFNUI_VIEWED_INTERVAL = 0
    arn = start(make_state_machine("nightly", LONG_WAIT), "deploy-1", {})
    auth = basic("viewer", "viewer-pass-123")
    first = client.get(detail_url(arn), headers=auth).json()
    assert (first["status"], first["is_final"], first["stop_date"]) == ("RUNNING", False, None)

    sfn.stop_execution(executionArn=arn, error="Console.Stop", cause="by hand")
    deadline = time.monotonic() + 30
    body = first
    while not body["is_final"]:
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
        body = client.get(detail_url(arn), headers=auth).json()
    assert body["status"] == "ABORTED"
    assert body["stop_date"] is not None
    assert (body["error"], body["cause"]) == ("Console.Stop", "by hand")


def test_a_running_execution_from_aws(
    viewer_client: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "n-1")
    flows.import_execution(arn)
    body = viewer_client.get(detail_url(arn)).json()
    assert body["status"] == "RUNNING"
    assert body["stop_date"] is None
    assert body["data_age_seconds"] < 30
    assert Execution.objects.get(arn=arn).status == "RUNNING"
