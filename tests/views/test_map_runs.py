"""/map-runs/<arn>/ and /map-runs/<arn>/update/: the Map Run page and its UpdateMapRun action."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from executions.models import ActionRequest, Execution, MapRun
from executions.sync import flows, map_runs, runs
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db


def page_url(arn: str, **query: str) -> str:
    url = reverse("map_run_detail", args=[arn])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def update_url(arn: str) -> str:
    return reverse("map_run_update", args=[arn])


def calls(fake_aws: Any, operation: str) -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def fake_run(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> Any:
    parent = start(make_state_machine("etl", LONG_WAIT), "run-1")
    fake = fake_aws.app.map_runs.create(
        parent,
        [{"seconds": 1, "fail": i in (1, 4)} for i in range(6)]
        + [{"seconds": 600} for _ in range(4)],
        max_concurrency=10,
        tolerated_failure_percentage=30,
        start=time.time() - 20,
    )
    flows.import_execution(parent)
    map_runs.sync_map_run(MapRun.objects.get(arn=fake.arn), runs.Stats())
    return fake


@pytest.fixture
def map_operator(django_user_model: Any) -> Any:
    person = django_user_model.objects.create_user(username="mapper", password="mapper-pass-1")
    person.user_permissions.add(Permission.objects.get(codename="update_map_run"))
    return person


@pytest.fixture
def map_client(client: Client, map_operator: Any) -> Client:
    client.force_login(map_operator)
    return client


def form(**fields: Any) -> dict[str, Any]:
    data = {
        "max_concurrency": "2",
        "tolerated_failure_percentage": "30",
        "tolerated_failure_count": "0",
        "request_token": str(uuid.uuid4()),
    }
    data.update({k: str(v) for k, v in fields.items()})
    return data


def test_the_page_shows_counts_tolerance_and_children(fake_run: Any, viewer_client: Client) -> None:
    page = viewer_client.get(page_url(fake_run.arn))
    assert page.status_code == 200
    html = page.content.decode()
    assert "RUNNING" in html
    assert 'data-count="failed">2<' in html
    assert 'data-count="total">10<' in html
    # 30 % of 10 items: 3 tolerated, 2 failed so far.
    assert "2 failed" in html
    assert "of 3 tolerated" in html
    assert reverse("execution_detail", args=[fake_run.execution_arn]) in html
    for child in fake_run.children:
        assert reverse("execution_detail", args=[child.arn]) in html
    # A viewer cannot change it.
    assert update_url(fake_run.arn) not in html


def test_the_children_filter_by_status_and_page_newest_first(
    fake_run: Any, viewer_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = viewer_client.get(page_url(fake_run.arn, status="FAILED")).content.decode()
    shown = [c for c in fake_run.children if reverse("execution_detail", args=[c.arn]) in failed]
    assert {c.index for c in shown} == {1, 4}

    from executions.views import map_runs as view

    monkeypatch.setattr(view, "PAGE_SIZE", 4)
    first = viewer_client.get(page_url(fake_run.arn))
    assert first.context["next_url"]
    seen = [c.arn for c in first.context["children"]]
    second = viewer_client.get(first.context["next_url"])
    seen += [c.arn for c in second.context["children"]]
    third = viewer_client.get(second.context["next_url"])
    seen += [c.arn for c in third.context["children"]]
    assert not third.context["next_url"]
    assert sorted(seen) == sorted(c.arn for c in fake_run.children)
    starts = list(
        Execution.objects.filter(arn__in=seen)
        .order_by("-start_date", "-id")
        .values_list("arn", flat=True)
    )
    assert seen == starts


@pytest.mark.parametrize(
    "query", [{"status": "NOPE"}, {"cursor": "abc"}, {"cursor": "99999999999999999999-1"}]
)
def test_a_bad_filter_is_a_400(fake_run: Any, viewer_client: Client, query: dict[str, str]) -> None:
    assert viewer_client.get(page_url(fake_run.arn, **query)).status_code == 400


def test_unknown_and_malformed_map_runs_are_404(fake_aws: Any, viewer_client: Client) -> None:
    assert viewer_client.get("/map-runs/not-an-arn:x/").status_code == 404
    unknown = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Map:0000"
    response = viewer_client.get(page_url(unknown))
    assert response.status_code == 404
    assert "AWS does not know" in response.content.decode()


def test_a_map_run_the_cache_lacks_is_looked_up(
    fake_aws: Any,
    viewer_client: Client,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
) -> None:
    parent = start(make_state_machine("etl", LONG_WAIT), "run-2")
    fake = fake_aws.app.map_runs.create(parent, [{"seconds": 600}])
    assert viewer_client.get(page_url(fake.arn)).status_code == 200
    assert MapRun.objects.get(arn=fake.arn).execution.arn == parent


def test_the_specs_address_under_the_execution_opens_the_map_run(
    fake_run: Any, viewer_client: Client
) -> None:
    label = fake_run.arn.split("/", 1)[1]
    url = reverse("execution_map_run", args=[fake_run.execution_arn, label])
    assert url == f"/executions/{fake_run.execution_arn}/map-runs/{label}/"
    response = viewer_client.get(url + "?tz=Europe/Berlin")
    assert response.status_code == 302
    assert response["Location"] == page_url(fake_run.arn) + "?tz=Europe/Berlin"
    assert viewer_client.get(response["Location"]).status_code == 200


def test_the_specs_address_refuses_a_map_run_of_another_execution(
    fake_run: Any, viewer_client: Client, make_state_machine: Callable[..., str]
) -> None:
    label = fake_run.arn.split("/", 1)[1]
    other = fake_run.execution_arn.rsplit(":", 1)[0] + ":someone-else"
    response = viewer_client.get(reverse("execution_map_run", args=[other, label]))
    assert response.status_code == 404
    assert fake_run.execution_arn in response.content.decode()
    bad = viewer_client.get(reverse("execution_map_run", args=[fake_run.execution_arn, "nolabel"]))
    assert bad.status_code == 404
    assert "LABEL:id" in bad.content.decode()
    not_arn = viewer_client.get("/executions/not-an-arn:x/map-runs/a:b/")
    assert not_arn.status_code == 404


def test_login_is_required(fake_run: Any, client: Client) -> None:
    response = client.get(page_url(fake_run.arn))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_child_execution_page_links_to_its_map_run(fake_run: Any, viewer_client: Client) -> None:
    child = fake_run.children[0].arn
    page = viewer_client.get(reverse("execution_detail", args=[child]))
    assert page.status_code == 200
    assert page_url(fake_run.arn) in page.content.decode()
    parent = viewer_client.get(reverse("execution_detail", args=[fake_run.execution_arn]))
    assert page_url(fake_run.arn) in parent.content.decode()


def test_the_tz_parameter_is_kept(fake_run: Any, viewer_client: Client) -> None:
    html = viewer_client.get(page_url(fake_run.arn, tz="Europe/Berlin")).content.decode()
    assert "tz=Europe/Berlin" in html
    assert "Europe/Berlin" in html


# --- The update ----------------------------------------------------------------------


def test_an_operator_lowers_the_concurrency(
    fake_run: Any, map_client: Client, map_operator: Any, fake_aws: Any
) -> None:
    page = map_client.get(update_url(fake_run.arn))
    assert page.status_code == 200
    response = map_client.post(update_url(fake_run.arn), form(max_concurrency=2))
    assert response.status_code == 302
    assert response["Location"] == page_url(fake_run.arn)
    assert fake_aws.app.map_runs.describe_map_run(fake_run.arn)["maxConcurrency"] == 2
    row = ActionRequest.objects.get()
    assert row.kind == ActionRequest.Kind.UPDATE_MAP_RUN
    assert row.outcome == ActionRequest.Outcome.DONE
    assert row.target_arn == fake_run.arn
    assert row.execution is not None
    assert row.execution.arn == fake_run.execution_arn
    assert row.user == map_operator
    assert row.username == "mapper"
    assert row.parameters["new"] == {"maxConcurrency": 2}
    assert row.parameters["old"]["maxConcurrency"] == 10
    assert MapRun.objects.get(arn=fake_run.arn).max_concurrency == 2
    assert any("updated" in m for m in messages_of(response))


def test_a_double_submit_sends_one_update(fake_run: Any, map_client: Client, fake_aws: Any) -> None:
    data = form(max_concurrency=3)
    map_client.post(update_url(fake_run.arn), data)
    map_client.post(update_url(fake_run.arn), data)
    assert calls(fake_aws, "UpdateMapRun") == 1
    assert ActionRequest.objects.count() == 1


def test_a_finished_map_run_is_refused_and_nothing_is_sent(
    fake_run: Any, map_client: Client, fake_aws: Any
) -> None:
    # AWS ends it after the page was drawn (the cache still says RUNNING).
    for child in fake_run.children:
        child.seconds = 0.001
    response = map_client.post(update_url(fake_run.arn), form(max_concurrency=1))
    assert response.status_code == 302
    assert calls(fake_aws, "UpdateMapRun") == 0
    row = ActionRequest.objects.get()
    assert row.outcome == ActionRequest.Outcome.REFUSED
    assert "Nothing was sent" in row.aws_response
    assert MapRun.objects.get(arn=fake_run.arn).status != "RUNNING"


@pytest.mark.parametrize(
    "fields",
    [
        {"max_concurrency": -1},
        {"max_concurrency": 10001},
        {"tolerated_failure_percentage": 101},
        {"tolerated_failure_count": -5},
        {"max_concurrency": "many"},
        {"request_token": "nope"},
        {"max_concurrency": 10},  # nothing changes
    ],
)
def test_bad_input_is_a_400_and_nothing_is_sent(
    fake_run: Any, map_client: Client, fake_aws: Any, fields: dict[str, Any]
) -> None:
    response = map_client.post(update_url(fake_run.arn), form(**fields))
    assert response.status_code == 400
    assert calls(fake_aws, "UpdateMapRun") == 0
    assert not ActionRequest.objects.exists()


def test_without_the_permission_it_is_a_403(fake_run: Any, viewer_client: Client) -> None:
    assert viewer_client.get(update_url(fake_run.arn)).status_code == 403
    response = viewer_client.post(update_url(fake_run.arn), form())
    assert response.status_code == 403
    assert "update_map_run" in response.content.decode()
    assert not ActionRequest.objects.exists()


def test_a_post_without_csrf_is_refused(fake_run: Any, map_operator: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(map_operator)
    assert client.post(update_url(fake_run.arn), form()).status_code == 403
    assert not ActionRequest.objects.exists()


def test_other_methods_are_405(fake_run: Any, map_client: Client) -> None:
    assert map_client.put(update_url(fake_run.arn)).status_code == 405
    assert map_client.post(page_url(fake_run.arn)).status_code == 405


def test_throttling_is_a_clear_failure(fake_run: Any, map_client: Client, fake_aws: Any) -> None:
    fake_aws.post(
        "/fakeaws/config",
        {"faults": {"throttle_for_seconds": 60, "throttle_operations": ["UpdateMapRun"]}},
    )
    response = map_client.post(update_url(fake_run.arn), form(max_concurrency=1))
    assert response.status_code == 302
    assert response["Location"] == update_url(fake_run.arn)
    row = ActionRequest.objects.get()
    assert row.outcome == ActionRequest.Outcome.FAILED
    assert "throttling" in row.aws_response
    assert any("not updated" in m for m in messages_of(response))


def test_the_parents_history_links_map_run_started_to_the_map_run(
    fake_run: Any, viewer_client: Client
) -> None:
    history = viewer_client.get(reverse("execution_history", args=[fake_run.execution_arn]))
    assert history.status_code == 200
    html = history.content.decode()
    assert "MapRunStarted" in html
    assert page_url(fake_run.arn) in html
    # The timeline names the Map Run too.
    timeline = html.split('id="timeline"', 1)[1].split("</header>", 1)[1]
    assert page_url(fake_run.arn) in timeline.split("</p>", 1)[0]


def test_aws_unreachable_is_a_clear_failure_and_nothing_changes(
    fake_run: Any, map_client: Client, fake_aws: Any, settings: Any
) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    response = map_client.post(update_url(fake_run.arn), form(max_concurrency=1))
    assert response.status_code == 302
    row = ActionRequest.objects.get()
    assert row.outcome == ActionRequest.Outcome.FAILED
    assert "could not be reached" in row.aws_response
    assert fake_aws.app.map_runs.describe_map_run(fake_run.arn)["maxConcurrency"] == 10


def test_the_update_page_of_a_malformed_or_unknown_map_run_is_404(
    fake_aws: Any, map_client: Client
) -> None:
    assert map_client.get("/map-runs/nope:x/update/").status_code == 404
    unknown = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Map:0000"
    assert map_client.get(update_url(unknown)).status_code == 404
    assert not ActionRequest.objects.exists()
