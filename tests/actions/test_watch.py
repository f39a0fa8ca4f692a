"""Watch: a post to the webhook when a watched execution finishes, exactly once,
retried when the webhook fails. The webhook is a real HTTP server on loopback
that records what it is sent."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from executions import tasks
from executions.actions import watch, webhook
from executions.models import Execution, SyncRun, Watch, WatchNotification
from executions.sync import flows
from executions.text import incident
from sfnui.celery import app as celery_app
from tests.support.factories import execution_row, state_machine_row
from tests.support.helpers import LONG_WAIT, wait_for
from tests.support.webhook import SECRET_PATH, Receiver
from tests.support.workers import Processes

pytestmark = pytest.mark.django_db

BASE = "https://sfnui.example.com"


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    r = Receiver()
    settings.SFNUI_WATCH_WEBHOOK_URL = r.url
    settings.SFNUI_BASE_URL = BASE
    yield r
    r.close()


@pytest.fixture
def eager() -> Iterator[None]:
    before = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = before


@pytest.fixture
def runaway(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> Execution:
    ex = flows.import_execution(start(make_state_machine("nightly-etl", LONG_WAIT), "etl-1"))
    assert ex.status == "RUNNING"
    return ex


def watch_url(ex: Execution) -> str:
    return reverse("execution_watch", args=[ex.arn])


def detail_url(ex: Execution) -> str:
    return reverse("execution_detail", args=[ex.arn])


def run_sync(capture: Any) -> None:
    """One sync cycle, and what it hands to workers once it commits (eager)."""
    with capture(execute=True):
        call_command("sync", stdout=StringIO(), stderr=StringIO())


# --- The journey --------------------------------------------------------------------------------


def test_a_watched_execution_is_posted_once_when_it_finishes(
    runaway: Execution,
    receiver: Receiver,
    viewer_client: Client,
    sfn: Any,
    eager: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    response = viewer_client.post(watch_url(runaway), {"action": "watch"})
    assert response.status_code == 302
    page = viewer_client.get(detail_url(runaway)).content.decode()
    assert "Watched by" in page
    assert "<strong>viewer</strong> (you)" in page
    assert "Stop watching" in page

    run_sync(django_capture_on_commit_callbacks)
    assert receiver.bodies == []  # still running: nothing to say

    sfn.stop_execution(executionArn=runaway.arn, error="Ops.Runaway", cause="INC-7")
    run_sync(django_capture_on_commit_callbacks)

    (body,) = receiver.bodies
    ex = Execution.objects.select_related("state_machine").get(pk=runaway.pk)
    assert ex.status == "ABORTED"
    summary = incident.summary_for(ex, base=BASE)
    assert body["text"] == f"Watched execution finished (watched by viewer)\n{summary}"
    assert "**ABORTED**" in body["text"]
    assert f"{BASE}/executions/{ex.arn}/" in body["text"]
    (block,) = body["blocks"]
    assert block["type"] == "section"
    assert block["text"]["type"] == "mrkdwn"
    assert block["text"]["text"].startswith(
        "Watched execution finished (watched by viewer)\n*ABORTED*"
    )
    note = WatchNotification.objects.get()
    assert (note.attempts, note.last_error) == (1, "")
    assert note.sent_at is not None

    # The sync sees the end again (a listing, a second describe, a redelivered
    # task): no second post.
    Execution.objects.filter(pk=ex.pk).update(needs_describe=True, sync_due_at=ex.start_date)
    run_sync(django_capture_on_commit_callbacks)
    watch.notify(ex.pk)
    tasks.notify_watchers.run(ex.pk)
    assert len(receiver.bodies) == 1
    page = viewer_client.get(detail_url(runaway)).content.decode()
    assert "posted</strong> to the incident channel" in page


def test_nothing_is_posted_after_unwatching(
    runaway: Execution,
    receiver: Receiver,
    viewer_client: Client,
    sfn: Any,
    eager: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    viewer_client.post(watch_url(runaway), {"action": "watch"})
    assert Watch.objects.count() == 1
    response = viewer_client.post(watch_url(runaway), {"action": "unwatch"})
    assert response.status_code == 302
    assert Watch.objects.count() == 0
    sfn.stop_execution(executionArn=runaway.arn)
    run_sync(django_capture_on_commit_callbacks)
    assert Execution.objects.get(pk=runaway.pk).status == "ABORTED"
    assert receiver.bodies == []
    assert not WatchNotification.objects.exists()


def test_everyone_who_watches_is_named_in_one_post(
    runaway: Execution, receiver: Receiver, user: Any, operator: Any, sfn: Any
) -> None:
    watch.watch(runaway, user, base_url="http://ignored")
    watch.watch(runaway, operator, base_url="http://ignored")
    assert not watch.watch(runaway, operator, base_url="")  # already watching
    sfn.stop_execution(executionArn=runaway.arn)
    assert flows.import_execution(runaway.arn).status == "ABORTED"
    assert watch.notify(runaway.pk) == "sent"
    (body,) = receiver.bodies
    assert body["text"].startswith("Watched execution finished (watched by oncall, viewer)")
    assert watch.notify(runaway.pk) == "nobody watches"
    assert len(receiver.bodies) == 1
    assert set(Watch.objects.values_list("notification", flat=True)) == {
        WatchNotification.objects.get().pk
    }


def test_a_watch_claimed_by_another_worker_is_not_posted_again(
    runaway: Execution, receiver: Receiver, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch.watch(runaway, user, base_url="")
    Execution.objects.filter(pk=runaway.pk).update(status="SUCCEEDED")
    watches = watch.pending(runaway)
    # Another worker claims it between our read and our claim.
    other = WatchNotification.objects.create(execution=runaway, text="theirs")
    Watch.objects.update(notification=other)
    monkeypatch.setattr(watch, "pending", lambda ex: watches)
    assert watch.notify(runaway.pk) == "already notified"
    assert receiver.bodies == []
    assert list(WatchNotification.objects.all()) == [other]


# --- Failures of the webhook ---------------------------------------------------------------------


def finished_watch(user: Any) -> Execution:
    ex = execution_row(state_machine_row("orders"), "order-1", "RUNNING")
    watch.watch(ex, user, base_url="http://testserver")
    Execution.objects.filter(pk=ex.pk).update(status="FAILED", error="Boom")
    return ex


def test_a_failed_post_is_retried_with_backoff_and_the_same_text(
    receiver: Receiver, user: Any, eager: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.answers = [500, 503]
    countdowns: list[int] = []
    real = tasks.deliver_watch_notification.apply_async

    def recorded(args: Any, countdown: int) -> Any:
        countdowns.append(countdown)
        return real(args, countdown=countdown)

    monkeypatch.setattr(tasks.deliver_watch_notification, "apply_async", recorded)
    ex = finished_watch(user)

    tasks.notify_watchers.delay(ex.pk)

    assert len(receiver.bodies) == 3
    assert receiver.bodies[0] == receiver.bodies[1] == receiver.bodies[2]
    assert countdowns == list(watch.BACKOFF[:2])
    note = WatchNotification.objects.get()
    assert note.attempts == 3
    assert note.sent_at is not None
    assert note.last_error == ""


def test_it_gives_up_after_the_last_attempt_and_says_why(
    receiver: Receiver, user: Any, eager: None, viewer_client: Client
) -> None:
    receiver.answers = [500] * watch.MAX_ATTEMPTS
    ex = finished_watch(user)
    tasks.notify_watchers.delay(ex.pk)
    assert len(receiver.bodies) == watch.MAX_ATTEMPTS
    note = WatchNotification.objects.get()
    assert note.sent_at is None
    assert note.gave_up_at is not None
    assert (
        note.last_error
        == f"attempt {watch.MAX_ATTEMPTS}: 127.0.0.1 answered HTTP 500: invalid_payload"
    )
    page = viewer_client.get(detail_url(ex)).content.decode()
    assert "not posted" in page
    assert "answered HTTP 500" in page


def test_a_refusal_that_retrying_cannot_fix_is_not_retried(
    receiver: Receiver, user: Any, eager: None
) -> None:
    receiver.answers = [404]
    ex = finished_watch(user)
    tasks.notify_watchers.delay(ex.pk)
    assert len(receiver.bodies) == 1
    note = WatchNotification.objects.get()
    assert (note.attempts, note.sent_at is None, note.gave_up_at is not None) == (1, True, True)


def test_a_webhook_that_hangs_times_out_and_is_retried(
    receiver: Receiver, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook, "TIMEOUT", (1.0, 0.3))
    retries: list[Any] = []
    monkeypatch.setattr(
        tasks.deliver_watch_notification, "apply_async", lambda *a, **k: retries.append((a, k))
    )
    # The answer would take 10 s; the read timeout is 0.3 s. Giving up long
    # before the answer (with seconds of room for a loaded machine) is the
    # timeout at work; the result says which limit it was.
    receiver.delay = 10.0
    ex = finished_watch(user)
    started = time.monotonic()
    result = watch.notify(ex.pk)
    assert time.monotonic() - started < 5.0
    assert result == "attempt 1: 127.0.0.1 did not answer in time"
    assert retries == [
        (((WatchNotification.objects.get().pk, 2),), {"countdown": watch.BACKOFF[0]})
    ]


def test_errors_never_show_the_webhook_secret(settings: Any, user: Any) -> None:
    settings.SFNUI_WATCH_WEBHOOK_URL = f"http://127.0.0.1:9{SECRET_PATH}"  # nothing listens
    ex = finished_watch(user)
    watch.notify(ex.pk)
    note = WatchNotification.objects.get()
    assert "could not be reached" in note.last_error
    assert "secret" not in note.last_error
    assert "T000" not in note.last_error


def test_a_post_twice_claimed_attempt_is_sent_once(receiver: Receiver, user: Any) -> None:
    ex = finished_watch(user)
    watch.notify(ex.pk)
    note = WatchNotification.objects.get()
    # The same attempt delivered again (acks_late): nothing more is sent.
    assert watch.deliver(note.pk, 1) == "already attempted"
    assert watch.deliver(note.pk, 2) == "already attempted"  # it was sent
    assert len(receiver.bodies) == 1


def test_watches_the_broker_lost_are_posted_by_the_sweep(
    receiver: Receiver,
    user: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def down(*args: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.notify_watchers, "delay", down)
    ex = execution_row(state_machine_row("orders"), "order-1", "RUNNING")
    watch.watch(ex, user, base_url="")
    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED")
    with django_capture_on_commit_callbacks(execute=True):
        watch.closed(ex.pk)  # logs, does not raise
    assert receiver.bodies == []
    assert tasks.notify_finished_watches.run() == 1
    assert len(receiver.bodies) == 1
    assert tasks.notify_finished_watches.run() == 0


def test_the_sync_hands_nothing_over_when_nobody_watches(
    django_capture_on_commit_callbacks: Any,
) -> None:
    ex = execution_row(status="RUNNING")
    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED")
    with django_capture_on_commit_callbacks() as callbacks:
        watch.closed(ex.pk)
    assert callbacks == []


# --- The payload ---------------------------------------------------------------------------------


def test_the_slack_text_is_mrkdwn_and_escapes_what_slack_asks() -> None:
    markdown = (
        "**FAILED** · order\\_pipeline · `run <1> & 2`\n"
        "- Error: `a*b`\n"
        "- Cause:\n  ```\n  x < y & **z**\n  ```\n"
        "_Times in UTC._"
    )
    assert webhook.slack_mrkdwn(markdown) == (
        "*FAILED* · order_pipeline · `run &lt;1&gt; &amp; 2`\n"
        "• Error: `a*b`\n"
        "• Cause:\n  ```\n  x &lt; y &amp; **z**\n  ```\n"
        "_Times in UTC._"
    )


# --- The page ------------------------------------------------------------------------------------


def test_the_watch_button_is_on_a_running_execution_only(
    receiver: Receiver, viewer_client: Client
) -> None:
    running = execution_row(status="RUNNING")
    done = execution_row(status="SUCCEEDED")
    body = viewer_client.get(detail_url(running)).content.decode()
    assert 'id="watch"' in body
    assert 'name="action" value="watch"' in body
    assert "Nobody watches it yet" in body
    assert 'id="watch"' not in viewer_client.get(detail_url(done)).content.decode()


def test_without_a_webhook_watch_is_off_and_says_how_to_turn_it_on(
    settings: Any, viewer_client: Client
) -> None:
    settings.SFNUI_WATCH_WEBHOOK_URL = ""
    ex = execution_row(status="RUNNING")
    body = viewer_client.get(detail_url(ex)).content.decode()
    assert "disabled" in body
    assert "SFNUI_WATCH_WEBHOOK_URL" in body
    response = viewer_client.post(watch_url(ex), {"action": "watch"}, follow=True)
    assert "Watch is off on this dashboard" in response.content.decode()
    assert not Watch.objects.exists()


def test_htmx_gets_the_panel_back(receiver: Receiver, viewer_client: Client) -> None:
    ex = execution_row(status="RUNNING")
    response = viewer_client.post(
        watch_url(ex), {"action": "watch"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="watch"')
    assert f"Watching {ex.name}" in body
    assert "Stop watching" in body


def test_a_finished_executions_panel_refreshes_itself_until_the_post_is_settled(
    receiver: Receiver, viewer_client: Client, user: Any
) -> None:
    ex = finished_watch(user)
    waiting = viewer_client.get(watch_url(ex)).content.decode()
    assert waiting.lstrip().startswith('<section id="watch"')
    assert "Finished: telling" in waiting
    assert 'hx-trigger="every' in waiting
    watch.notify(ex.pk)
    settled = viewer_client.get(watch_url(ex)).content.decode()
    assert "posted</strong> to the incident channel" in settled
    assert "for viewer" in settled
    assert 'hx-trigger="every' not in settled


def test_a_finished_execution_cannot_be_watched(receiver: Receiver, viewer_client: Client) -> None:
    ex = execution_row(status="SUCCEEDED")
    response = viewer_client.post(watch_url(ex), {"action": "watch"}, follow=True)
    assert "has already finished" in response.content.decode()
    assert not Watch.objects.exists()


def test_a_watch_made_as_it_finishes_is_still_posted(
    receiver: Receiver,
    user: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(tasks.notify_watchers, "delay", sent.append)
    ex = execution_row(status="RUNNING")
    # The page read it running; the sync stored the end before the watch existed.
    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED")
    with django_capture_on_commit_callbacks(execute=True):
        assert watch.watch(ex, user, base_url="")
    assert sent == [ex.pk]


def test_the_watch_needs_a_post_with_a_csrf_token(receiver: Receiver, user: Any) -> None:
    ex = execution_row(status="RUNNING")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(watch_url(ex), {"action": "watch"}).status_code == 403
    assert not Watch.objects.exists()


def test_anonymous_people_are_sent_to_sign_in(client: Client) -> None:
    ex = execution_row(status="RUNNING")
    response = client.post(watch_url(ex), {"action": "watch"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_an_unknown_action_or_execution_is_refused(
    receiver: Receiver, viewer_client: Client
) -> None:
    ex = execution_row(status="RUNNING")
    assert viewer_client.post(watch_url(ex), {"action": "explode"}).status_code == 400
    assert viewer_client.put(watch_url(ex)).status_code == 405
    unknown = ex.arn.replace(ex.name, "nope")
    assert viewer_client.post(reverse("execution_watch", args=[unknown])).status_code == 404


# --- With a real worker ---------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_posts_the_end_of_a_watched_execution(
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    receiver: Receiver,
    user: Any,
    tmp_path: Path,
) -> None:
    arn = start(make_state_machine("nightly-etl", LONG_WAIT), "etl-1")
    ex = flows.import_execution(arn)
    watch.watch(ex, user, base_url="")
    with Processes(tmp_path, endpoint=fake_aws.url) as processes:
        proc: subprocess.Popen[bytes] = processes.worker(
            SFNUI_WATCH_WEBHOOK_URL=receiver.url, SFNUI_BASE_URL=BASE
        )
        sfn.stop_execution(executionArn=arn, error="Ops.Runaway", cause="INC-7")

        def posted() -> bool:
            assert proc.poll() is None, "the worker died"
            return bool(receiver.bodies)

        wait_for(posted, timeout=90, interval=0.5)
        # More syncs of the finished execution (two more listings of its
        # state machine, however long they take): still one post.
        listings = SyncRun.objects.filter(kind=SyncRun.Kind.LIST, state_machine=ex.state_machine)
        seen = listings.count()
        wait_for(lambda: listings.count() >= seen + 2, timeout=60, interval=0.3)
    (body,) = receiver.bodies
    assert "**ABORTED**" in body["text"]
    assert "(watched by viewer)" in body["text"]
    assert WatchNotification.objects.get().sent_at is not None
