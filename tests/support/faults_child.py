"""Run as `python -m tests.support.faults_child MODE ...` by tests/faults/test_database.py,
in a process of its own on the database named by DATABASE_URL:

- `race DIR ME OTHER`: one of two workers syncing the same state machines,
  executions and histories at the same moment, step by step (a file barrier
  in DIR before discovery, before listing, and before every history page),
  bypassing the per-execution locks, as two workers do once a lock expired;
- `dump`: every cached execution and its events, as JSON;
- `operator USERNAME PASSWORD`: a user who may stop executions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BARRIER_TIMEOUT = 60.0


def barrier(folder: Path, name: str, me: str, other: str) -> None:
    (folder / f"{name}.{me}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not (folder / f"{name}.{other}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never reached {name}")
        time.sleep(0.0005)


def race(folder: Path, me: str, other: str) -> dict[str, Any]:
    from executions import aws
    from executions.models import Execution, StateMachine
    from executions.sync import flows, runs

    real_history = aws.execution_history
    pages = 0

    def in_step(arn: str, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        nonlocal pages
        for i, page in enumerate(real_history(arn, **kwargs)):
            # Both workers store this page at the same moment.
            barrier(folder, f"page-{arn.rsplit(':', 1)[-1]}-{i}", me, other)
            pages += 1
            yield page

    aws.execution_history = in_step
    region = "us-east-1"
    barrier(folder, "discover", me, other)
    total = flows.discover_state_machines(region)
    barrier(folder, "list", me, other)
    for sm in StateMachine.objects.order_by("arn"):
        total.merge(flows.list_state_machine(sm))
    barrier(folder, "sync", me, other)
    # What each read before the other wrote anything: both fetch everything.
    for ex in list(Execution.objects.order_by("arn")):
        with runs.recording("executions", region) as stats:
            flows.sync_execution(ex, stats)
        total.merge(stats)
    if total.errors:
        raise RuntimeError(f"the sync failed: {total.errors}")
    return {"pages": pages, "events": total.events, "summary": total.summary()}


def dump() -> dict[str, Any]:
    from executions.models import Execution
    from tests.support.helpers import cached_events, cached_execution

    return {
        arn: {"execution": cached_execution(arn), "events": cached_events(arn)}
        for arn in Execution.objects.order_by("arn").values_list("arn", flat=True)
    }


def operator(username: str, password: str) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    person = get_user_model().objects.create_user(username=username, password=password)
    person.user_permissions.add(Permission.objects.get(codename="stop_execution"))
    return {"user": person.pk}


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    raise TypeError(type(value).__name__)


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sfnui.settings")
    import django

    django.setup()
    mode, *args = argv
    if mode == "race":
        result = race(Path(args[0]), args[1], args[2])
    elif mode == "dump":
        result = dump()
    elif mode == "operator":
        result = operator(args[0], args[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.write(json.dumps(result, default=_default))


if __name__ == "__main__":
    main(sys.argv[1:])
