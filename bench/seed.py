"""Seed the databases that bench/pages.py reads, and time the seeder.

    .venv/bin/python -m bench.seed              # both, ~3 minutes
    .venv/bin/python -m bench.seed --only 10k

- sfnui_bench_1m: 1,000,000 executions of twenty state machines over a year,
  20,000 of them (and every running one) with a history of ~20 events, and
  one execution with 25,000 events and payloads up to 256 KiB;
- sfnui_bench_10k: 10,000 executions, with as many running as the big one
  (the running set follows today's traffic, not how much history is cached).

Each is `manage.py seed --reset ...` on its own DATABASE_URL (created and
migrated first); its report (rows per second per table) is kept in
var/bench/results/seed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, ensure_database, report
from bench.pages import DB_1M, DB_10K

SEEDS = {
    "1m": (
        os.environ.get("BENCH_DB_1M", DB_1M),
        ["--executions", "1000000", "--with-history", "20000", "--big-history"],
    ),
    "10k": (os.environ.get("BENCH_DB_10K", DB_10K), ["--executions", "10000", "--running", "350"]),
}
_STEP = re.compile(r"^\s+(?P<what>[^:]+): (?:(?P<rows>[\d,]+) rows in )?(?P<s>[\d.]+) s")
_TOTAL = re.compile(r"^Seeded (?P<rows>[\d,]+) rows in (?P<s>[\d.]+) s \((?P<rate>[\d,]+) rows/s\)")


def seed(url: str, extra: list[str]) -> dict[str, Any]:
    ensure_database(url)
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
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(SEEDS))
    args = parser.parse_args()
    # Seeding one database keeps the other's figures.
    saved = ROOT / "var" / "bench" / "results" / "seed.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for name, (url, extra) in SEEDS.items():
        if args.only in (None, name):
            print(f"== {name}: {url}", flush=True)
            results[name] = seed(url, extra)
    report("seed", results)


if __name__ == "__main__":
    main()
