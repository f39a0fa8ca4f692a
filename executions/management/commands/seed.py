"""`python manage.py seed`: fill the cache with a year of realistic executions,
fast, for the benchmarks (bench/pages.py) and for trying the pages at scale.

    python manage.py seed --reset --executions 1000000 --with-history 20000 --big-history

On PostgreSQL the rows go in with COPY, and when the tables start empty their
secondary indexes and constraints are dropped first and rebuilt once at the
end (building an index once is many times faster than updating it a million
times), all in one transaction: a failure leaves the database as it was (unless
`--jobs N` asks for N connections at once: see its help). Then
VACUUM ANALYZE, so that the planner and index-only scans see what a database
that grew over a year would show them. Other databases get batched INSERTs.

What the rows hold is in executions/seed/data.py, how they are written in
executions/seed/load.py. Executions without a seeded history are marked as
not fully synced (history_complete false), as they would be before the sync
has read their history.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from executions.models import Execution
from executions.reads import places
from executions.seed import data, load


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


class Command(BaseCommand):
    help = (
        "Fill the database with realistic executions (a year of twenty state machines), "
        "histories for some of them and one 25,000-event execution, using bulk inserts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--executions", type=int, default=10_000, metavar="N")
        parser.add_argument(
            "--with-history",
            type=int,
            default=None,
            metavar="N",
            help="executions that get a history of ~20 events (default: 2%% of them, "
            "at most 20,000); running executions always get one",
        )
        parser.add_argument(
            "--big-history",
            action="store_true",
            help="add one execution with 25,000 events and payloads up to 256 KiB",
        )
        parser.add_argument(
            "--reset", action="store_true", help="empty every cache table first (TRUNCATE)"
        )
        parser.add_argument(
            "--running",
            type=int,
            default=0,
            metavar="N",
            help="make about N of the newest executions running (default: as many as "
            "their durations give, a few hundred in 1,000,000)",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            metavar="N",
            help="PostgreSQL: write the executions over N connections and build N indexes "
            "at once (faster on a machine with cores to spare, for 10,000,000 executions); "
            "not in one transaction, so a failure or a kill leaves the rows written so far "
            "(the indexes and triggers are put back; after kill -9 they are not: drop the "
            "database) and nothing else should write meanwhile",
        )
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        parser.add_argument("--days", type=int, default=365, help="start times span (days)")

    def handle(self, *args: Any, **options: Any) -> None:
        n: int = options["executions"]
        if n < 1:
            raise CommandError("--executions must be at least 1")
        jobs: int = options["jobs"]
        if jobs < 1:
            raise CommandError("--jobs must be at least 1")
        if jobs > 1 and connection.vendor != "postgresql":
            raise CommandError(f"--jobs needs PostgreSQL (this database is {connection.vendor})")
        if not options["reset"] and Execution.objects.exists():
            self.stdout.write(
                f"The cache already holds {Execution.objects.count():,} executions: nothing "
                "done. Use --reset to replace them."
            )
            return
        with_history = options["with_history"]
        if with_history is None:
            with_history = min(20_000, n // 50)
        plan = data.Plan(
            executions=n,
            with_history=min(with_history, n),
            now=timezone.now().replace(microsecond=0),
            seed=options["seed"],
            days=options["days"],
            running=options["running"],
        )
        started = time.monotonic()
        self.timings: list[tuple[str, int, float]] = []
        if jobs > 1:
            # Not one transaction: a plain `kill` must still put the indexes
            # and triggers back (load.seed does, on the way out).
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        # One transaction, unless the rows go in over several connections.
        with transaction.atomic() if jobs == 1 else contextlib.nullcontext():
            if options["reset"]:
                load.reset()
            load.seed(
                plan, big=options["big_history"], step=self._step, timings=self.timings, jobs=jobs
            )
        # Its state machines came by bulk insert (no post_save): the filters'
        # places are asked again.
        places.forget()
        self._step("vacuum analyze", load.analyze)
        total = time.monotonic() - started
        rows = sum(count for _, count, _ in self.timings)
        for what, count, seconds in self.timings:
            rate = f", {count / seconds:,.0f} rows/s" if count and seconds else ""
            rows_text = f"{count:,} rows in " if count else ""
            self.stdout.write(f"  {what}: {rows_text}{seconds:.1f} s{rate}")
        statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(plan.statuses.items()))
        self.stdout.write(f"Statuses: {statuses}")
        self.stdout.write(
            f"Seeded {rows:,} rows in {total:.1f} s ({rows / total:,.0f} rows/s), "
            f"database {connection.vendor} {connection.settings_dict['NAME']}."
        )

    def _step(self, what: str, work: Callable[[], int], *, counted: bool = True) -> None:
        self.stdout.write(f"{what}...")
        self.stdout.flush()
        t0 = time.monotonic()
        count = work()
        self.timings.append((what, count if counted else 0, time.monotonic() - t0))
