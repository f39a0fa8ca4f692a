"""The sync: keeping the cache (models.py) what AWS says, within a budget.

- flows.py: the five flows (discovery, state machine definitions, listings,
  executions with their history, an import on demand): AWS pages in;
  rows.py: AWS answers mapped to rows, idempotent upserts out;
  execution_write.py: one execution's sync stored at once (its events and one
  UPDATE of its row, in one transaction); runs.py: each
  run recorded as a SyncRun (its calls, rows and errors); backoff.py: when a
  state machine is listed again and an execution synced again, backing off
  while AWS fails;
- schedule.py: what is due next, claimed by lease; plan.py: how often each
  state machine is listed, within the API budget (executions/budget.py,
  which aws.py spends, so it sits beside aws.py; a batch takes its tokens
  ahead); locks.py: locks in the shared cache (a batch's at once);
- map_runs.py: Map Runs seen in a history, described, and their child
  executions listed, with the same rules as executions;
- versions.py: versions and aliases of each state machine (read with its
  definition) and the definition each execution ran (once per text);
- failed_states.py: the failing state of failures cached before the sync
  recorded it (`manage.py backfill_failed_states`);
- status_changes.py: Step Functions' status-change events applied to the
  cache, and consumer.py, the SQS loop that reads them;
- freshness.py: how fresh the cache is, for the bar on every page (with
  whether the broker and the shared cache answer, from probes.py).

May import: aws, arns, asl, models, signals, probes (freshness's broker and
cache ping), history (the event rows), and each other. Never views, web,
actions or tasks (tasks.py calls in).
"""
