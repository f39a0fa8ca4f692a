"""/executions/?q=: the search inside inputs, outputs, errors and causes, with
its syntax, next to the name search (tests/views/test_list.py) it extends."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Execution
from executions.reads import queries, search
from tests.support.factories import execution_row, state_machine_row

pytestmark = pytest.mark.django_db

URL = "/executions/"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def names(response: Any) -> list[str]:
    return [ex.name for ex in response.context["page"].rows]


def order(n: int, email: str = "jane@example.com", **extra: Any) -> str:
    parts = [f'"orderId": "ord-{n}"', f'"customer": {{"email": "{email}"}}']
    parts += [f'"{k}": "{v}"' for k, v in extra.items()]
    return "{" + ", ".join(parts) + "}"


@pytest.fixture
def shop() -> dict[str, Execution]:
    """Orders in two state machines of two accounts and regions."""
    pay = state_machine_row("payments")
    ship = state_machine_row("shipping", account="210987654321", region="eu-west-1")
    return {
        "paid": execution_row(pay, "pay-1", "SUCCEEDED", T0, input=order(62603)),
        "declined": execution_row(
            pay,
            "pay-2",
            "FAILED",
            T0 + dt.timedelta(minutes=1),
            input=order(62604, "bob@example.org"),
            error="Payment.Declined",
            cause="card declined by the issuer",
        ),
        "timeout": execution_row(
            pay,
            "pay-3",
            "TIMED_OUT",
            T0 + dt.timedelta(minutes=2),
            input=order(62605, "bob@example.org"),
            error="States.Timeout",
            cause="the payment gateway did not answer",
        ),
        "shipped": execution_row(
            ship,
            "ship-1",
            "SUCCEEDED",
            T0 + dt.timedelta(minutes=3),
            input='{"shipmentId": "shp-9"}',
            output='{"delivered": "ord-62603"}',
        ),
    }


def test_an_id_inside_an_input_finds_its_execution_in_any_state_machine(
    viewer_client: Any, shop: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"q": "ord-62603"})
    assert response.status_code == 200
    # Its input, and the shipment whose output names the order.
    assert names(response) == ["ship-1", "pay-1"]
    body = response.content.decode()
    assert "<mark>ord-62603</mark>" in body
    assert '<span class="tag">input</span>' in body
    assert '<span class="tag">output</span>' in body


def test_an_email_finds_every_order_of_that_customer(
    viewer_client: Any, shop: dict[str, Execution]
) -> None:
    assert names(viewer_client.get(URL, {"q": "bob@example.org"})) == ["pay-3", "pay-2"]
    assert names(viewer_client.get(URL, {"q": "BOB@EXAMPLE.ORG", "status": "FAILED"})) == ["pay-2"]


def test_the_other_filters_still_apply(viewer_client: Any, shop: dict[str, Execution]) -> None:
    assert names(viewer_client.get(URL, {"q": "ord-62603", "region": "eu-west-1"})) == ["ship-1"]
    assert names(
        viewer_client.get(URL, {"q": "ord-62603", "state_machine": shop["paid"].state_machine.arn})
    ) == ["pay-1"]


def test_a_scope_searches_one_field_only(viewer_client: Any, shop: dict[str, Execution]) -> None:
    assert names(viewer_client.get(URL, {"q": "input:ord-62603"})) == ["pay-1"]
    assert names(viewer_client.get(URL, {"q": "output:ord-62603"})) == ["ship-1"]
    assert names(viewer_client.get(URL, {"q": "cause:declined"})) == ["pay-2"]
    assert names(viewer_client.get(URL, {"q": "error:ord-62603"})) == []


def test_a_star_ends_a_prefix(viewer_client: Any, shop: dict[str, Execution]) -> None:
    response = viewer_client.get(URL, {"q": "error:Payment.*"})
    assert names(response) == ["pay-2"]
    assert "<mark>Payment</mark>" in response.content.decode()
    everyone = ["ship-1", "pay-3", "pay-2", "pay-1"]
    assert names(viewer_client.get(URL, {"q": "ord-6260*"})) == everyone


def test_a_minus_leaves_executions_out(viewer_client: Any, shop: dict[str, Execution]) -> None:
    assert names(viewer_client.get(URL, {"q": "bob@example.org -error:Timeout"})) == ["pay-2"]
    # With nothing else to find: every execution but those.
    assert names(viewer_client.get(URL, {"q": "-error:Timeout"})) == ["ship-1", "pay-2", "pay-1"]
    assert names(viewer_client.get(URL, {"q": "-name:pay"})) == ["ship-1"]


def test_a_phrase_wants_its_words_in_order(viewer_client: Any, shop: dict[str, Execution]) -> None:
    assert names(viewer_client.get(URL, {"q": '"card declined"'})) == ["pay-2"]
    assert names(viewer_client.get(URL, {"q": '"declined card"'})) == []
    # Two words apart: both, anywhere.
    assert names(viewer_client.get(URL, {"q": "declined card"})) == ["pay-2"]


def test_several_terms_all_hold(viewer_client: Any, shop: dict[str, Execution]) -> None:
    assert names(viewer_client.get(URL, {"q": "name:pay gateway"})) == ["pay-3"]
    assert names(viewer_client.get(URL, {"q": "name:ship gateway"})) == []


def test_a_plain_name_search_works_as_before(
    viewer_client: Any, shop: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"q": "PAY-"})
    assert names(response) == ["pay-3", "pay-2", "pay-1"]
    # Matched by the name, not the data: no snippet.
    assert "<mark>" not in response.content.decode()


def test_words_past_the_indexed_head_are_not_found_and_the_page_says_so(
    viewer_client: Any,
) -> None:
    padding = "x" * search.HEAD
    execution_row(state_machine_row(), "late", input='{"pad": "' + padding + '", "id": "ord-1"}')
    execution_row(state_machine_row(), "early", input='{"id": "ord-2", "pad": "' + padding + '"}')
    response = viewer_client.get(URL, {"q": "ord-1"})
    assert names(response) == []
    assert names(viewer_client.get(URL, {"q": "ord-2"})) == ["early"]
    assert (
        f"Only the first {search.HEAD:,} characters of each input, output and cause are searched"
        in (response.content.decode())
    )


def test_the_index_follows_changes_and_deletions(viewer_client: Any) -> None:
    ex = execution_row(state_machine_row(), "r", "RUNNING", T0, input='{"id": "ord-7"}')
    assert names(viewer_client.get(URL, {"q": "ord-7"})) == ["r"]
    Execution.objects.filter(pk=ex.pk).update(input='{"id": "ord-8"}', output='{"ok": "done"}')
    assert names(viewer_client.get(URL, {"q": "ord-7"})) == []
    assert names(viewer_client.get(URL, {"q": "ord-8 output:done"})) == ["r"]
    # Another column changes: the words stay.
    Execution.objects.filter(pk=ex.pk).update(status="SUCCEEDED", stop_date=T0)
    assert names(viewer_client.get(URL, {"q": "ord-8"})) == ["r"]
    Execution.objects.filter(pk=ex.pk).delete()
    execution_row(state_machine_row(), "other", input='{"id": "ord-9"}')
    assert names(viewer_client.get(URL, {"q": "ord-8"})) == []
    assert names(viewer_client.get(URL, {"q": "ord-9"})) == ["other"]


def test_pages_of_a_common_word_walk_every_match_once_in_order(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short walk, so that the pages cross its end and the index takes over.
    monkeypatch.setattr(queries, "SEARCH_WALK", 4)
    sm = state_machine_row()
    for i in range(12):
        body = order(i) if i % 3 else '{"other": 1}'
        execution_row(sm, f"r-{i:02}", "SUCCEEDED", T0 + dt.timedelta(minutes=i), input=body)
    expected = [f"r-{i:02}" for i in reversed(range(12)) if i % 3]
    seen: list[str] = []
    # Scoped: served by the data's index on both databases (a plain word also
    # searches the name, which SQLite walks: test_list.py has those pages).
    response = viewer_client.get(URL, {"q": "input:jane@example.com", "per_page": 3})
    seen += names(response)
    while response.context["older_url"]:
        response = viewer_client.get(html.unescape(str(response.context["older_url"])))
        seen += names(response)
        assert len(seen) <= len(expected)
    assert seen == expected
    # And back.
    newer = html.unescape(str(response.context["newer_url"]))
    assert names(viewer_client.get(newer)) == expected[3:6]


def test_matches_behind_the_walk_cost_no_more_queries_than_matches_within_it(
    viewer_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the walk of the newest executions comes up short, every match from
    # the index comes in the same statement as the walk's page (one query,
    # not a second one after it).
    monkeypatch.setattr(queries, "SEARCH_WALK", 3)
    sm = state_machine_row()
    for i in range(12):
        word = "farword" if i < 4 else "nearword"
        body = f'{{"note": "{word}"}}'
        execution_row(sm, f"r-{i:02}", "SUCCEEDED", T0 + dt.timedelta(minutes=i), input=body)
    viewer_client.get(URL)  # what a first page fills in the shared cache (Redis)
    counted = {}
    for word, expected in (("nearword", ["r-11", "r-10"]), ("farword", ["r-03", "r-02"])):
        with CaptureQueriesContext(connection) as queries_made:
            response = viewer_client.get(URL, {"q": f"input:{word}", "per_page": 2})
        assert names(response) == expected
        counted[word] = len(queries_made.captured_queries)
    assert counted["farword"] == counted["nearword"], counted


def test_counts_per_status_count_the_matches(
    viewer_client: Any, shop: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"q": "bob@example.org"})
    counts = {c.status: c.count for c in response.context["chips"]}
    assert counts["FAILED"] == "1"
    assert counts["TIMED_OUT"] == "1"
    assert counts["SUCCEEDED"] == "0"


def test_a_search_counts_from_the_newest_window_when_it_has_more_pages(
    viewer_client: Any, shop: dict[str, Execution]
) -> None:
    response = viewer_client.get(URL, {"q": "example", "per_page": 1})
    counts = {c.status: c.count for c in response.context["chips"]}
    assert counts == {
        "RUNNING": "0",
        "SUCCEEDED": "1",
        "FAILED": "1",
        "TIMED_OUT": "1",
        "ABORTED": "0",
        "PENDING_REDRIVE": "0",
    }


def test_the_api_searches_the_data_too(viewer_client: Any, shop: dict[str, Execution]) -> None:
    response = viewer_client.get("/api/executions/", {"q": "input:ord-62604"})
    assert response.status_code == 200
    assert [e["name"] for e in response.json()["executions"]] == ["pay-2"]
    response = viewer_client.get("/api/executions/", {"q": 'input:"ord'})
    assert response.status_code == 400
    assert "quote" in response.content.decode()


def test_the_syntax_is_explained_next_to_the_box(viewer_client: Any) -> None:
    body = viewer_client.get(URL).content.decode()
    assert 'aria-describedby="search-help"' in body
    assert "<code>error:Payment.*</code>" in body
    assert "<code>-error:Timeout</code>" in body


@pytest.mark.parametrize(
    ("q", "says"),
    [
        ('"unclosed', "the quote at character 1 is not closed"),
        ('input:"ord-1', "the quote at character 7 is not closed"),
        ("cause:", "needs a word or a quoted phrase"),
        ("pay*ment", "may only end a word"),
        ("error:&|!", "has no letters or digits"),
        ("x" * 10_000, "longer than 4096 characters"),
        ("a " * 40, "at most 16 terms"),
    ],
)
def test_a_search_it_cannot_read_is_a_400_that_says_why(
    viewer_client: Any, q: str, says: str
) -> None:
    response = viewer_client.get(URL, {"q": q})
    assert response.status_code == 400
    assert html.escape(says, quote=False) in response.content.decode()
    assert "Bad value for <code>q</code>" in response.content.decode()


@pytest.mark.parametrize(
    "q",
    [
        "'; DROP TABLE executions_execution; --",
        "ord' OR '1'='1",
        "back\\slash \\\\ \\'",
        "a & b | !c <-> d:* (e)",
        "input:ord:*A",
        "error:'Payment'",
        "NEAR(a b) AND c OR NOT d",
        "input:{input} : x",
        "^ord $ % _ [x]",
        "ünïcödé 订单 🧾",
        "name:%_\\",
        '"a" "b" -"c"',
        "-",
    ],
)
def test_hostile_searches_are_answered_never_a_500(
    viewer_client: Any, shop: dict[str, Execution], q: str
) -> None:
    response = viewer_client.get(URL, {"q": q})
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert "Bad value for <code>q</code>" in response.content.decode()
    assert Execution.objects.count() == 4


def test_metacharacters_are_the_texts_own(viewer_client: Any) -> None:
    sm = state_machine_row()
    execution_row(sm, "quoted", input='{"note": "it\'s a & b | c"}')
    execution_row(sm, "slashed", input='{"path": "C:\\\\temp\\\\ord-5"}')
    assert names(viewer_client.get(URL, {"q": '"it\'s a & b"'})) == ["quoted"]
    assert names(viewer_client.get(URL, {"q": "input:temp\\ord-5"})) == ["slashed"]


def test_the_query_count_of_a_data_search_is_bounded(
    viewer_client: Any, django_assert_max_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm = state_machine_row()
    for i in range(60):
        execution_row(sm, f"run-{i}", "SUCCEEDED", T0 + dt.timedelta(seconds=i), input=order(i))
    monkeypatch.setattr(queries, "SEARCH_WALK", 10)
    viewer_client.get(URL)
    # session + user + the accounts and regions, the sync bar's two, the
    # walk's end, the page near it, the page from the index, the counts.
    with django_assert_max_num_queries(9):
        response = viewer_client.get(URL, {"q": "input:ord-3"})
    assert names(response) == ["run-3"]
    assert response.context["page"].walked is None
    if connection.vendor == "postgresql":
        # The name or the data: the trigram and the data's index together.
        with django_assert_max_num_queries(9):
            response = viewer_client.get(URL, {"q": "ord-3"})
        assert names(response) == ["run-3"]
    else:
        # SQLite walks the names, SEARCH_WALK at a time, and says so.
        response = viewer_client.get(URL, {"q": "ord-3"})
        assert response.context["page"].walked == 10


DAY = "20260605"
# The names that contain the day, wherever it stands: first, second after
# another day, overlapping one, inside a longer run of digits, after an
# invalid one; and names that do not.
CARRY = (
    "nightly-20260605-0100",
    "nightly-20260605-0200",
    "NIGHTLY-20260605-0300",
    "backfill-20260101-20260605",
    "re-2026060520260606",
    "joined-2026060620260605",
    "x-2020260605",
    "bad-20261305-20260605",
    "20260605",
)
MISS = ("run-20260606", "tail-60605", "year-2026", "b3f1c2d4-0605-4a1b-9c2d-20260604aa")


def day_rows() -> set[str]:
    """Executions of two state machines, the names above started over a year
    (some in the same microsecond), and one whose data has the day as a word."""
    sms = [state_machine_row("nightly"), state_machine_row("backfill")]
    for i, name in enumerate(CARRY * 3 + MISS * 3):
        at = T0 + dt.timedelta(days=(i * 37) % 365, minutes=(i % 4) // 2)
        execution_row(sms[i % 2], f"{name}#{i}", "SUCCEEDED", at)
    execution_row(
        sms[0], "data-only", "FAILED", T0 + dt.timedelta(days=3), input=f'{{"day": {DAY}}}'
    )
    return {f"{name}#{i}" for i, name in enumerate(CARRY * 3)}


def pages(filters: queries.Filters, per_page: int) -> tuple[list[list[str]], list[list[str]]]:
    """Every page following "older", then every page back following "newer"."""
    forward: list[queries.Page] = [queries.page(filters, None, per_page)]
    while forward[-1].older is not None:
        forward.append(queries.page(filters, forward[-1].older, per_page))
        assert len(forward) < 40
    backward: list[queries.Page] = []
    cursor = forward[-1].newer
    while cursor is not None:
        backward.append(queries.page(filters, cursor, per_page))
        cursor = backward[-1].newer
        assert len(backward) < 40
    return [[r.name for r in p.rows] for p in forward], [[r.name for r in p.rows] for p in backward]


@pytest.mark.parametrize("scope", ["", "name:"])
def test_a_days_search_pages_through_every_name_that_carries_it_newest_first(scope: str) -> None:
    """On PostgreSQL a day's search is three ordered pages from three
    indexes (queries._day_members); the rows are those of a plain substring
    test either way, in the list's order, page after page and back."""
    carry = day_rows()
    if not scope:
        carry.add("data-only")
    expected = list(
        Execution.objects.filter(name__in=carry)
        .order_by("-start_date", "-id")
        .values_list("name", flat=True)
    )
    forward, backward = pages(queries.Filters(q=scope + DAY), per_page=4)
    assert [n for p in forward for n in p] == expected
    assert [len(p) for p in forward[:-1]] == [4] * (len(forward) - 1)
    assert backward == forward[-2::-1]
    # With another filter, and a status that only the data-only row has.
    failed, _ = pages(queries.Filters(q=scope + DAY, statuses=("FAILED",)), per_page=4)
    assert failed == ([["data-only"]] if not scope else [[]])


