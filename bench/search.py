"""Search inside the data (issue 14 item 1) on 1,000,000 executions with
realistic inputs, through the list page.

    .venv/bin/python -m bench.search fill                  # its own database: hours (below)
    .venv/bin/python -m bench.search fill --executions 100000   # what bench/README reports
    .venv/bin/python -m bench.search measure --runs 7

`fill` makes sfnui_bench_search (BENCH_SEARCH_DB), migrated, with 20 state
machines and N executions written by INSERT ... SELECT in chunks of 50,000
(one transaction each, so that it can stop and resume with --start), the
search index dropped first and built once at the end. Each
input is JSON of 1 to 50 KiB, log-uniform (most are small), five of them
256 KiB: an order id unique to the execution (`ord-0424242`), a customer's
email (50,000 customers), and a log of words cut from a fixed 320 KiB
pseudo-random text at an offset of its own (so that rows share words as
real payloads do, without being copies). One execution in ten also holds
the word `refund` (100,000 at 1M). Failed ones (one in ten) have an error and
a cause; succeeded ones a small output. The database keeps the search
column itself (migration 0012's generated tsvector): the fill pays for it,
as the sync would.

`measure` times the list page (Django's test client, signed in, DEBUG off,
PostgreSQL and Redis: bench/pages.py's `_time`) for:

- an id present in 1 execution, as one word (the name or the data) and
  scoped (`input:`);
- a word present in 100,000 (`refund`), both ways, and with an exclusion;
- a plain name search, to see that it kept its speed;

and reports the search column's and its GIN index's sizes against the
table's. Results: var/bench/results/search.json.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

from bench.common import report
from bench.pages import _client, _django, _time

DB = os.environ.get("BENCH_SEARCH_DB", "postgres://postgres@127.0.0.1:5432/sfnui_bench_search")
CHUNK = 25_000
CORPUS_BYTES = 320 * 1024
# Present in one execution in ten, never in the corpus.
COMMON_WORD = "refund"
RARE_ID = "ord-0424242"


def _corpus() -> str:
    """Words as logs and payloads have them: a vocabulary of 4,000 made-up
    words, hex ids and numbers, in a fixed pseudo-random order."""
    rng = random.Random(14)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = [
        "".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(4000)
    ]
    vocabulary = [w for w in vocabulary if COMMON_WORD not in w]
    parts: list[str] = []
    size = 0
    while size < CORPUS_BYTES:
        kind = rng.random()
        if kind < 0.7:
            word = rng.choice(vocabulary)
        elif kind < 0.85:
            word = f"{rng.getrandbits(48):012x}"
        else:
            word = str(rng.randint(0, 99999))
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:CORPUS_BYTES]


_INSERT = """
INSERT INTO executions_execution (
    arn, name, state_machine_id, status, start_date, stop_date, input, output, error, cause,
    redrive_count, redrive_status, redrive_status_reason, map_run_arn,
    state_machine_version_arn, state_machine_alias_arn, last_event_id, history_complete,
    needs_describe, described_at, synced_at, sync_error, sync_failures, failed_state)
SELECT
    'arn:aws:states:us-east-1:123456789012:execution:sm-' || (i %% 20) || ':exec-' || i,
    'exec-' || i,
    (%(machines)s)[i %% 20 + 1],
    CASE WHEN i %% 10 = 5 THEN 'FAILED' ELSE 'SUCCEEDED' END,
    %(now)s - (%(total)s - i) * interval '30 seconds',
    %(now)s - (%(total)s - i) * interval '30 seconds' + interval '42 seconds',
    '{"orderId": "ord-' || lpad(i::text, 7, '0') || '", "customer": {"email": "'
        || (ARRAY['ana', 'ben', 'chloe', 'dev', 'emma', 'farid', 'grace', 'hugo', 'ines',
            'jon'])[i %% 10 + 1]
        || '.' || (i %% 50000) || '@example.com"}, '
        || CASE WHEN i %% 10 = 3 THEN '"flag": "' || %(word)s || '", ' ELSE '' END
        || '"log": "' || substr(
            %(corpus)s::text, (1 + (i::bigint * 7919) %% (%(corpus_len)s - size))::int, size)
        || '"}',
    CASE WHEN i %% 10 = 5 THEN NULL
        ELSE '{"status": "CAPTURED", "transactionId": "txn_' || md5(i::text) || '"}' END,
    CASE WHEN i %% 10 = 5 THEN 'Payment.Declined' END,
    CASE WHEN i %% 10 = 5 THEN 'the provider declined order ord-' || lpad(i::text, 7, '0') END,
    0, 'NOT_REDRIVABLE', '', '', '', '', 0, false, false,
    %(now)s, %(now)s, '', 0, ''
