"""The list's search (`q`): its syntax, the SQL conditions it becomes, and the
snippet that shows each row's match.

What a person types:

- one word, as before: executions whose name contains it, or whose input,
  output, error or cause contain it as a word (an order id, an email, an
  error class): `ord-62603`, `jane@example.com`, `States.Timeout`;
- several words: the data contains every one (not the name);
- `"a phrase"`: those words in that order;
- `input:`, `output:`, `error:`, `cause:` before a word or phrase: only
  there; `name:` a part of the name;
- `*` at the end of a word: any word that starts so (`error:Payment.*`);
- `-` before a term: executions without it (`-error:Timeout`). A lone word
  that starts with `-` (`-cdb6`) is searched as typed.

The words are those of the database's own text search over the first HEAD
characters of each field (migration 0012: a tsvector on PostgreSQL, FTS5 on
SQLite), never a scan of the payloads. Anything the parser cannot read is a
SearchSyntaxError that says what is wrong, which the form turns into a 400.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import BooleanField, CharField, Expression, F, Func, Q, Value
from django.db.models.functions import Concat
from django.db.models.lookups import IContains
from django.db.models.sql.compiler import SQLCompiler

# Characters of each field that are indexed (migration 0012 says the same).
HEAD = 4096
FIELDS = ("input", "output", "error", "cause")
_WEIGHTS = {"input": "A", "output": "B", "error": "C", "cause": "D"}
_SCOPES = (*FIELDS, "name")
# A query is a handful of terms, not a document.
MAX_TERMS = 16
MAX_TERM = 256
_SCOPE = re.compile(r"(input|output|error|cause|name):", re.IGNORECASE)
# A day as names carry it: YYYYMMDD.
_DAY = re.compile(r"(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")
# The name as an expression no index serves (see name_contains).
_UNINDEXED_NAME = Concat(F("name"), Value(""), output_field=CharField())
# What both databases' tokenizers keep: letters and digits.
_WORD = re.compile(r"[^\W_]+")


class SearchSyntaxError(ValueError):
    """The search cannot be read; the message says why and how to write it."""


@dataclass(frozen=True)
class Term:
    # As typed, without its scope, quotes, `-` or trailing `*`.
    text: str
    # "" for any of FIELDS, else one of them or "name".
    scope: str = ""
    exclude: bool = False
    prefix: bool = False
    phrase: bool = False


@dataclass(frozen=True)
class Search:
    terms: tuple[Term, ...]

    @property
    def either(self) -> str:
        """The one plain word of a search that is just that: the name
        contains it, or the data has it. "" for any other search."""
        if len(self.terms) != 1:
            return ""
        term = self.terms[0]
        plain = not (term.scope or term.exclude or term.phrase)
        return term.text if plain else ""

    @property
    def data(self) -> tuple[Term, ...]:
        """The terms the data must have (with their words)."""
        if self.either:
            term = self.terms[0]
            return (term,) if _WORD.search(term.text) else ()
        return tuple(t for t in self.terms if t.scope != "name" and not t.exclude)

    @property
    def not_data(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.scope != "name" and t.exclude)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.text for t in self.terms if t.scope == "name" and not t.exclude)

    @property
    def not_names(self) -> tuple[str, ...]:
        return tuple(t.text for t in self.terms if t.scope == "name" and t.exclude)


@functools.lru_cache(maxsize=256)
def parse(q: str) -> Search:
    """The terms of `q`; raises SearchSyntaxError for what it cannot read."""
    terms: list[Term] = []
    text = q.strip()
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        start = i
        exclude = False
        if text[i] == "-" and i + 1 < len(text) and not text[i + 1].isspace():
            exclude = True
            i += 1
        elif text[i] == "-":
            raise SearchSyntaxError(
                "a “-” must stand right before the term it leaves out (-error:Timeout)"
            )
        scope = ""
        found = _SCOPE.match(text, i)
        if found:
            scope = found[1].lower()
            i = found.end()
            if i == len(text) or text[i].isspace():
                raise SearchSyntaxError(
                    f"“{found[0]}” needs a word or a quoted phrase right after it "
                    f"({found[0]}ord-62603)"
                )
        phrase = False
        if text[i] == '"':
            close = text.find('"', i + 1)
            if close == -1:
                raise SearchSyntaxError(
                    f"the quote at character {i + 1} is not closed: "
                    'put a phrase between two quotes ("card declined")'
                )
            # What follows a closing quote ("orderId": pasted) starts a new term.
            word, phrase, i = text[i + 1 : close], True, close + 1
        else:
            end = i
            while end < len(text) and not text[end].isspace():
                end += 1
            # A quote inside a word (href="x") is punctuation, as in the data.
            word, i = text[i:end], end
        prefix = False
        if i < len(text) and text[i] == "*":
            word, i = word + "*", i + 1
        if word.endswith("*"):
            word, prefix = word.rstrip("*"), True
        if "*" in word:
            raise SearchSyntaxError(
                f"“*” may only end a word (Payment*), not stand inside “{_cut(word)}”"
            )
        terms.append(Term(word, scope, exclude, prefix, phrase))
        if len(terms) > MAX_TERMS:
            raise SearchSyntaxError(f"at most {MAX_TERMS} terms in one search")
        _check(terms[-1], text[start:i])
    # "-cdb6" alone is a name search, as it always was: "-" needs company.
    if len(terms) == 1 and terms[0].exclude and not terms[0].scope and not terms[0].phrase:
        only = terms[0]
        return Search((Term("-" + only.text, prefix=only.prefix),))
    search = Search(tuple(terms))
    if search.either:
        return search
    # Punctuation between words is a space ("a & b"); a scope, a phrase or an
    # exclusion of punctuation alone searches for nothing the index holds.
    kept = []
    for term in terms:
        if term.scope != "name" and not _WORD.search(term.text):
            if term.scope or term.phrase or term.exclude:
                raise SearchSyntaxError(
                    f"“{_cut(term.text)}” has no letters or digits, and only words are "
                    "searched in inputs, outputs, errors and causes"
                )
            continue
        kept.append(term)
    if not kept:
        raise SearchSyntaxError(f"“{_cut(text)}” has no letters or digits to search for")
    return Search(tuple(kept))


def _check(term: Term, typed: str) -> None:
    if not term.text.strip():
        raise SearchSyntaxError(f"“{_cut(typed)}” has nothing to search for")
    if len(term.text) > MAX_TERM:
        raise SearchSyntaxError(f"a term is at most {MAX_TERM} characters; “{_cut(typed)}” is not")


def _cut(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


# --- the SQL --------------------------------------------------------------------------


class _DataMatch(Expression):
    """True for an execution whose indexed data matches (`negate`: does not
    match) a full-text query, in the database's own syntax."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, query: str, *, negate: bool = False) -> None:
        super().__init__()
        self.query = query
        self.negate = negate
        self.pk: Any = F("pk")

    def get_source_expressions(self) -> list[Any]:
        return [self.pk]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.pk,) = exprs

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, list[Any]]:
        pk, params = compiler.compile(self.pk)
        if connection.vendor == "postgresql":
            # The row's own column, under whatever alias the query gave the table.
            doc = pk.rsplit(".", 1)[0] + '."search_doc"'
            sql = f"{doc} @@ to_tsquery('simple'::regconfig, %s)"
        elif connection.vendor == "sqlite":
            sql = f"{pk} IN (SELECT rowid FROM executions_search WHERE executions_search MATCH %s)"  # noqa: S608
        else:
            raise NotImplementedError(f"no search inside the data on {connection.vendor}")
        if self.negate:
            sql = f"NOT ({sql})"
        return sql, [*params, self.query]


