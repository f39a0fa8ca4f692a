"""status.py: what the bar on every page says about the sync and about this
process's broker and shared cache."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from executions import probes
from executions.models import EventQueue, SyncRun
from executions.sync import freshness
from tests.support.factories import execution_row

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_services() -> Iterator[None]:
    freshness.forget_services()
    yield
    freshness.forget_services()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(seconds_ago: float, ok: bool = True, **fields: Any) -> SyncRun:
    started = timezone.now() - dt.timedelta(seconds=seconds_ago)
    fields.setdefault("api_calls", {"ListExecutions": 1})
    return SyncRun.objects.create(
        kind="list",
        region="us-east-1",
        started_at=started,
        finished_at=started + dt.timedelta(seconds=1),
        ok=ok,
        **fields,
    )


def redis_down(settings: Any) -> str:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    settings.CELERY_BROKER_URL = url
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
    }
    return url


# Room for a loaded machine on top of a timeout the code enforces.
SLACK = 5.0


def test_a_redis_that_is_down_is_named_quickly_and_checked_once_per_interval(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_down(settings)
    started = time.monotonic()
    found = freshness.services()
    # Refused at once; the bound is the check's own timeout plus room for a
    # loaded machine (without a timeout it would wait for the OS's).
    assert time.monotonic() - started < probes.SERVICES_TIMEOUT + SLACK
    assert found.down == ("broker", "shared cache")
    assert found.names == "broker and shared cache"
    assert "Connection refused" in found.error
    assert found.since is not None

    checks: list[int] = []

    def services_down() -> tuple[list[str], str]:
        checks.append(1)
        return [], ""

    monkeypatch.setattr(probes, "services_down", services_down)
    assert freshness.services() == found  # reused within SERVICES_TTL
    assert checks == []
    monkeypatch.setattr(freshness, "SERVICES_TTL", 0.0)
    assert freshness.services().down == ()  # back up
    assert checks == [1]


def test_the_outage_keeps_its_start(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_down(settings)
    monkeypatch.setattr(freshness, "SERVICES_TTL", 0.0)
    first = freshness.services()
    assert first.since is not None
    assert freshness.services().since == first.since


def test_a_black_hole_costs_at_most_the_timeout(settings: Any) -> None:
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # accepts, never answers
        url = f"redis://127.0.0.1:{hole.getsockname()[1]}/0"
        settings.CELERY_BROKER_URL = url
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        }
        started = time.monotonic()
        assert freshness.services().down == ("broker", "shared cache")
        # Without the timeout it would wait for an answer that never comes.
        assert time.monotonic() - started < probes.SERVICES_TIMEOUT + SLACK


def test_the_embedded_broker_is_fine_when_its_folder_is_writable(
    settings: Any, tmp_path: Any
) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}
    }
    assert freshness.services().down == ()
    freshness.forget_services()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "gone")}
    assert freshness.services().down == ("broker",)


def test_every_page_warns_when_the_broker_and_cache_are_down(
    settings: Any, viewer_client: Client
) -> None:
    run(5)
    redis_down(settings)
    html = viewer_client.get(reverse("execution_list")).content.decode()
    assert 'id="services-down"' in html
    assert "The broker and shared cache cannot be reached" in html
    body = viewer_client.get(reverse("api_execution_list")).json()
    assert "broker and shared cache cannot be reached" in body["warnings"][0]


def test_throttling_shows_until_a_minute_has_passed_without_it(viewer_client: Client) -> None:
    run(40, ok=False, throttled=True, error="throttled: slow down")
    run(5)  # a good run since: still throttling (the other runs keep meeting it)
    execution_row(status="RUNNING", needs_describe=True, sync_due_at=timezone.now())
    current = freshness.current()
    assert current.throttled
    assert current.backlog == 1
    assert current.behind
    assert current.warning
    html = viewer_client.get(reverse("execution_list")).content.decode()
    assert "Sync is behind: AWS is throttling" in html
    assert "1 execution waiting to be read" in html

    SyncRun.objects.filter(throttled=True).update(
        started_at=timezone.now() - freshness.THROTTLED_RECENTLY - dt.timedelta(seconds=5)
    )
    assert not freshness.current().throttled


def test_a_run_that_made_no_call_is_not_a_sync(viewer_client: Client) -> None:
    run(60, ok=False, error="AWS unreachable in ListExecutions: refused")
    # All its executions were being synced by another worker: nothing to say about AWS.
    run(5, api_calls={})
    current = freshness.current()
    assert current.last_ok_at is None
    assert current.unreachable_since is not None


# --- Events ---------------------------------------------------------------------------

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/sfnui-events"
OTHER_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/sfnui-events"


def heard(url: str, seconds_ago: float | None) -> EventQueue:
    return EventQueue.objects.create(
        url=url,
        heartbeat_at=None
        if seconds_ago is None
        else timezone.now() - dt.timedelta(seconds=seconds_ago),
    )


def test_with_events_off_the_bar_asks_nothing_about_them(settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = []
    heard(QUEUE, 3600)  # left from when they were on: not a reason to warn
    run(5)
    with CaptureQueriesContext(connection) as captured:
        current = freshness.current()
    assert not any("eventqueue" in q["sql"] for q in captured.captured_queries)
    assert current.events_heard == ()
    assert not current.events_stopped
    assert not current.warning


def test_a_consumer_heard_from_recently_is_no_warning(settings: Any, viewer_client: Client) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    settings.SFNUI_EVENTS_HEARTBEAT = 60
    heard(QUEUE, 10)
    run(5)
    current = freshness.current()
    assert not current.events_stopped
    assert not current.warning
    assert (
        'id="events-stopped"' not in viewer_client.get(reverse("execution_list")).content.decode()
    )


def test_every_page_warns_when_the_consumer_stopped(settings: Any, viewer_client: Client) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    settings.SFNUI_EVENTS_HEARTBEAT = 60
    row = heard(QUEUE, 300)
    run(5)
    current = freshness.current()
    assert current.events_stopped
    assert current.events_last_heard == row.heartbeat_at
    assert current.warning
    for url in (reverse("execution_list"), reverse("state_machine_list")):
        html = viewer_client.get(url).content.decode()
        assert 'id="events-stopped"' in html, url
        assert "Events stopped:" in html
        assert "has not been heard from since" in html
        assert "the sync polls as if events were off" in html
        assert f'href="{reverse("sync_health")}#events"' in html


def test_a_consumer_that_never_started_is_a_stop_too(settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    run(5)
    current = freshness.current()
    assert current.events_heard == (None,)
    assert current.events_stopped
    assert current.events_last_heard is None


def test_one_silent_queue_of_two_is_named(settings: Any, viewer_client: Client) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE, OTHER_QUEUE]
    settings.SFNUI_EVENTS_HEARTBEAT = 60
    settings.SFNUI_RECONCILE_INTERVAL = 300
    heard(QUEUE, 5)
    heard(OTHER_QUEUE, 600)
    run(5)
    current = freshness.current()
    assert not current.events_stopped
    assert current.events_partly_stopped
    assert current.warning
    html = viewer_client.get(reverse("execution_list")).content.decode()
    assert "Events stopped for 1 of 2 queues" in html
    assert "every 5 m" in html


def test_with_events_flowing_an_idle_account_is_fresh_between_reconciliations(
    settings: Any,
) -> None:
    """Listings come every SFNUI_RECONCILE_INTERVAL with events on: the data is as
    fresh as the consumer's last receive, not as old as the last listing."""
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    settings.SFNUI_STALE_AFTER = 120
    row = heard(QUEUE, 3)
    run(250)
    current = freshness.current()
    assert current.last_ok_at == row.heartbeat_at
    assert not current.stale
    assert not current.warning


def test_with_events_flowing_a_failing_sync_still_warns(settings: Any) -> None:
    settings.SFNUI_EVENTS_QUEUE_URL = [QUEUE]
    heard(QUEUE, 3)
    run(250)
    run(100, ok=False, error="AWS error in GetExecutionHistory: AccessDenied")
    current = freshness.current()
    assert current.failing
    assert "AccessDenied" in current.last_error