FROM (
    SELECT i,
        CASE WHEN i %% 200000 = 7 THEN 256 * 1024 - 200
        ELSE (1024 * exp(random() * ln(50)))::int END AS size
    FROM generate_series(%(first)s, %(last)s) AS i
) AS s
"""


def fill(total: int, start: int) -> None:
    _django(DB)
    from django.db import connection, transaction
    from django.utils import timezone

    from executions.models import StateMachine

    machines = []
    for n in range(20):
        arn = f"arn:aws:states:us-east-1:123456789012:stateMachine:sm-{n}"
        sm, _ = StateMachine.objects.get_or_create(
            arn=arn, defaults={"name": f"sm-{n}", "region": "us-east-1", "account": "123456789012"}
        )
        machines.append(sm.pk)
    corpus = _corpus()
    # The corpus cut at 256 KiB at most, so that the biggest fits.
    now = timezone.now().replace(microsecond=0)
    with connection.cursor() as cursor:
        # Built once at the end, as the seeder rebuilds its indexes (a GIN
        # index takes its rows far faster whole than one at a time).
        cursor.execute("DROP INDEX IF EXISTS exec_search_idx")
    first = start
    while first <= total:
        last = min(first + CHUNK - 1, total)
        t0 = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            # The aggregates' triggers (0013) are not what this measures.
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(
                _INSERT,
                {
                    "machines": machines,
                    "now": now,
                    "total": total,
                    "word": COMMON_WORD,
                    "corpus": corpus,
                    "corpus_len": len(corpus) + 1,
                    "first": first,
                    "last": last,
                },
            )
        print(f"executions {first:,}-{last:,}: {time.monotonic() - t0:.1f} s", flush=True)
        first = last + 1
    with connection.cursor() as cursor:
        t0 = time.monotonic()
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute(
            "CREATE INDEX exec_search_idx ON executions_execution USING gin (search_doc)"
        )
        print(f"exec_search_idx: {time.monotonic() - t0:.1f} s", flush=True)
        cursor.execute("VACUUM ANALYZE executions_execution")


def measure(runs: int, warmup: int) -> None:
    _django(DB)
    from django.db import connection

    client = _client()
    variants = {
        "id in 1 execution, one word (name or data)": RARE_ID,
        "id in 1 execution, input:": f"input:{RARE_ID}",
        f"word in 1 execution in 10 ('{COMMON_WORD}'), one word": COMMON_WORD,
        f"word in 1 in 10, input:{COMMON_WORD}": f"input:{COMMON_WORD}",
        "word in 1 in 10, with an exclusion": f"{COMMON_WORD} -error:Declined",
        "email of a customer (20 executions)": "ana.40@example.com",
        "plain name search, few ('exec-42424')": "exec-42424",
    }
    results: dict[str, Any] = {}
    for name, q in variants.items():
        url = "/executions/?" + _query(q)
        results[name] = _time(client, url, runs, warmup)
        r = results[name]
        print(
            f"{name}: median {r['median_ms']} ms (idle {r['idle_median_ms']}), "
            f"p95 {r['p95_ms']}, {r['queries']} queries",
            flush=True,
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM executions_execution), "
            "pg_relation_size('executions_execution'), "
            "pg_total_relation_size('executions_execution'), "
            "pg_relation_size('exec_search_idx'), "
            "(SELECT sum(pg_column_size(search_doc)) FROM executions_execution), "
            "(SELECT sum(pg_column_size(input)) FROM executions_execution), "
            "(SELECT avg(octet_length(input)) FROM executions_execution)"
        )
        rows, heap, total, index, column, inputs, avg_input = cursor.fetchone()
    sizes = {
        "executions": rows,
        "table_heap_bytes": heap,
        "table_total_bytes": total,
        "search_index_bytes": index,
        "search_column_bytes": column,
        "input_stored_bytes": inputs,
        "input_avg_bytes": round(float(avg_input)),
        "index_share_of_total": round(index / total, 3),
        "column_share_of_total": round(column / total, 3),
    }
    print(sizes)
    report("search", {"load": _loadavg(), "variants": results, "sizes": sizes})


def _query(q: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": q})


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--executions", type=int, default=1_000_000)
    f.add_argument("--start", type=int, default=1)
    m = sub.add_parser("measure")
    m.add_argument("--runs", type=int, default=7)
    m.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    if args.command == "fill":
        fill(args.executions, args.start)
    else:
        measure(args.runs, args.warmup)


if __name__ == "__main__":
    main()
