"""The accounts and regions the filters offer (reads/places.py): shared
through the cache when there is Redis, forgotten when a state machine of a
new place arrives, and asked of the database when the cache is down."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches

from executions.models import StateMachine
from executions.reads import places
from tests.support.factories import state_machine_row

pytestmark = pytest.mark.django_db

EU = ("210987654321", "eu-west-1")


@pytest.fixture
def shared(settings: Any) -> None:
    """A shared cache of this process's memory, as Redis would be (Django
    rebuilds its caches when CACHES changes)."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "t"}
    }


def test_with_redis_the_places_are_asked_of_the_database_once(
    shared: None, django_assert_num_queries: Any
) -> None:
    state_machine_row("orders")
    with django_assert_num_queries(1):
        first = places.known()
    with django_assert_num_queries(0):
        assert places.known() == first
    assert len(first.pairs) == 1


def test_a_state_machine_of_a_new_account_shows_at_once(shared: None) -> None:
    state_machine_row("orders")
    assert not places.known().several
    state_machine_row("orders", account=EU[0], region=EU[1])
    assert EU in places.known().pairs
    assert places.known().several


def test_a_bulk_insert_is_seen_after_forget(shared: None) -> None:
    state_machine_row("orders")
    places.known()
    StateMachine.objects.bulk_create(
        [
            StateMachine(
                arn=f"arn:aws:states:{EU[1]}:{EU[0]}:stateMachine:bulk",
                name="bulk",
                account=EU[0],
                region=EU[1],
                definition="{}",
            )
        ]
    )
    # No post_save for a bulk insert: what was shared stands until forgotten.
    assert EU not in places.known().pairs
    places.forget()
    assert EU in places.known().pairs


def test_a_cache_that_is_down_leaves_the_database_to_answer(
    shared: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Redis is down")

    state_machine_row("orders")
    shared_cache = caches["default"]  # this test's own (see `shared`)
    for method in ("get", "set", "delete"):
        monkeypatch.setattr(shared_cache, method, down)
    assert places.known().pairs == (("123456789012", "us-east-1"),)
    state_machine_row("orders", account=EU[0], region=EU[1])  # forget() must not raise
    assert EU in places.known().pairs


def test_without_redis_every_call_asks_the_database(
    settings: Any, django_assert_num_queries: Any
) -> None:
    settings.REDIS_URL = ""
    state_machine_row("orders")
    for _ in range(2):
        with django_assert_num_queries(1):
            places.known()
