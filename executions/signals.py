"""Work that domain code asks for and a worker does: the one way out of the
domain to the task queue.

Domain modules (actions/stop.py, actions/bulk.py, actions/watch.py) and the
pages (web/common.sync_now) send one
of these signals where they used to call a task's `.delay()` themselves;
`executions/tasks.py` connects the receivers that enqueue (connected in
`ExecutionsConfig.ready()`, so in every process: web, worker, manage.py).
So only tasks.py enqueues, and the domain never imports it.

And the sync says an execution closed (`execution_closed`) rather than
calling the watch itself: actions/watch.py receives it (the sync sits below
the actions and never imports them).

A receiver's exception reaches the sender (`send`, not `send_robust`): a
broker that is down is the sender's to handle, as it was before.

This module imports nothing of the domain.
"""

from __future__ import annotations

from django.dispatch import Signal

# The sync stored a closed status for an execution. Argument: execution_pk.
# Receiver: actions/watch.closed (never raises).
execution_closed = Signal()
# The same for several at once (a sync run's): one question for all of them.
# Argument: execution_pks (list). Receiver: actions/watch.closed_many.
executions_closed = Signal()

# An execution should be synced now (after a stop). Argument: arn.
resync_wanted = Signal()

# Someone is looking at a running execution: sync it once this transaction
# commits (the scheduler does it if the broker is down). Argument: arn.
sync_now_wanted = Signal()

# A watched execution finished: post it to the webhook. Argument: execution_pk.
watchers_to_notify = Signal()

# A watch post failed and is tried again later.
# Arguments: notification_pk, attempt (the next one), countdown (seconds).
watch_retry_wanted = Signal()

# One chunk of a bulk stop for a worker. Arguments: batch_id (str), item_ids.
bulk_chunk_ready = Signal()
