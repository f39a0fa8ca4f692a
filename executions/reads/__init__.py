"""What the pages read from the cache, as aggregate queries that stay fast on
millions of rows: the executions list (queries.py) and its search inside
the data (search.py: the syntax, the index's conditions, the snippets), what state machines have
been doing (activity.py), the runaway finder (runaways.py), accounts and
regions (places.py), versions and aliases with their numbers (versions.py),
two runs side by side (compare.py), and failures grouped by state machine,
failing state and error (failures.py).

Read-only. May import: aws (the configured targets), arns, asl, links
(?tz= in the chart's links), times, models, history. Never views, web,
actions or sync.
"""
