"""schedule.py and tasks.py: what is due gets handed out once, and work
whose worker died comes back when its lease ends."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.db import OperationalError
from django.utils import timezone

from executions import budget, tasks
from executions.models import Execution, StateMachine
from executions.sync import flows, runs, schedule
from executions.sync.locks import held
from tests.support import factories

pytestmark = pytest.mark.django_db


def test_due_work_is_claimed_once_and_comes_back_after_the_lease(settings: Any) -> None:
    settings.SFNUI_SYNC_LEASE = 60
    sm = factories.state_machine_row(list_due_at=timezone.now())
    ex = factories.execution_row(sm, status="RUNNING", sync_due_at=timezone.now())
    settled = factories.execution_row(sm, status="SUCCEEDED", sync_due_at=None)

    first = schedule.claim_due_work()
    assert first.state_machines == [sm.pk]
    assert first.batches == [("default", "us-east-1", [ex.pk])]
    assert first.discoveries == [("default", "us-east-1")]

    second = schedule.claim_due_work()
    assert second.state_machines == []
    assert second.batches == []
    assert second.discoveries == []  # discovery is claimed for its interval

    with time_machine.travel(timezone.now() + dt.timedelta(seconds=61)):
        again = schedule.claim_due_work()
    assert again.batches == [("default", "us-east-1", [ex.pk])]
    assert settled.pk not in [pk for _, _, pks in again.batches for pk in pks]


def test_batches_follow_the_configured_size_and_what_the_workers_get_through(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_SYNC_BATCH = 3
    sm = factories.state_machine_row()
    for _ in range(7):
        factories.execution_row(sm, status="RUNNING", sync_due_at=timezone.now())
    sent: list[Any] = []
    monkeypatch.setattr(tasks.sync_executions, "delay", lambda *a: sent.append(a))
    tasks.sync_tick()
    # Two batches in flight at most per identity and region: the rest waits
    # for the workers, not in the broker's queue ahead of the listings.
    assert [len(pks) for pks, _, _, _ in sent] == [3, 3]
    assert schedule.in_flight("default", "us-east-1") == 2
    cache.delete("lock:sync-tick")
    tasks.sync_tick()
    assert len(sent) == 2
    schedule.batch_done(sent[0][3])
    tasks.sync_tick()
    assert [len(pks) for pks, _, _, _ in sent] == [3, 3, 1]


def test_the_slot_of_a_batch_whose_worker_died_frees_itself_after_a_lease(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_SYNC_LEASE = 30
    written = _timeouts(monkeypatch)
    first = schedule.batch_sent("default", "us-east-1")
    second = schedule.batch_sent("default", "us-east-1")
    assert first
    assert second
    assert first != second
    # One key a slot, written once with the lease as its expiry: nothing
    # rewrites it later with another expiry (a counter's incr on the database
    # cache did, and two killed batches held the workers back for good).
    slots = [slot.partition("=")[0] for slot in (first, second)]
    assert [written[key] for key in slots] == [30, 30]
    # Every slot taken: a batch still goes (the tick and a listing raced),
    # uncounted.
    assert schedule.batch_sent("default", "us-east-1") is None
    assert schedule.in_flight("default", "us-east-1") == 2
    assert schedule.in_flight("default", "eu-west-1") == 0
    # Nobody gives the slots back (the workers were killed): the lease ends.
    cache.delete_many(slots)
    assert schedule.in_flight("default", "us-east-1") == 0
    third = schedule.batch_sent("default", "us-east-1")
    assert third is not None
    # The dead worker's late "done" does not free the slot a live batch holds.
    schedule.batch_done(first)
    schedule.batch_done(second)
    assert schedule.in_flight("default", "us-east-1") == 1
    schedule.batch_done(third)
    assert schedule.in_flight("default", "us-east-1") == 0


def test_the_tick_follows_the_history_budget(settings: Any) -> None:
    settings.SFNUI_API_SHARE = 0.5
    settings.SFNUI_API_QUOTAS = {"GetExecutionHistory": (400, 20)}
    settings.SFNUI_SYNC_TICK = 5
    # 10 calls a second for 5 seconds, plus a tenth of the 200-token burst
    assert schedule.executions_per_tick() == 70


def test_a_viewed_running_execution_is_due_now_unless_just_synced(settings: Any) -> None:
    settings.SFNUI_VIEWED_INTERVAL = 3
    later = timezone.now() + dt.timedelta(minutes=1)
    stale = factories.execution_row(
        status="RUNNING", synced_at=timezone.now() - dt.timedelta(seconds=30), sync_due_at=later
    )
    fresh = factories.execution_row(status="RUNNING", synced_at=timezone.now(), sync_due_at=later)
    done = factories.execution_row(status="SUCCEEDED")
    assert schedule.make_due(stale)
    assert not schedule.make_due(fresh)
    assert not schedule.make_due(done)
    stale.refresh_from_db()
    assert stale.sync_due_at is not None
    assert stale.sync_due_at <= timezone.now()


def test_a_lock_is_exclusive_and_released() -> None:
    with held("thing", timeout=30) as first:
        assert first
        with held("thing", timeout=30) as second:
            assert not second
    with held("thing", timeout=30) as again:
        assert again


def test_a_lock_of_a_dead_holder_expires() -> None:
    assert cache.add("lock:orphan", "someone-killed", timeout=1)
    with held("orphan", timeout=30) as mine:
        assert not mine
    cache.delete("lock:orphan")  # what expiry does; the DB cache cannot be time-travelled
    with held("orphan", timeout=30) as mine:
        assert mine


def test_the_tick_enqueues_what_is_due(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sm = factories.state_machine_row(list_due_at=timezone.now())
    ex = factories.execution_row(sm, status="RUNNING", sync_due_at=timezone.now())
    sent: list[tuple[str, tuple[Any, ...]]] = []
    for name in ("discover", "list_state_machine", "sync_executions"):
        task = getattr(tasks, name)
        monkeypatch.setattr(task, "delay", lambda *a, _n=name: sent.append((_n, a)))
    result = tasks.sync_tick()
    assert result == {"discoveries": 1, "state_machines": 1, "executions": 1}
    assert ("list_state_machine", (sm.pk,)) in sent
    batch = next(a for n, a in sent if n == "sync_executions")
    assert batch[:3] == ([ex.pk], "us-east-1", "default")
    # It carries the slot it holds, for the worker to give back.
    assert batch[3]
    assert schedule.in_flight("default", "us-east-1") == 1


def test_a_tick_that_overlaps_another_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    factories.state_machine_row(list_due_at=timezone.now())
    with held("sync-tick", timeout=30):
        assert tasks.sync_tick() == {}
    due_at = StateMachine.objects.get().list_due_at
    assert due_at is not None
    assert due_at <= timezone.now()


def test_a_state_machine_task_skips_a_machine_being_listed() -> None:
    sm = factories.state_machine_row()
    with held(f"state-machine:{sm.pk}", timeout=30):
        assert tasks.list_state_machine(sm.pk) == "busy"
    assert tasks.list_state_machine(999_999) == "gone"


def test_sync_now_of_an_unknown_execution_does_nothing() -> None:
    assert (
        tasks.sync_execution_now("arn:aws:states:us-east-1:123456789012:execution:a:b") == "unknown"
    )
    assert not Execution.objects.exists()


def test_what_a_listing_flagged_goes_before_routine_rereads(settings: Any) -> None:
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {"GetExecutionHistory": (0, 1)}  # 10 per tick
    settings.SFNUI_SYNC_TICK = 10
    sm = factories.state_machine_row()
    long_due = timezone.now() - dt.timedelta(minutes=5)
    routine = [
        factories.execution_row(sm, status="RUNNING", sync_due_at=long_due) for _ in range(15)
    ]
    ended = factories.execution_row(
        sm, status="RUNNING", needs_describe=True, sync_due_at=timezone.now()
    )
    work = schedule.claim_due_work()
    claimed = [pk for _, _, pks in work.batches for pk in pks]
    assert len(claimed) == 10
    assert claimed[0] == ended.pk
    assert set(claimed[1:]) <= {ex.pk for ex in routine}


def test_a_listing_hands_what_it_flagged_to_a_worker_at_once(
    fake_aws: Any, monkeypatch: pytest.MonkeyPatch, make_state_machine: Any, start: Any, sfn: Any
) -> None:
    from tests.support.helpers import PASS, wait_until_finished

    sm_arn = make_state_machine("hello", PASS)
    arns = [start(sm_arn, f"hello-{i}") for i in range(3)]
    wait_until_finished(sfn, arns)
    from executions.sync import flows

    flows.discover_state_machines("us-east-1")
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.sync_executions, "delay", lambda *a: sent.append(a))
    tasks.list_state_machine(StateMachine.objects.get(arn=sm_arn).pk)
    assert len(sent) == 1
    pks, region, account, _slot = sent[0]
    assert (region, account) == ("us-east-1", "default")
    assert sorted(pks) == sorted(Execution.objects.values_list("pk", flat=True))
    # Claimed: the next tick does not hand them out again.
    assert schedule.claim_due_work().batches == []


def _timeouts(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The expiry each cache key was written with. Expiry itself is simulated
    by deleting the key: Redis keeps its own clock, beyond time_machine's reach."""
    written: dict[str, Any] = {}
    for method in ("add", "set"):
        real = getattr(cache, method)

        def spy(key: str, value: Any, timeout: Any = None, _real: Any = real, **kw: Any) -> Any:
            written[key] = timeout
            return _real(key, value, timeout=timeout, **kw)

        monkeypatch.setattr(cache, method, spy)
    return written


