"""What people do to executions from the dashboard, and its record.

- grants.py: who may act (stop, redrive, start, change a Map Run), one query;
- stop.py: stopping one execution, and the audit of every attempt;
- redrive.py: redriving one execution (RedriveExecution), its ActionRequest;
- start.py: starting an execution (a state machine, version or alias), and
  re-running one with its input;
- map_run.py: changing a running Map Run's concurrency and failure tolerance;
- bulk.py: guarded bulk stop and bulk redrive (the dry run, the batch, the
  worker side);
- watch.py: watch claims, and the notification when a watched execution
  finishes (claimed once, retried with backoff);
- webhook.py: the Slack-compatible webhook client that posts it.

May import: aws, arns, models, redaction, times, signals (to ask for a
task: never tasks.py itself), sync, reads and text. Never views or web.
"""