def condition(search: Search, vendor: str) -> Q:
    """The executions the search finds, as one condition."""
    data = _data_condition(search.data, vendor)
    if search.either:
        name = name_contains(search.either, vendor)
        return name | data if data is not None else name
    q = Q()
    for part in search.names:
        q &= name_contains(part, vendor)
    for part in search.not_names:
        q &= ~Q(name__icontains=part)
    if data is not None:
        q &= data
    if search.not_data:
        q &= Q(_DataMatch(_query(search.not_data, vendor, any_of=True), negate=True))
    return q


def name_contains(text: str, vendor: str) -> Q:
    """The name contains `text`. A day (20260605) is found on PostgreSQL by
    the trigrams of its last five digits, then tested whole on each row:
    the year's trigrams ("202", "026", "260") are in nearly every name, and
    reading them made the trigram index scan 10,719 pages for one day at
    10,000,000 executions (100 ms); the tail's, 492 pages (16 ms). The same
    rows either way: the whole contains its tail. (The list's page asks
    migration 0014's indexes instead, in start order: queries._day_members.
    This serves the counts and the bulk actions.)"""
    if vendor == "postgresql" and _DAY.fullmatch(text):
        return Q(name__icontains=text[-5:]) & Q(IContains(_UNINDEXED_NAME, text))
    return Q(name__icontains=text)


class NameDay(Func):
    """The first day (YYYYMMDD) in the name, or NULL: migration 0014's
    function, which exec_name_day_idx keys on (PostgreSQL)."""

    function = "sfnui_name_day"
    output_field = CharField()