def test_a_discovery_whose_worker_died_is_claimed_again_after_the_lease(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_SYNC_LEASE = 60
    settings.SFNUI_DISCOVER_INTERVAL = 3600
    written = _timeouts(monkeypatch)
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]
    # Claimed for a lease, not for the whole interval.
    assert written["discover-claimed:default:us-east-1"] == 60
    # Its worker was killed: nobody says it went through.
    assert schedule.claim_due_work().discoveries == []
    cache.delete("discover-claimed:default:us-east-1")  # the lease ends
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]


def test_a_discovery_that_failed_is_claimed_again_soon_not_after_the_lease(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throttled or unreachable discovery: a fresh install would otherwise
    know no state machine for a whole lease (CI saw a minute-long throttling
    storm pass with the three discovery calls all throttled, and no retry)."""
    settings.SFNUI_SYNC_LEASE = 120
    settings.SFNUI_DISCOVER_INTERVAL = 3600
    written = _timeouts(monkeypatch)
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]
    assert written["discover-claimed:default:us-east-1"] == 120
    monkeypatch.setattr(
        flows,
        "discover_state_machines",
        lambda region, account, describe: runs.Stats(errors=["ThrottlingException"]),
    )
    tasks.discover("us-east-1", "default")
    assert written["discover-claimed:default:us-east-1"] == schedule.DISCOVERY_RETRY_SECONDS
    assert "discovered:default:us-east-1" not in written
    assert schedule.claim_due_work().discoveries == []  # not before the retry
    cache.delete("discover-claimed:default:us-east-1")  # the retry's time comes
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]


def test_a_discovery_that_went_through_is_not_due_again_within_its_interval(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_SYNC_LEASE = 60
    settings.SFNUI_DISCOVER_INTERVAL = 3600
    written = _timeouts(monkeypatch)
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]
    monkeypatch.setattr(
        flows, "discover_state_machines", lambda region, account, describe: runs.Stats()
    )
    tasks.discover("us-east-1")
    assert written["discovered:default:us-east-1"] == 3600
    cache.delete("discover-claimed:default:us-east-1")  # the lease ends
    assert schedule.claim_due_work().discoveries == []
    cache.delete("discovered:default:us-east-1")  # the interval ends
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]


def test_a_discovery_that_failed_is_retried_after_the_lease(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]
    failed = runs.Stats(errors=["AWS unreachable in ListStateMachines"])
    monkeypatch.setattr(flows, "discover_state_machines", lambda region, account, describe: failed)
    tasks.discover("us-east-1")
    cache.delete("discover-claimed:default:us-east-1")  # the lease ends
    assert schedule.claim_due_work().discoveries == [("default", "us-east-1")]


def test_a_tick_killed_while_it_holds_its_lock_blocks_the_schedule_for_a_lease_at_most(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_SYNC_LEASE = 10
    settings.SFNUI_SYNC_TICK = 5
    taken: list[float] = []
    real_add = cache.add

    def add(key: str, value: Any, timeout: Any = None, **kwargs: Any) -> bool:
        if key == "lock:sync-tick":
            taken.append(timeout)
        return bool(real_add(key, value, timeout=timeout, **kwargs))

    monkeypatch.setattr(cache, "add", add)
    tasks.sync_tick()
    assert taken == [10]


def test_what_a_listing_flagged_waits_for_the_tick_while_the_workers_are_full(
    settings: Any,
) -> None:
    settings.SFNUI_SYNC_BATCH = 5
    sm = factories.state_machine_row()
    flagged = [
        factories.execution_row(sm, status="SUCCEEDED", needs_describe=True, sync_due_at=None)
        for _ in range(8)
    ]
    Execution.objects.update(sync_due_at=timezone.now())
    arns = [ex.arn for ex in flagged]
    first = schedule.batch_sent("default", "us-east-1")
    # One batch in flight: room for one more (5 executions), no more.
    assert [len(pks) for _, _, pks in schedule.claim_flagged(arns)] == [5]
    schedule.batch_sent("default", "us-east-1")
    assert schedule.claim_flagged(arns) == []
    # Still due: the tick hands them out, flagged first, once a batch is done.
    schedule.batch_done(first)
    claimed = [pk for _, _, pks in schedule.claim_due_work().batches for pk in pks]
    assert len(claimed) == 3


def test_a_discovery_task_hands_the_definitions_out_in_small_batches(
    fake_aws: Any, make_state_machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.helpers import PASS

    for i in range(45):
        make_state_machine(f"sm-{i:02d}", PASS)
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.describe_state_machines, "delay", lambda *a: sent.append(a))
    tasks.discover("us-east-1", "default")
    # Listed at once (due now), described by three tasks between the listings.
    assert StateMachine.objects.filter(described_at__isnull=True).count() == 45
    assert [len(pks) for pks, _, _ in sent] == [20, 20, 5]
    for pks, region, account in sent:
        tasks.describe_state_machines(pks, region, account)
    assert not StateMachine.objects.filter(described_at__isnull=True).exists()
    assert StateMachine.objects.exclude(definition="").count() == 45


def _fails_once(error: Exception) -> tuple[list[tuple[Any, ...]], Any]:
    seen: list[tuple[Any, ...]] = []

    def run(*args: Any) -> Any:
        seen.append(args)
        if len(seen) == 1:
            raise error
        return runs.Stats()

    return seen, run


def test_a_listing_that_met_a_database_outage_is_retried_soon_not_after_the_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sm = factories.state_machine_row()
    seen, run = _fails_once(OperationalError("database is locked"))
    monkeypatch.setattr(flows, "list_state_machine", run)
    retries: list[dict[str, Any]] = []
    real_retry = tasks.list_state_machine.retry

    def retry(*args: Any, **kwargs: Any) -> Any:
        retries.append(kwargs)
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(tasks.list_state_machine, "retry", retry)
    result = tasks.list_state_machine.apply(args=(sm.pk,))
    assert result.successful()
    assert len(seen) == 2
    assert [r["countdown"] for r in retries] == [tasks.DB_RETRY_SECONDS]


def test_a_batch_that_met_a_database_outage_is_retried_and_gives_its_slot_back_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slot = schedule.batch_sent("default", "us-east-1")
    assert schedule.in_flight("default", "us-east-1") == 1
    seen, run = _fails_once(OperationalError("database is locked"))
    monkeypatch.setattr(flows, "sync_executions", run)
    result = tasks.sync_executions.apply(args=([1, 2], "us-east-1", "default", slot))
    assert result.successful()
    assert len(seen) == 2
    assert schedule.in_flight("default", "us-east-1") == 0


def test_a_full_batch_that_went_through_hands_out_the_next_at_once_while_the_budget_lasts(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SFNUI_SYNC_BATCH = 3
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {"GetExecutionHistory": (6, 0.001)}
    outcome = runs.Stats()
    monkeypatch.setattr(flows, "sync_executions", lambda *a: outcome)
    ticks: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.sync_tick, "delay", lambda *a: ticks.append(a))

    def batch(pks: list[int]) -> None:
        slot = schedule.batch_sent("default", "us-east-1")
        assert tasks.sync_executions.apply(args=(pks, "us-east-1", "default", slot)).successful()
        assert schedule.in_flight("default", "us-east-1") == 0

    # A short batch: nothing more was due when it was handed out.
    batch([1, 2])
    assert ticks == []
    # A full one: a backlog, and the budget holds another batch: the next tick now.
    batch([1, 2, 3])
    assert len(ticks) == 1
    # Throttled, or left unfinished: beat's tick decides when, not this.
    outcome.throttled = True
    batch([1, 2, 3])
    outcome.throttled = False
    outcome.unfinished = [3]
    batch([1, 2, 3])
    assert len(ticks) == 1
    # The budget cannot pay for a whole batch: it waits for the refill.
    outcome.unfinished = []
    budget.drain("us-east-1", "GetExecutionHistory", pause=0)
    batch([1, 2, 3])
    assert len(ticks) == 1


def test_a_bug_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    sm = factories.state_machine_row()
    seen, run = _fails_once(OperationalError("no such column: executions_execution.nope"))
    monkeypatch.setattr(flows, "list_state_machine", run)
    result = tasks.list_state_machine.apply(args=(sm.pk,))
    assert result.failed()
    assert len(seen) == 1
