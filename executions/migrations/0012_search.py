"""Search inside the data: the words of each execution's input, output, error
and cause (their first 4,096 characters each), indexed by the database
itself, so that every writer (the sync, the events consumer, the seeder, a
test's factory) keeps it without knowing it exists.

- PostgreSQL: a stored generated column `search_doc` (a tsvector of the
  words, runs of letters and digits, one weight
  per field: A input, B output, C error, D cause, so that `input:word` asks
  for the weight) and a GIN index on it. PostgreSQL recomputes it only when
  an UPDATE sets one of the four columns.
- SQLite: an FTS5 table `executions_search` (contentless: the text stays in
  the execution row) kept by three triggers.

The list's search (executions/reads/search.py) asks them; HEAD there is the
4,096 below: twice that cost the sync a fifth of its
throughput with 8 KiB inputs and outputs (bench/README.md).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

HEAD = 4096
FIELDS = (("input", "A"), ("output", "B"), ("error", "C"), ("cause", "D"))

# Words are runs of letters and digits, everything else apart them, as FTS5's
# unicode61 splits: PostgreSQL's own parser would keep "States.Timeout" or an
# email as one word, which a search for "Timeout" then misses.
_PG_DOC = " || ".join(
    f"setweight(to_tsvector('simple'::regconfig, regexp_replace("
    f"left(coalesce({f}, ''), {HEAD}), '[^[:alnum:]]+', ' ', 'g')), '{w}')"
    for f, w in FIELDS
)
_SQLITE_COLUMNS = ", ".join(f for f, _ in FIELDS)


def _sqlite_values(row: str) -> str:
    return ", ".join(f"substr({row}.{f}, 1, {HEAD})" for f, _ in FIELDS)


def forwards(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            "ALTER TABLE executions_execution ADD COLUMN IF NOT EXISTS search_doc tsvector "
            f"GENERATED ALWAYS AS ({_PG_DOC}) STORED"
        )
        # Serves the list's search inside the data (reads/search.py).
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS exec_search_idx ON executions_execution "
            "USING gin (search_doc)"
        )
    elif vendor == "sqlite":
        schema_editor.execute(
            f"CREATE VIRTUAL TABLE executions_search USING fts5({_SQLITE_COLUMNS}, "
            "content='', tokenize='unicode61 remove_diacritics 2')"
        )
        # A contentless table forgets a row only when told its indexed text
        # again: the triggers give the old values, cut as they were.
        delete = (
            f"INSERT INTO executions_search(executions_search, rowid, {_SQLITE_COLUMNS}) "  # noqa: S608
            f"VALUES ('delete', old.id, {_sqlite_values('old')});"
        )
        insert = (
            f"INSERT INTO executions_search(rowid, {_SQLITE_COLUMNS}) "  # noqa: S608
            f"VALUES (new.id, {_sqlite_values('new')});"
        )
        changed = " OR ".join(f"old.{f} IS NOT new.{f}" for f, _ in FIELDS)
        schema_editor.execute(
            f"CREATE TRIGGER executions_search_ai AFTER INSERT ON executions_execution "
            f"BEGIN {insert} END"
        )
        schema_editor.execute(
            f"CREATE TRIGGER executions_search_ad AFTER DELETE ON executions_execution "
            f"BEGIN {delete} END"
        )
        schema_editor.execute(
            f"CREATE TRIGGER executions_search_au AFTER UPDATE OF {_SQLITE_COLUMNS} "
            f"ON executions_execution WHEN {changed} BEGIN {delete} {insert} END"
        )
        schema_editor.execute(
            f"INSERT INTO executions_search(rowid, {_SQLITE_COLUMNS}) "  # noqa: S608
            f"SELECT id, {_sqlite_values('executions_execution')} "
            "FROM executions_execution"
        )


def backwards(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS exec_search_idx")
        schema_editor.execute("ALTER TABLE executions_execution DROP COLUMN IF EXISTS search_doc")
    elif vendor == "sqlite":
        for trigger in ("ai", "ad", "au"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS executions_search_{trigger}")
        schema_editor.execute("DROP TABLE IF EXISTS executions_search")


class Migration(migrations.Migration):
    dependencies = [("executions", "0011_failure_point")]

    operations = [migrations.RunPython(forwards, backwards)]
