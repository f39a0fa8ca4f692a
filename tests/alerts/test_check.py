"""The tick's check: each kind of rule fires and resolves against the cache as
time passes (time-machine), posts once per firing and once per end, waits
while muted, and makes one firing and one post however many workers race."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from alerts import check, notify, rules, tasks
from alerts.models import AlertAudit, AlertFiring, AlertNotification, AlertRule
from executions.models import Execution, MapRun, StateMachine
from tests.support.factories import execution_row, state_machine_row
from tests.support.webhook import SECRET_PATH, Receiver

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
BASE = "https://sfnui.example.com"


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    r = Receiver()
    settings.SFNUI_ALERTS_WEBHOOK_URL = r.url
    settings.SFNUI_BASE_URL = BASE
    yield r
    r.close()


@pytest.fixture
def clock() -> Iterator[Callable[[dt.timedelta], None]]:
    """The time, at T0, moved on by the test (nothing sleeps)."""
    with time_machine.travel(T0, tick=False) as traveller:

        def move(by: dt.timedelta) -> None:
            traveller.shift(by)

        yield move


def make_rule(kind: str, sm: StateMachine | None = None, **fields: Any) -> AlertRule:
    return AlertRule.objects.create(
        name=fields.pop("name", f"{kind.lower()} rule"),
        kind=kind,
        state_machine_arn=sm.arn if sm else "",
        state_machine_name=sm.name if sm else "",
        created_by="oncall",
        **fields,
    )


def deliver_all(report: check.Report) -> list[str]:
    return [notify.deliver(pk, 1).outcome for pk in report.posts]


def open_firings(rule: AlertRule) -> list[AlertFiring]:
    return list(AlertFiring.objects.filter(rule=rule, resolved_at__isnull=True))


# --- Each kind, with time passing ---------------------------------------------------------


def test_a_long_running_execution_fires_once_and_resolves_when_it_ends(
    clock: Callable[[dt.timedelta], None], receiver: Receiver
) -> None:
    sm = state_machine_row("nightly-batch")
    ex = execution_row(sm, "batch-1", "RUNNING", started=T0)
    execution_row(sm, "batch-young", "RUNNING", started=T0 + dt.timedelta(minutes=50))
    other = execution_row(state_machine_row("orders"), "order-1", "RUNNING", started=T0)
    rule = make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=3600, name="batch over 1h")

    clock(dt.timedelta(minutes=59))
    assert check.run().fired == 0

    clock(dt.timedelta(minutes=2))
    report = check.run()
    assert (report.fired, len(report.posts)) == (1, 1)
    (firing,) = open_firings(rule)
    assert firing.subject == ex.arn
    assert firing.execution_id == ex.pk
    assert "running for 1 h 1 m" in firing.detail
    assert other.arn not in {f.subject for f in AlertFiring.objects.all()}
    assert deliver_all(report) == ["sent"]
    (body,) = receiver.bodies
    assert body["text"].startswith("**FIRING** · alert batch over 1h\n")
    assert "An execution of nightly-batch running longer than 1 h" in body["text"]
    assert f"{BASE}/alerts/{rule.pk}/" in body["text"]
    assert f"{BASE}/executions/{ex.arn}/" in body["text"]
    assert "**RUNNING** · nightly-batch · `batch-1`" in body["text"]  # the incident summary

    # More ticks while it runs: nothing more.
    clock(dt.timedelta(minutes=5))
    report = check.run()
    assert (report.fired, report.posts) == (0, [])

    Execution.objects.filter(pk=ex.pk).update(status="ABORTED", stop_date=timezone.now())
    clock(dt.timedelta(seconds=2))
    report = check.run()
    assert (report.resolved, len(report.posts)) == (1, 1)
    assert deliver_all(report) == ["sent"]
    assert receiver.bodies[1]["text"].startswith("**RESOLVED** · alert batch over 1h\n")
    assert "lasted 5 m 2 s" in receiver.bodies[1]["text"]
    assert check.run().posts == []
    assert len(receiver.bodies) == 2
    kinds = list(AlertAudit.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["FIRED", "RESOLVED"]


def test_a_redriven_execution_is_timed_from_its_redrive(
    clock: Callable[[dt.timedelta], None],
) -> None:
    sm = state_machine_row("orders")
    execution_row(
        sm, "again", "RUNNING", started=T0 - dt.timedelta(days=2), redrive_date=T0, redrive_count=1
    )
    rule = make_rule(AlertRule.Kind.LONG_RUNNING, None, duration_seconds=600)
    clock(dt.timedelta(minutes=9))
    assert check.run().fired == 0
    clock(dt.timedelta(minutes=2))
    check.run()
    (firing,) = open_firings(rule)
    assert firing.detail == "running for 11 m since its redrive"


def test_failures_in_a_window_fire_at_the_threshold_and_clear_as_the_window_moves(
    clock: Callable[[dt.timedelta], None], receiver: Receiver
) -> None:
    sm = state_machine_row("payment-capture")
    rule = make_rule(
        AlertRule.Kind.FAILURES,
        sm,
        threshold=3,
        window_seconds=900,
        error="DynamoDB.ResourceNotFoundException",
    )

    def fail(name: str, error: str = "DynamoDB.ResourceNotFoundException") -> Execution:
        now = timezone.now()
        return execution_row(
            sm, name, "FAILED", started=now - dt.timedelta(seconds=30), stop_date=now, error=error
        )

    fail("p-1")
    clock(dt.timedelta(minutes=5))
    fail("p-2")
    fail("p-other", error="Payment.ProviderDeclined")  # another error: not counted
    execution_row(state_machine_row("refunds"), "r-1", "FAILED", stop_date=timezone.now())
    assert check.run().fired == 0

    clock(dt.timedelta(minutes=5))
    latest = fail("p-3")
    report = check.run()
    (firing,) = open_firings(rule)
    assert firing.subject == ""
    assert firing.execution_id == latest.pk
    assert firing.detail.startswith("3 failures in the last 15 m (threshold 3)")
    deliver_all(report)
    (body,) = receiver.bodies
    assert "state_machine=arn" in body["text"]  # the failures, as a list link
    assert "`p-3`" in body["text"]

    # p-1 leaves the 15-minute window: 2 left, under the threshold.
    clock(dt.timedelta(minutes=5, seconds=1))
    report = check.run()
    assert report.resolved == 1
    assert open_firings(rule) == []


def test_a_map_run_over_its_share_of_the_tolerance_fires(
    clock: Callable[[dt.timedelta], None],
) -> None:
    sm = state_machine_row("catalog-reindex")
    parent = execution_row(sm, "reindex-1", "RUNNING", started=T0)
    run = MapRun.objects.create(
        arn=f"arn:aws:states:us-east-1:123456789012:mapRun:catalog-reindex/Items:{'a' * 36}",
        execution=parent,
        status="RUNNING",
        start_date=T0,
        tolerated_failure_percentage=10,
        item_counts={"total": 120, "failed": 5, "timedOut": 2, "succeeded": 40},
        sync_due_at=T0,
    )
    # 7 of 12 tolerated: 58 %.
    rule = make_rule(AlertRule.Kind.MAP_RUN_TOLERANCE, sm, percent=75)
    assert check.run().fired == 0
    MapRun.objects.filter(pk=run.pk).update(
        item_counts={"total": 120, "failed": 8, "timedOut": 1, "succeeded": 50}
    )
    clock(dt.timedelta(seconds=2))
    check.run()
    (firing,) = open_firings(rule)
    assert firing.subject == run.arn
    assert firing.detail == "9 failed of 12 tolerated (75 %)"
    assert firing.execution_id == parent.pk
    assert notify.subject_path(rule, firing) == f"/map-runs/{run.arn}/"

    # It ends: no longer a running Map Run, the firing resolves.
    MapRun.objects.filter(pk=run.pk).update(status="SUCCEEDED", stop_date=timezone.now())
    clock(dt.timedelta(seconds=2))
    assert check.run().resolved == 1


def test_the_tolerance_is_the_lower_limit_and_none_set_tolerates_none() -> None:
    counts = {"total": 200, "failed": 3, "timedOut": 1}
    assert rules.tolerance_used(counts, 10, 5) == (4, 5)
    assert rules.tolerance_used(counts, 1, 50) == (4, 2)
    assert rules.tolerance_used(counts, 0, 0) == (4, 0)
    assert rules.tolerance_used({}, 10, 0) == (0, 0)


def test_a_state_machine_gone_quiet_fires_once_a_listing_confirms_it(
    clock: Callable[[dt.timedelta], None], receiver: Receiver
) -> None:
    sm = state_machine_row("nightly-export", listed_at=T0)
    last = execution_row(sm, "export-1", "SUCCEEDED", started=T0)
    rule = make_rule(AlertRule.Kind.NO_START, sm, duration_seconds=6 * 3600)

    clock(dt.timedelta(hours=6, minutes=1))
    # Quiet for 6 h by the clock, but the last listing is from T0: the sync
    # may simply be behind. Nothing yet.
    assert check.run().fired == 0

    StateMachine.objects.filter(pk=sm.pk).update(listed_at=timezone.now())
    report = check.run()
    (firing,) = open_firings(rule)
    assert firing.execution_id == last.pk
    assert firing.detail.startswith("no start for 6 h 1 m: the last start was 2026-03-02")
    deliver_all(report)
    assert f"{BASE}/state-machines/{sm.arn}/" in receiver.bodies[0]["text"]

    clock(dt.timedelta(minutes=10))
    execution_row(sm, "export-2", "RUNNING", started=timezone.now())
    assert check.run().resolved == 1


def test_a_state_machine_that_never_started_is_quiet_since_the_rule_was_written(
    clock: Callable[[dt.timedelta], None],
) -> None:
    sm = state_machine_row("new-job")
    rule = make_rule(AlertRule.Kind.NO_START, sm, duration_seconds=3600)
    clock(dt.timedelta(hours=1, seconds=5))
    StateMachine.objects.filter(pk=sm.pk).update(listed_at=timezone.now())
    check.run()
    (firing,) = open_firings(rule)
    assert "never started" in firing.detail


def test_a_rule_over_the_cap_fires_for_the_oldest_and_keeps_the_rest_open(
    clock: Callable[[dt.timedelta], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "CAP", 2)
    sm = state_machine_row("fanout")
    runs = [
        execution_row(sm, f"r-{i}", "RUNNING", started=T0 + dt.timedelta(seconds=i))
        for i in range(4)
    ]
    rule = make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=60)
    clock(dt.timedelta(minutes=5))
    check.run()
    assert {f.subject for f in open_firings(rule)} == {runs[0].arn, runs[1].arn}
    # The oldest ends: the next oldest comes in, the other stays open (it is
    # beyond the cap's page, but still running).
    Execution.objects.filter(pk=runs[0].pk).update(status="SUCCEEDED", stop_date=timezone.now())
    check.run()
    assert {f.subject for f in open_firings(rule)} == {runs[1].arn, runs[2].arn}


# --- Posts: once, muted, failing ------------------------------------------------------------


def test_a_muted_rule_records_firings_and_posts_them_when_the_mute_ends(
    clock: Callable[[dt.timedelta], None], receiver: Receiver
) -> None:
    sm = state_machine_row("nightly-batch")
    execution_row(sm, "b-1", "RUNNING", started=T0)
    rule = make_rule(
        AlertRule.Kind.LONG_RUNNING,
        sm,
        duration_seconds=60,
        muted_until=T0 + dt.timedelta(hours=1),
    )
    clock(dt.timedelta(minutes=5))
    report = check.run()
    assert (report.fired, report.posts) == (1, [])
    assert len(open_firings(rule)) == 1

    clock(dt.timedelta(hours=1))
    report = check.run()
    assert (report.fired, len(report.posts)) == (0, 1)
    deliver_all(report)
    assert len(receiver.bodies) == 1


def test_a_firing_that_ends_while_muted_is_never_posted(
    clock: Callable[[dt.timedelta], None], receiver: Receiver
) -> None:
    sm = state_machine_row("nightly-batch")
    ex = execution_row(sm, "b-1", "RUNNING", started=T0)
    make_rule(
        AlertRule.Kind.LONG_RUNNING,
        sm,
        duration_seconds=60,
        muted_until=T0 + dt.timedelta(hours=1),
    )
    clock(dt.timedelta(minutes=5))
    check.run()
    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED", stop_date=timezone.now())
    clock(dt.timedelta(hours=2))
    assert check.run().posts == []
    assert AlertNotification.objects.count() == 0


def test_without_a_webhook_nothing_is_claimed(
    clock: Callable[[dt.timedelta], None], settings: Any
) -> None:
    settings.SFNUI_ALERTS_WEBHOOK_URL = ""
    sm = state_machine_row("nightly-batch")
    execution_row(sm, "b-1", "RUNNING", started=T0)
    make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=60)
    clock(dt.timedelta(minutes=5))
    report = check.run()
    assert (report.fired, report.posts) == (1, [])
    assert AlertNotification.objects.count() == 0


def test_a_failed_post_is_retried_with_the_same_text_then_given_up(
    clock: Callable[[dt.timedelta], None], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.answers = [500] * notify.MAX_ATTEMPTS
    retries: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        tasks.deliver_alert,
        "apply_async",
        lambda args, countdown: retries.append((args, countdown)),
    )
    sm = state_machine_row("nightly-batch")
    execution_row(sm, "b-1", "RUNNING", started=T0)
    make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=60)
    clock(dt.timedelta(minutes=5))
    (pk,) = check.run().posts
    for attempt in range(1, notify.MAX_ATTEMPTS + 1):
        tasks.deliver_alert.run(pk, attempt)
    assert [countdown for _, countdown in retries] == list(notify.BACKOFF)
    assert len({str(b) for b in receiver.bodies}) == 1
    note = AlertNotification.objects.get()
    assert note.gave_up_at is not None
    assert (
        note.last_error
        == f"attempt {notify.MAX_ATTEMPTS}: 127.0.0.1 answered HTTP 500: invalid_payload"
    )
    assert SECRET_PATH not in note.last_error
    # The same attempt delivered again (acks_late): nothing is sent.
    assert notify.deliver(pk, 1).outcome == "already attempted"


def test_a_post_the_broker_lost_is_handed_over_again_by_a_later_check(
    clock: Callable[[dt.timedelta], None], receiver: Receiver
) -> None:
    sm = state_machine_row("nightly-batch")
    execution_row(sm, "b-1", "RUNNING", started=T0)
    make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=60)
    clock(dt.timedelta(minutes=5))
    (pk,) = check.run().posts  # never delivered
    clock(dt.timedelta(seconds=30))
    assert check.run().posts == []
    clock(dt.timedelta(seconds=31))
    assert check.run().posts == [pk]


def test_the_check_makes_no_aws_call_and_records_itself(
    clock: Callable[[dt.timedelta], None], settings: Any
) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # any call would fail loudly
    sm = state_machine_row("nightly-batch", listed_at=T0)
    for kind, fields in [
        (AlertRule.Kind.LONG_RUNNING, {"duration_seconds": 60}),
        (AlertRule.Kind.FAILURES, {"threshold": 1, "window_seconds": 600}),
        (AlertRule.Kind.MAP_RUN_TOLERANCE, {"percent": 50}),
        (AlertRule.Kind.NO_START, {"duration_seconds": 60}),
    ]:
        make_rule(kind, sm, **fields)
    report = check.run()
    assert report.errors == []
    last = check.last_check()
    assert last is not None
    assert (last["rules"], last["at"]) == (4, T0)


def test_a_rule_that_cannot_be_checked_leaves_the_others_checked(
    clock: Callable[[dt.timedelta], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    sm = state_machine_row("nightly-batch")
    execution_row(sm, "b-1", "RUNNING", started=T0)
    make_rule(AlertRule.Kind.FAILURES, sm, threshold=1, window_seconds=600, name="broken")
    good = make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=60)

    def boom(batch: Any, now: dt.datetime) -> dict[int, rules.Found]:
        raise RuntimeError("statement cancelled")

    monkeypatch.setitem(rules.CHECKS, AlertRule.Kind.FAILURES, boom)
    clock(dt.timedelta(minutes=5))
    report = check.run()
    assert report.errors == ["broken: RuntimeError"]
    assert len(open_firings(good)) == 1


# --- Two workers at once --------------------------------------------------------------------


def _race(work: Callable[[], Any], n: int = 2) -> list[Any]:
    """Run `work` in n threads released together, each on its own connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_two_workers_checking_at_once_open_one_firing_and_post_it_once(
    receiver: Receiver,
) -> None:
    now = timezone.now()
    sm = state_machine_row("nightly-batch")
    ex = execution_row(sm, "b-1", "RUNNING", started=now - dt.timedelta(hours=2))
    rule = make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=3600)

    reports = _race(lambda: check.run(now))
    posts = [pk for report in reports for pk in report.posts]
    assert sum(r.fired for r in reports) == 1
    assert len(posts) == 1
    # Both workers are handed the post (a redelivered task, say): one sends.
    outcomes = _race(lambda: notify.deliver(posts[0], 1).outcome)
    assert sorted(outcomes) == ["already attempted", "sent"]
    assert len(receiver.bodies) == 1
    (firing,) = AlertFiring.objects.filter(rule=rule)
    assert (firing.subject, firing.fired_note_id) == (ex.arn, posts[0])
    assert AlertAudit.objects.filter(kind=AlertAudit.Kind.FIRED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_claims_of_the_same_firings_make_one_post(receiver: Receiver) -> None:
    now = timezone.now()
    sm = state_machine_row("nightly-batch")
    for i in range(3):
        execution_row(sm, f"b-{i}", "RUNNING", started=now - dt.timedelta(hours=2))
    rule = make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=3600)
    receiver_url = receiver.url
    assert receiver_url
    # Open the firings without posting, then let two workers claim them at once.
    for finding in rules.evaluate(rule, now).by_subject.values():
        check._open(rule, finding, now)
    pks = list(AlertFiring.objects.values_list("pk", flat=True))
    claimed = _race(lambda: check.claim(rule, AlertNotification.Kind.FIRED, pks, now))
    assert sorted(claimed, key=lambda p: p is None)[1] is None
    (post,) = AlertNotification.objects.all()
    assert set(AlertFiring.objects.values_list("fired_note", flat=True)) == {post.pk}
    assert post.text.count("nightly-batch · b-") == 3


