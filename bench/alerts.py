"""100 alert rules checked on each tick at 1,000,000 executions (issue 14,
item 3: <= 1 s of database time per tick), on the 1M PostgreSQL database
that `python -m bench.seed` builds.

    .venv/bin/python -m bench.alerts              # ~1 minute
    .venv/bin/python -m bench.alerts --ticks 10

Others read that database: this bench writes nothing that stays. It runs in
one transaction that it rolls back at the end (PostgreSQL's DDL is
transactional too: the alerts tables are made inside it if the database
lacks them), and it never runs `migrate`. In it, 100 rules, 25 of each kind,
over the seed's 20 state machines and "any": long-running (1 h; 5 of them on
any state machine), failures (3 in 15 minutes, half of them with the most
common error of their state machine; 5 on any), Map Run tolerance (50 %; 5
on any), no start (1 h).

Then `alerts.check.run()` is timed, as the tick runs it: the first tick
(which opens the firings that hold and claims their posts; the webhook is a
port nothing listens on, and nothing is delivered) and steady ticks after
it (the usual case: nothing changed). "Database time" is the time spent in
the database driver's execute calls, summed over the tick (measured with
Django's execute_wrapper), which on a loaded machine is mostly each
round trip waiting for a CPU; wall time is the whole tick. The check runs one
query per kind of rule (rules.py), so a tick is a handful of round trips
whatever the number of rules. EXPLAIN ANALYZE of each kind's queries is
kept in the result, to show which index each uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import ROOT, report

DB_1M = os.environ.get("BENCH_DB_1M", "postgres://postgres@127.0.0.1:5432/sfnui_bench_1m")
TARGET_DB_SECONDS = 1.0


class Rollback(Exception):
    pass


@contextmanager
def database_time() -> Iterator[list[float]]:
    """Seconds spent in execute calls while inside, appended to the list."""
    from django.db import connection

    spent = [0.0]

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[0] += time.perf_counter() - started

    with connection.execute_wrapper(timed):
        yield spent


def setup() -> None:
    os.environ["DATABASE_URL"] = DB_1M
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/8")
    os.environ.setdefault("SFNUI_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sfnui.settings")
    # Firings claim their posts (and write their text); nothing is delivered.
    os.environ["SFNUI_ALERTS_WEBHOOK_URL"] = "http://127.0.0.1:9/hook"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def ensure_tables() -> None:
    """The alerts tables, made in the open transaction when missing."""
    from django.db import connection

    from alerts.models import AlertAudit, AlertFiring, AlertNotification, AlertRule

    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in (AlertRule, AlertNotification, AlertFiring, AlertAudit):
            if model._meta.db_table not in existing:
                editor.create_model(model)


def make_rules() -> list[Any]:
    from django.db.models import Count

    from alerts.models import AlertRule
    from executions.models import FAILURE_STATUSES, Execution, StateMachine

    machines = list(StateMachine.objects.order_by("name"))
    if not machines:
        raise SystemExit(f"{DB_1M} has no state machines: run python -m bench.seed first")
    errors: dict[int, str] = {}
    for machine in machines:
        top = (
            Execution.objects.filter(state_machine=machine, status__in=FAILURE_STATUSES)
            .exclude(error=None)
            .values("error")
            .annotate(n=Count("id"))
            .order_by("-n")
            .first()
        )
        errors[machine.pk] = top["error"] if top else ""
    rules = []
    for i in range(25):
        sm = machines[i % len(machines)] if i < 20 else None
        common: dict[str, Any] = {
            "state_machine_arn": sm.arn if sm else "",
            "state_machine_name": sm.name if sm else "",
            "created_by": "bench",
        }
        rules += [
            AlertRule(
                name=f"long {i}", kind=AlertRule.Kind.LONG_RUNNING, duration_seconds=3600, **common
            ),
            AlertRule(
                name=f"failures {i}",
                kind=AlertRule.Kind.FAILURES,
                threshold=3,
                window_seconds=900,
                error=errors[sm.pk] if sm and i % 2 else "",
                **common,
            ),
            AlertRule(
                name=f"map run {i}", kind=AlertRule.Kind.MAP_RUN_TOLERANCE, percent=50, **common
            ),
            AlertRule(
                name=f"quiet {i}",
                kind=AlertRule.Kind.NO_START,
                duration_seconds=3600,
                **{**common, **({} if sm else _quiet_default(machines))},
            ),
        ]
    return AlertRule.objects.bulk_create(rules)


def _quiet_default(machines: list[Any]) -> dict[str, Any]:
    # "No start" needs a state machine: the five "any" slots take the last ones.
    sm = machines[-1]
    return {"state_machine_arn": sm.arn, "state_machine_name": sm.name}


def explain(rules: list[Any]) -> dict[str, list[str]]:
    """The plan of each kind's query (first rule of the kind on a state machine)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from alerts import rules as kinds
    from alerts.models import AlertRule

    plans: dict[str, list[str]] = {}
    now = _now()
    for kind in AlertRule.Kind:
        rule = next(r for r in rules if r.kind == kind and r.state_machine_arn)
        with CaptureQueriesContext(connection) as captured:
            kinds.evaluate(rule, now)
        lines: list[str] = []
        with connection.cursor() as cursor:
            for query in captured.captured_queries:
                cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {query['sql']}")
                lines += [row[0] for row in cursor.fetchall()]
        plans[kind.value] = lines
    return plans


def _now() -> dt.datetime:
    from django.utils import timezone

    return timezone.now()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=5, help="steady ticks to time")
    args = parser.parse_args()
    setup()
    from django.db import connection, transaction

    from alerts import check
    from executions.models import Execution, MapRun

    result: dict[str, Any] = {"database": DB_1M}
    try:
        with transaction.atomic():
            ensure_tables()
            rules = make_rules()
            result["rules"] = len(rules)
            result["executions"] = Execution.objects.count()
            result["running"] = Execution.objects.filter(status="RUNNING").count()
            result["map runs"] = MapRun.objects.count()
            ticks: list[dict[str, Any]] = []
            for n in range(args.ticks + 1):
                with database_time() as spent:
                    started = time.perf_counter()
                    done = check.run()
                    wall = time.perf_counter() - started
                ticks.append(
                    {
                        "tick": "first" if n == 0 else "steady",
                        "database s": round(spent[0], 4),
                        "wall s": round(wall, 4),
                        **done.summary(),
                    }
                )
                print(ticks[-1], flush=True)
            result["plans"] = explain(rules)
            raise Rollback
    except Rollback:
        pass
    connection.close()
    steady = [t["database s"] for t in ticks[1:]]
    walls = [t["wall s"] for t in ticks[1:]]
    result.update(
        ticks=ticks,
        first_tick={k: ticks[0][k] for k in ("database s", "wall s", "fired", "posts")},
        steady_database_s={"min": min(steady), "median": statistics.median(steady)},
        steady_wall_s={"min": min(walls), "median": statistics.median(walls)},
        target=f"<= {TARGET_DB_SECONDS} s of database time per tick",
        met=max(t["database s"] for t in ticks) <= TARGET_DB_SECONDS,
        load=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    report("alerts", result)


if __name__ == "__main__":
    main()
