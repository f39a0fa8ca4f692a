"""Seed the databases that bench/pages.py reads, and time the seeder.

    .venv/bin/python -m bench.seed              # 1m and 10k, ~3 minutes
    .venv/bin/python -m bench.seed --only 10k
    .venv/bin/python -m bench.seed --only 10m        # ~30 minutes, ~25 GB
    .venv/bin/python -m bench.seed --only 1m-sqlite  # the embedded default

- sfnui_bench_1m: 1,000,000 executions of twenty state machines over a year,
  20,000 of them (and every running one) with a history of ~20 events, and
  one execution with 25,000 events and payloads up to 256 KiB;
- sfnui_bench_10k: 10,000 executions, with as many running as the big one
  (the running set follows today's traffic, not how much history is cached);
- sfnui_bench_10m (on request): 10,000,000 executions, 200,000 with a
  history (the same 2 %), over the same year: ten times the traffic;
- var/bench/sqlite/sfnui_bench_1m.sqlite3 (on request): the 1m database on
  SQLite, the default when DATABASE_URL is unset.

Each is `manage.py seed --reset ...` on its own DATABASE_URL (created and
migrated first); its report (rows per second per table, the database's
size on disk and per execution) is kept in var/bench/results/seed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.common import ROOT, drop_database, ensure_database, report
from bench.pages import DB_1M, DB_1M_SQLITE, DB_10K, DB_10M

SEEDS = {
    "1m": (
        os.environ.get("BENCH_DB_1M", DB_1M),
        ["--executions", "1000000", "--with-history", "20000", "--big-history"],
    ),
    "10k": (os.environ.get("BENCH_DB_10K", DB_10K), ["--executions", "10000", "--running", "350"]),
    # Issue 15, item 6: ten times the 1M database, histories in the same share
    # (2 %), as many running as the durations give; the executions over two
    # connections and two indexes built at once (one COPY is bound by its
    # PostgreSQL backend: bench/README.md).
    "10m": (
        os.environ.get("BENCH_DB_10M", DB_10M),
        ["--executions", "10000000", "--with-history", "200000", "--big-history", "--jobs", "2"],
    ),
    # Issue 15, item 7: the embedded default (SQLite: batched INSERTs, its
    # indexes kept up as rows go in), at 1,000,000 as PostgreSQL's.
    "1m-sqlite": (
        os.environ.get("BENCH_DB_1M_SQLITE", DB_1M_SQLITE),
        ["--executions", "1000000", "--with-history", "20000", "--big-history"],
    ),
}
# Not seeded unless asked for by name (--only): they take long and much disk.
ON_REQUEST = {"10m", "1m-sqlite"}
_STEP = re.compile(r"^\s+(?P<what>[^:]+): (?:(?P<rows>[\d,]+) rows in )?(?P<s>[\d.]+) s")
_TOTAL = re.compile(r"^Seeded (?P<rows>[\d,]+) rows in (?P<s>[\d.]+) s \((?P<rate>[\d,]+) rows/s\)")


def seed(url: str, extra: list[str]) -> dict[str, Any]:
    if "--jobs" in extra:
        # Not one transaction: a seed killed half-way (kill -9) may have left
        # the tables without their indexes, which a new seed would not know.
        drop_database(url)
    ensure_database(url)
    if url.startswith("sqlite:"):
        Path(urlparse(url).path).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": url}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    command = [*manage, "seed", "--reset", *extra]
    started = time.monotonic()
    out = subprocess.run(
        command, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    sys.stdout.write(out)
    result: dict[str, Any] = {
        "command": f"DATABASE_URL={url} python manage.py seed --reset {' '.join(extra)}",
        "wall seconds": round(time.monotonic() - started, 1),
        "steps": {},
        "load average after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for line in out.splitlines():
        if step := _STEP.match(line):
            rows = int(step["rows"].replace(",", "")) if step["rows"] else 0
            seconds = float(step["s"])
            result["steps"][step["what"]] = {
                "rows": rows,
                "seconds": seconds,
                "rows/s": round(rows / seconds) if rows and seconds else None,
            }
        elif total := _TOTAL.match(line):
            result["rows"] = int(total["rows"].replace(",", ""))
            result["seconds"] = float(total["s"])
            result["rows/s"] = int(total["rate"].replace(",", ""))
        elif line.startswith("Statuses: "):
            result["statuses"] = line.removeprefix("Statuses: ")
    result.update(database_size(url))
    return result


def database_size(url: str) -> dict[str, Any]:
    """The database's bytes on disk (PostgreSQL: pg_database_size, tables,
    indexes and TOAST; SQLite: the file and its WAL) and per execution."""
    parsed = urlparse(url)
    if parsed.scheme.startswith("postgres"):
        import psycopg

        with psycopg.connect(url) as conn:
            (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
            (n,) = conn.execute("SELECT COUNT(*) FROM executions_execution").fetchone() or (0,)
    else:
        import sqlite3

        path = Path(parsed.path)
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        with sqlite3.connect(path) as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM executions_execution").fetchone() or (0,)
    return {
        "database bytes": size,
        "executions": n,
        "bytes per execution": round(size / n) if n else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(SEEDS))
    args = parser.parse_args()
    # Seeding one database keeps the other's figures.
    saved = ROOT / "var" / "bench" / "results" / "seed.json"
    done = {}
    for name, (url, extra) in SEEDS.items():
        if args.only == name or (args.only is None and name not in ON_REQUEST):
            print(f"== {name}: {url}", flush=True)
            done[name] = seed(url, extra)
    # Read at the end: a seed takes minutes to an hour, and another seed may
    # have written its own figures meanwhile.
    results = json.loads(saved.read_text()) if saved.exists() else {}
    report("seed", {**results, **done})


if __name__ == "__main__":
    main()