class NameMoreDays(Func):
    """Whether the name holds more than one day: the names that can contain a
    day that is not their first (exec_name_days_trgm_idx, PostgreSQL)."""

    function = "sfnui_name_more_days"
    output_field = BooleanField()
    conditional = True


def name_day(search: Search, vendor: str) -> str | None:
    """The day a search of one term looks for in the names (and, unscoped,
    the data), on PostgreSQL, where migration 0014's indexes find the names
    that contain it in start order; None for any other search."""
    if vendor != "postgresql" or len(search.terms) != 1:
        return None
    term = search.terms[0]
    if term.exclude or term.phrase or term.scope not in ("", "name"):
        return None
    # The indexes' pattern reads ASCII digits; \d would also take others.
    if term.text.isascii() and _DAY.fullmatch(term.text):
        return term.text
    return None


def data_condition(search: Search, vendor: str) -> Q | None:
    """The condition on the data alone (the index's part of the search)."""
    return _data_condition(search.data, vendor)


def _data_condition(terms: tuple[Term, ...], vendor: str) -> Q | None:
    return Q(_DataMatch(_query(terms, vendor))) if terms else None


def indexed(search: Search, vendor: str) -> bool:
    """Whether an index finds every match of the search, so that a page need
    not walk: the data's (any search with a word to find), and the name's
    trigrams (PostgreSQL, 3 characters or more) for the name's part."""
    if search.either:
        return vendor == "postgresql" and len(search.either) >= 3
    if search.data:
        return True
    return vendor == "postgresql" and any(len(n) >= 3 for n in search.names)


def _query(terms: tuple[Term, ...], vendor: str, *, any_of: bool = False) -> str:
    if vendor == "postgresql":
        return (" | " if any_of else " & ").join(_tsquery(t) for t in terms)
    return (" OR " if any_of else " AND ").join(_fts5(t) for t in terms)


def _tsquery(term: Term) -> str:
    """One term in to_tsquery's syntax: its words, quoted (a phrase when it
    has several), with a prefix mark and restricted to a field's weight."""
    # Only its words: the documents hold nothing else (migration 0012), and
    # nothing is left that to_tsquery could read as an operator or a quote.
    words = _WORD.findall(term.text)
    quoted = "'" + " ".join(words) + "'"
    star = "*" if term.prefix else ""
    if term.scope:
        return f"{quoted}:{star}{_WEIGHTS[term.scope]}"
    if len(words) > 1:
        # A phrase within one field: the fields' words follow one another in
        # the document, and "declined card" must not span an error's last
        # word and a cause's first.
        return "(" + " | ".join(f"{quoted}:{star}{w}" for w in _WEIGHTS.values()) + ")"
    return f"{quoted}:{star}" if star else quoted


def _fts5(term: Term) -> str:
    """One term in FTS5's syntax: a string (the tokenizer splits it as it
    split the documents), with a column filter and a prefix mark."""
    quoted = '"' + term.text.replace('"', '""') + '"'
    if term.prefix:
        quoted += " *"
    return f"{term.scope} : {quoted}" if term.scope else quoted


# --- the snippet ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    field: str
    # (text, is it a match), in order.
    parts: tuple[tuple[str, bool], ...]


# Characters shown on each side of the first match.
_AROUND = 60


def snippet(search: Search, heads: Mapping[str, str | None]) -> Snippet | None:
    """Where the row's data matches the search, with the matches marked; None
    when only the name matched. `heads`: the indexed part of each field."""
    patterns = [(t.scope, p) for t in search.data if (p := _pattern(t)) is not None]
    for field in FIELDS:
        text = heads.get(field) or ""
        if not text:
            continue
        mine = [p for scope, p in patterns if scope in ("", field)]
        spans = sorted(m.span() for p in mine for m in p.finditer(text))
        if not spans:
            continue
        first, _ = spans[0]
        lo = max(0, first - _AROUND)
        hi = min(len(text), spans[0][1] + _AROUND)
        parts: list[tuple[str, bool]] = [("…", False)] if lo else []
        at = lo
        for s, e in spans:
            if s < at or e > hi:
                continue
            parts += [(text[at:s], False), (text[s:e], True)]
            at = e
        parts.append((text[at:hi], False))
        if hi < len(text):
            parts.append(("…", False))
        return Snippet(field, tuple((p, m) for p, m in parts if p))
    return None


def _pattern(term: Term) -> re.Pattern[str] | None:
    """The term's words, in order, apart only by what the tokenizers drop."""
    words = _WORD.findall(term.text)
    if not words:
        return None
    body = r"[\W_]+".join(re.escape(w) for w in words)
    tail = "" if term.prefix else r"(?![^\W_])"
    return re.compile(r"(?<![^\W_])" + body + tail, re.IGNORECASE)
