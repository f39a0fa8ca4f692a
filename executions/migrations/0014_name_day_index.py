"""A day's name search (`q=20260605`) in start order, on PostgreSQL.

The trigram index finds every name that carries a day, but in no order: the
page then reads and sorts every match, ten times as many at 10,000,000
executions as at 1,000,000 (bench/README.md). Two partial indexes give the
same rows in start order instead:

- exec_name_day_idx: (the first day in the name, start date, id), for the
  names that carry a day. `sfnui_name_day = '20260605'` walks it newest
  first and stops at a page;
- exec_name_days_trgm_idx: the trigram index of the names that carry more
  than one day ("backfill-20260101-20260131"), the only names that can hold
  a day that is not their first. Its matches are sorted, as before, but only
  among those few.

The two together are every name that contains the day
(executions/reads/queries.py, _day_members). A day is what search._DAY
reads, digits ASCII. SQLite has neither index and does without.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# search._DAY with ASCII digits; the outer group is what substring() returns.
DAY = r"((?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))"

FUNCTIONS = (
    # The first day in the name (the leftmost place one starts), or NULL.
    f"""
    CREATE OR REPLACE FUNCTION sfnui_name_day(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT substring(name from '{DAY}') $$
    """,
    # Whether another day starts after the first one's first character
    # (overlapping it or not): strpos finds the first day where the pattern
    # did, since a day's text anywhere earlier would have matched there.
    """
    CREATE OR REPLACE FUNCTION sfnui_name_more_days(name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT sfnui_name_day(substr(name, strpos(name, sfnui_name_day(name)) + 1)) IS NOT NULL $$
    """,
)

INDEXES = (
    "CREATE INDEX IF NOT EXISTS exec_name_day_idx ON executions_execution "
    "(sfnui_name_day(name::text), start_date, id) "
    "WHERE sfnui_name_day(name::text) IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS exec_name_days_trgm_idx ON executions_execution "
    "USING gin (UPPER(name::text) gin_trgm_ops) WHERE sfnui_name_more_days(name::text)",
)


# How many names hold more than one day: without it the planner guesses 2 %
# of the table for the partial index's predicate (201,105 rows at
# 10,000,000 where there were none), and reads the index in parallel workers,
# 8 ms to start them. Expression statistics are PostgreSQL 14's.
STATISTICS = (
    "CREATE STATISTICS IF NOT EXISTS exec_name_more_days_stat "
    "ON (sfnui_name_more_days(name::text)) FROM executions_execution"
)


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in (*FUNCTIONS, *INDEXES):
        schema_editor.execute(sql)
    if schema_editor.connection.pg_version >= 140000:
        schema_editor.execute(STATISTICS)
    # The indexes' expressions and the statistics count from the next ANALYZE.
    schema_editor.execute("ANALYZE executions_execution")


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP STATISTICS IF EXISTS exec_name_more_days_stat")
    schema_editor.execute("DROP INDEX IF EXISTS exec_name_days_trgm_idx")
    schema_editor.execute("DROP INDEX IF EXISTS exec_name_day_idx")
    schema_editor.execute("DROP FUNCTION IF EXISTS sfnui_name_more_days(text)")
    schema_editor.execute("DROP FUNCTION IF EXISTS sfnui_name_day(text)")


class Migration(migrations.Migration):
    dependencies = [("executions", "0013_aggregates")]

    operations = [migrations.RunPython(forwards, backwards)]
