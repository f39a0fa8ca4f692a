"""Each person's allowance of AWS lookups (issue 10, item 9).

Opening an execution the cache lacks is a DescribeExecution paid from the
sync's budget. One signed-in user spent all of it with made-up ARNs (151
calls in 1.6 s). Now one person gets SFNUI_LOOKUP_LIMIT lookups a minute;
beyond, a 429 that says why and when to try again, and nothing is sent.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from executions import aws
from executions.models import ApiBucket
from executions.web import ratelimit
from tests.support.factories import execution_row

pytestmark = pytest.mark.django_db

LIMIT = 3


@pytest.fixture
def allowance(settings: Any, fake_aws: Any) -> None:
    settings.SFNUI_LOOKUP_LIMIT = LIMIT


def made_up(i: int) -> str:
    return f"arn:aws:states:us-east-1:123456789012:execution:nowhere:ghost-{i}"


@contextlib.contextmanager
def allowed() -> Iterator[list[int]]:
    """The lookups the allowance may grant during the block: LIMIT at once,
    and one more each 60 / LIMIT seconds (a token bucket: a slow machine
    earns some back while the test runs)."""
    bound = [LIMIT]
    start = time.monotonic()
    yield bound
    bound[0] = LIMIT + int((time.monotonic() - start) * LIMIT / 60)


def test_a_burst_of_made_up_arns_costs_at_most_the_allowance(
    viewer_client: Client, allowance: None
) -> None:
    answers = []
    with aws.count_calls() as calls, allowed() as most:
        for i in range(151):
            path = f"/api/executions/{made_up(i)}/" if i % 2 else f"/executions/{made_up(i)}/"
            answers.append(viewer_client.get(path))
    # 151 calls before.
    assert LIMIT <= calls["DescribeExecution"] <= most[0]
    codes = [a.status_code for a in answers]
    assert codes[:LIMIT] == [404] * LIMIT
    assert codes.count(404) == calls["DescribeExecution"]
    assert codes.count(429) == 151 - calls["DescribeExecution"]
    page, api = answers[-1], answers[-2]
    assert page["Retry-After"] == api["Retry-After"]
    assert 1 <= int(page["Retry-After"]) <= 60
    assert "Too many lookups" in page.content.decode()
    assert f"Try again in {page['Retry-After']} s" in page.content.decode()
    assert api.json()["error"] == "Too many lookups"
    assert "each costs a call to AWS" in api.json()["message"]


def test_every_page_that_looks_up_spends_the_same_allowance(
    viewer_client: Client, operator_client: Client, allowance: None
) -> None:
    suffixes = ["", "history/", "history.txt", "history.json"]
    with aws.count_calls() as calls, allowed() as most:
        for i, suffix in enumerate([*suffixes, "", ""]):
            viewer_client.get(f"/executions/{made_up(i)}/{suffix}")
    assert LIMIT <= calls["DescribeExecution"] <= most[0]


def test_executions_in_the_cache_and_other_people_are_not_held_back(
    client: Client, user: Any, operator: Any, allowance: None
) -> None:
    known = execution_row(name="known", status="SUCCEEDED")
    client.force_login(user)
    for i in range(LIMIT):
        client.get(f"/executions/{made_up(i)}/")
    assert client.get(f"/executions/{made_up(99)}/").status_code == 429
    assert client.get(f"/executions/{known.arn}/").status_code == 200
    # An ARN already known to be unknown costs no call either: answered from memory.
    assert client.get(f"/executions/{made_up(0)}/").status_code == 404
    client.force_login(operator)
    with aws.count_calls() as calls:
        assert client.get(f"/executions/{made_up(100)}/").status_code == 404
    assert calls["DescribeExecution"] == 1


def test_a_script_with_basic_auth_has_its_users_allowance(user: Any, allowance: None) -> None:
    script = Client(
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"viewer:viewer-pass-123").decode()
    )
    with aws.count_calls() as calls, allowed() as most:
        codes = [script.get(f"/api/executions/{made_up(i)}/").status_code for i in range(10)]
    assert codes[:LIMIT] == [404] * LIMIT
    assert codes[-1] == 429
    assert LIMIT <= calls["DescribeExecution"] <= most[0]
    # The same person signed in shares it.
    browser = Client()
    browser.force_login(user)
    assert browser.get(f"/executions/{made_up(50)}/").status_code == 429


def test_without_redis_buckets_of_people_long_gone_are_deleted(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if settings.REDIS_URL:
        pytest.skip("Redis expires the buckets itself")
    now = time.time()
    ApiBucket.objects.bulk_create(
        [
            ApiBucket(key="ratelimit:preview:192.0.2.1", tokens=0, stamp=now - 7200),
            ApiBucket(key="ratelimit:preview:192.0.2.2", tokens=0, stamp=now - 60),
            ApiBucket(key="budget:default:us-east-1:DescribeExecution", tokens=0, stamp=now - 7200),
        ]
    )
    monkeypatch.setattr(ratelimit, "_last_prune", 0.0)
    assert ratelimit.spend("lookup", "user:1", 5) == 0
    assert set(ApiBucket.objects.values_list("key", flat=True)) == {
        "ratelimit:preview:192.0.2.2",
        "ratelimit:lookup:user:1",
        "budget:default:us-east-1:DescribeExecution",
    }
    # Not again before its time: one DELETE now and then, not one a request.
    ApiBucket.objects.create(key="ratelimit:preview:192.0.2.3", tokens=0, stamp=now - 7200)
    ratelimit.spend("lookup", "user:1", 5)
    assert ApiBucket.objects.filter(key="ratelimit:preview:192.0.2.3").exists()
