"""Seed data for the benchmarks (bench/pages.py) and for trying the pages at
scale, written by `manage.py seed`: data.py says what the rows hold (a year
of executions of twenty state machines, histories with the events AWS
sends), load.py writes them fast (COPY, indexes rebuilt once).

May import: models, event_types (event details). Never sync, actions, web or
views: nothing here talks to AWS.
"""