def test_a_days_page_is_one_query_on_postgresql() -> None:
    day_rows()
    with CaptureQueriesContext(connection) as ctx:
        page = queries.page(queries.Filters(q=DAY), None, 5)
    assert len(page.rows) == 5
    # SQLite walks exec_start_idx first, as for any name search.
    assert len(ctx.captured_queries) == (1 if connection.vendor == "postgresql" else 2)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="migration 0014's functions")
def test_the_indexes_functions_find_the_days_the_searchs_pattern_finds() -> None:
    """sfnui_name_day and sfnui_name_more_days (migration 0014) against
    search._DAY on strings made to hold days, near-days and overlaps."""
    import random
    import re

    day = re.compile(search._DAY.pattern, re.ASCII)
    rng = random.Random(5)
    pieces = ["20260605", "2026", "0605", "19991231", "20261305", "2020", "06", "-", "x", "1", "9"]
    texts = ["", "20260605", "2020260605", "2026060520260606", "20200606 05"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t, sfnui_name_day(t), sfnui_name_more_days(t) FROM unnest(%s::text[]) AS t",
            [texts],
        )
        got = cursor.fetchall()
    for text, first, more in got:
        found = day.search(text)
        assert first == (found[0] if found else None), text
        later = found is not None and any(
            day.match(text, i) for i in range(found.start() + 1, len(text))
        )
        assert more is later, text
    assert sum(1 for _, _, more in got if more) > 20


def test_a_day_finds_the_names_that_carry_it_and_no_name_that_has_only_its_tail(
    viewer_client: Any,
) -> None:
    """A day's name search reads the trigram index by the day's tail on
    PostgreSQL (search.name_contains), then tests the day whole."""
    sm = state_machine_row("nightly")
    at = T0
    for name in ("run-20260605-0100", "run-20260605-0200", "run-19960605-0100", "run-20260606"):
        at += dt.timedelta(minutes=1)
        execution_row(sm, name, "SUCCEEDED", at)
    # Its data has the day as a word: found too, as any plain word would be.
    execution_row(sm, "run-x", "SUCCEEDED", at + dt.timedelta(minutes=1), input='{"day": 20260605}')

    found = names(viewer_client.get(URL, {"q": "20260605"}))
    assert found == ["run-x", "run-20260605-0200", "run-20260605-0100"]
    assert names(viewer_client.get(URL, {"q": "name:20260605"})) == found[1:]
    assert names(viewer_client.get(URL, {"q": "19960605"})) == ["run-19960605-0100"]
    assert names(viewer_client.get(URL, {"q": "60605"})) == [
        "run-19960605-0100",
        "run-20260605-0200",
        "run-20260605-0100",
    ]