def test_a_quiet_rule_on_a_state_machine_the_cache_forgot_fires_nothing(
    clock: Callable[[dt.timedelta], None],
) -> None:
    sm = state_machine_row("retired-job", listed_at=T0)
    rule = make_rule(AlertRule.Kind.NO_START, sm, duration_seconds=60)
    StateMachine.objects.filter(pk=sm.pk).delete()
    clock(dt.timedelta(hours=2))
    report = check.run()
    assert (report.fired, report.errors) == (0, [])
    assert open_firings(rule) == []


def test_a_tick_costs_a_few_queries_whatever_the_number_of_rules(
    clock: Callable[[dt.timedelta], None], receiver: Receiver, django_assert_max_num_queries: Any
) -> None:
    machines = [state_machine_row(f"job-{i}", listed_at=T0) for i in range(5)]
    for sm in machines:
        execution_row(sm, f"{sm.name}-1", "SUCCEEDED", started=T0)
        make_rule(AlertRule.Kind.LONG_RUNNING, sm, duration_seconds=3600)
        make_rule(AlertRule.Kind.FAILURES, sm, threshold=2, window_seconds=600, error="E")
        make_rule(AlertRule.Kind.MAP_RUN_TOLERANCE, sm, percent=50)
        make_rule(AlertRule.Kind.NO_START, sm, duration_seconds=3600)
    every = list(AlertRule.objects.all())
    # One query per kind; the failures' also reads its state machines' keys.
    with django_assert_max_num_queries(5):
        found, errors = rules.evaluate_all(every, timezone.now())
    assert (len(found), errors) == (20, [])
    assert not any(f.held for f in found.values())
