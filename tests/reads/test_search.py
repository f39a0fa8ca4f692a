"""The search's parser (reads/search.py): what it reads, what it refuses and
why, and the snippet that marks a row's match."""

from __future__ import annotations

import pytest

from executions.reads.search import (
    MAX_TERMS,
    Search,
    SearchSyntaxError,
    Term,
    parse,
    snippet,
)


def test_one_word_is_a_search_of_the_name_or_the_data() -> None:
    found = parse("ord-62603")
    assert found == Search((Term("ord-62603"),))
    assert found.either == "ord-62603"
    assert found.data == (Term("ord-62603"),)


def test_a_word_without_letters_or_digits_searches_the_name_only() -> None:
    found = parse("--")
    assert found.either == "--"
    assert found.data == ()


def test_scopes_phrases_prefixes_and_exclusions_are_read() -> None:
    found = parse('input:ord-62603 ERROR:Payment.* -error:Timeout "card declined" name:pay')
    assert found.terms == (
        Term("ord-62603", scope="input"),
        Term("Payment.", scope="error", prefix=True),
        Term("Timeout", scope="error", exclude=True),
        Term("card declined", phrase=True),
        Term("pay", scope="name"),
    )
    assert found.either == ""
    assert found.data == (
        Term("ord-62603", scope="input"),
        Term("Payment.", scope="error", prefix=True),
        Term("card declined", phrase=True),
    )
    assert found.not_data == (Term("Timeout", scope="error", exclude=True),)
    assert found.names == ("pay",)


def test_a_lone_word_that_starts_with_a_dash_is_a_name_search_as_before() -> None:
    assert parse("-cdb6").either == "-cdb6"


def test_pasted_json_and_punctuation_between_words_are_read_as_words() -> None:
    found = parse('"orderId": "ord-62603", a & b href="x"')
    assert [t.text for t in found.terms] == ["orderId", "ord-62603", "a", "b", 'href="x"']
    assert found.terms[0].phrase


def test_a_word_that_only_looks_like_a_scope_is_a_word() -> None:
    # A time from a log, a URL: not a field name before the colon.
    assert parse("2026-03-15T10:00:00").either == "2026-03-15T10:00:00"


@pytest.mark.parametrize(
    ("q", "says"),
    [
        ('"card declined', "the quote at character 1 is not closed"),
        ('input:"ord', "the quote at character 7 is not closed"),
        ("input:", "“input:” needs a word or a quoted phrase right after it"),
        ("error: Timeout", "“error:” needs a word"),
        ("pay*ment", "“*” may only end a word"),
        ("- ord", "a “-” must stand right before the term"),
        ('""', "has nothing to search for"),
        ("& |", "has no letters or digits to search for"),
        ('-"!!"', "has no letters or digits"),
        ("input:!!!", "has no letters or digits"),
        ("a " * (MAX_TERMS + 1), f"at most {MAX_TERMS} terms"),
        ("input:" + "x" * 300, "a term is at most 256 characters"),
    ],
)
def test_what_it_cannot_read_is_refused_with_the_reason(q: str, says: str) -> None:
    with pytest.raises(SearchSyntaxError) as refused:
        parse(q)
    assert says in str(refused.value)


def test_the_snippet_marks_the_match_where_it_is() -> None:
    heads = {
        "input": '{"customer": "jane@example.com", "orderId": "ord-62603", "lines": []}',
        "output": None,
        "error": "Payment.Declined",
        "cause": None,
    }
    found = snippet(parse("ORD-62603"), heads)
    assert found is not None
    assert found.field == "input"
    assert ("ord-62603", True) in found.parts
    assert "".join(p for p, _ in found.parts) == heads["input"]

    scoped = snippet(parse("error:payment*"), heads)
    assert scoped is not None
    assert scoped.field == "error"
    assert scoped.parts == (("Payment", True), (".Declined", False))


def test_the_snippet_is_cut_around_the_match_and_says_so() -> None:
    text = "x" * 500 + " ord-1 " + "y" * 500
    found = snippet(parse("ord-1"), {"input": text})
    assert found is not None
    assert found.parts[0] == ("…", False)
    assert found.parts[-1] == ("…", False)
    assert sum(len(p) for p, _ in found.parts) < 200


def test_no_snippet_for_a_row_that_matched_by_its_name() -> None:
    assert snippet(parse("order"), {"input": '{"a": 1}', "error": None}) is None


def test_a_word_matches_whole_words_only_unless_it_ends_with_a_star() -> None:
    heads = {"input": '{"id": "ord-626030"}'}
    assert snippet(parse("input:ord-62603"), heads) is None
    assert snippet(parse("input:ord-62603*"), heads) is not None
