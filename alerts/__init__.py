"""Alert rules (/alerts/): conditions people write about the cache, checked
on every tick of the sync (never an AWS call), posted to a Slack-compatible
webhook once per firing and once when it resolves, muted until a time, with
an audit of rule changes and firings.

models.py (rules, firings, posts, audit), rules.py (each kind as one query),
check.py (the tick: open, resolve, claim posts), notify.py (the words of a
post, its delivery, once), tasks.py (thin Celery tasks), forms.py and
views.py (the pages). It sits above executions/ and imports from it; nothing
in executions/ imports it.
"""
