"""When the database is busy (busy.py: a write waits briefly or is skipped)
or does not answer (unavailable.py: a 503 with Retry-After, and which errors
say "outage"). Used by the pages (their middleware), the sync and the tasks.
And what the database keeps by itself: counts of executions per state machine,
status and hour, by triggers (counts.py).

May import Django only: nothing of executions.
"""
