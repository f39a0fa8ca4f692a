"""Server time, queries and size of the pages, on seeded databases.

    .venv/bin/python manage.py seed --reset --executions 1000000 --with-history 20000 \\
        --big-history                                  # DATABASE_URL=.../sfnui_bench_1m
    .venv/bin/python manage.py seed --reset --executions 10000 --big-history
                                                       # DATABASE_URL=.../sfnui_bench_10k
    .venv/bin/python -m bench.pages                    # everything below, ~6 minutes
    .venv/bin/python -m bench.pages --runs 20 --only list

What it does, each part in its own process (so that one database, or one
export's memory, does not colour the next):

1. On the 1,000,000-execution database it picks the page variants (plan):
   the executions list with no filter and each single filter (status FAILED
   and RUNNING, a big and a small state machine, a name search that matches
   few, one that matches many and one whose matches are all months back (a
   day in a stamped name), a 30-day time range), each on its first
   page and on a deep page (the `older` cursor followed 20 pages, as someone
   paging would; the list has no page numbers), plus a jump to the middle of
   the year; the detail page of typical executions (succeeded, failed, running,
   a 256 KiB input, the 25,000-event one); the history page, history.txt and
   history.json of the 25,000-event execution. Then it times each.
2. The same list URLs on the 10,000-execution database: the 1.5x comparison.
3. The exports' memory: a fresh process serves history.txt / history.json
   once streamed (the body read chunk by chunk and dropped, as a WSGI server
   does) and once whole (the body joined in memory: what a non-streamed
   response would hold); the growth of its peak RSS (VmHWM, reset through
   /proc/self/clear_refs just before) is the memory the response cost.

Timing: Django's test client, in-process, signed in as a user who may stop
executions, with production settings (DEBUG off). The wall time of one
client.get() covers URL routing, every middleware, the view, its queries
and the template (for a streamed export: until the last chunk is read); it
leaves out the HTTP server and the network, which are not the app's (a live
server with requests would add a loopback round trip and the server's
threading to every figure, and CaptureQueriesContext could not see its
queries). Each variant: `--warmup` runs, then `--runs` timed ones (fewer for
the heavy history pages); median and p95. Queries: one more run under
CaptureQueriesContext (not timed), with the slowest statement.

On a loaded machine the wall times mostly measure the queue for a CPU. Each
run therefore also records the CPU time it cost (this process and its
PostgreSQL backend, from /proc/<pid>/schedstat); their sum is printed as
"idle": about what the run takes on an idle machine. Targets are judged on
both; the wall figures are the ones that count when the machine is quiet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import DEFAULT_REDIS_URL, ROOT, report, setup_django, summary

DB_1M = "postgres://postgres@127.0.0.1:5432/sfnui_bench_1m"
DB_10K = "postgres://postgres@127.0.0.1:5432/sfnui_bench_10k"
DB_10M = "postgres://postgres@127.0.0.1:5432/sfnui_bench_10m"
DB_1M_SQLITE = f"sqlite:///{ROOT / 'var' / 'bench' / 'sqlite' / 'sfnui_bench_1m.sqlite3'}"
OUT = ROOT / "var" / "bench" / "pages"
DEEP_PAGES = 20
USERNAME = "bench-operator"

TARGETS = {
    "list": {"median_ms": 50, "p95_ms": 100, "queries": 6, "vs_10k": 1.5},
    "detail": {"median_ms": 30},
    "history": {"median_ms": 400, "html_bytes": 2_000_000},
    "export": {"median_ms": 1000},
    # No figure of their own: at 10,000,000 within 1.5x of 1,000,000 (--compare).
    "state_machine": {},
}
# --compare: the larger database's page against the smaller one's.
COMPARE_TARGET = 1.5


# --- in the child processes ---------------------------------------------------------


def _django(database_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-pages-" + "x" * 40,
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "SFNUI_LOG_LEVEL": "WARNING",
            # Its own embedded broker and files, apart from other benchmarks.
            "SFNUI_VAR_DIR": str(OUT / "var"),
        }
    )
    # The production shape: PostgreSQL and Redis (the shared cache serves the
    # sync bar on every page).
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    setup_django(database_url)
    from django.conf import settings
    from django.core.management import call_command

    # One connection for the whole run (production reopens it every 60 s,
    # which costs nothing per page but would change the backend whose CPU
    # time is read).
    from django.db import connection

    settings.DATABASES["default"]["CONN_MAX_AGE"] = None
    connection.close()
    if not (Path(settings.STATIC_ROOT) / "staticfiles.json").exists():
        # DEBUG off serves hashed static names from the manifest.
        call_command("collectstatic", interactive=False, verbosity=0)


def _client() -> Any:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    user, _ = User.objects.get_or_create(username=USERNAME)
    user.user_permissions.add(Permission.objects.get(codename="stop_execution"))
    client = Client()
    client.force_login(user)
    return client


def _get(client: Any, url: str) -> tuple[int, int]:
    """(status, bytes) of one request, a streamed body read to its end."""
    response = client.get(url, secure=True)
    if response.streaming:
        size = 0
        for chunk in response.streaming_content:
            size += len(chunk)
        response.close()
        return response.status_code, size
    return response.status_code, len(response.content)


def _schedstat(pid: int | str) -> tuple[int, int]:
    """(ns on a CPU, ns waiting for one) of a task, from /proc/<pid>/schedstat
    (0, 0 where there is none)."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(on_cpu), int(waiting)


def _backend_pid() -> int:
    from django.db import connection

    connection.ensure_connection()
    if connection.vendor != "postgresql":
        return 0  # SQLite runs in this process: its CPU time is the app's
    raw: Any = connection.connection
    return int(raw.info.backend_pid)


def _time(client: Any, url: str, runs: int, warmup: int) -> dict[str, Any]:
    """Wall time of each run, and its CPU time: this process's plus its
    PostgreSQL backend's (/proc/*/schedstat). The two take turns (one query
    at a time), so on an idle machine a run takes about the sum; on a loaded
    one the wall time adds however long both waited for a CPU. The sum is
    the "idle" estimate (a little high: contention also slows the CPU work)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        status, size = _get(client, url)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
    backend = _backend_pid()
    walls, estimates, app_cpu, db_cpu = [], [], [], []
    for _ in range(runs):
        app0, db0 = _schedstat("self"), _schedstat(backend)
        t0 = time.perf_counter()
        _get(client, url)
        wall = time.perf_counter() - t0
        app1, db1 = _schedstat("self"), _schedstat(backend)
        walls.append(wall * 1000)
        app_cpu.append((app1[0] - app0[0]) / 1e6)
        db_cpu.append((db1[0] - db0[0]) / 1e6)
        estimates.append(min(app_cpu[-1] + db_cpu[-1], wall * 1000))
    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
    stats, est = summary(walls), summary(estimates)
    return {
        "url": url,
        "median_ms": round(stats["median"], 1),
        "p95_ms": round(stats["p95"], 1),
        "max_ms": round(stats["max"], 1),
        "idle_median_ms": round(est["median"], 1),
        "idle_p95_ms": round(est["p95"], 1),
        "app_cpu_ms": round(summary(app_cpu)["median"], 1),
        "db_cpu_ms": round(summary(db_cpu)["median"], 1),
        "runs": runs,
        "queries": len(captured.captured_queries),
        "slowest_query_ms": round(float(slowest["time"]) * 1000, 1) if slowest else None,
        "slowest_query": slowest["sql"][:300] if slowest else None,
        "bytes": size,
    }


def _list_url(params: dict[str, str]) -> str:
    from django.urls import reverse

    base = reverse("execution_list")
    return f"{base}?{urlencode(params)}" if params else base


def _deep(client: Any, params: dict[str, str], pages: int) -> tuple[str | None, int]:
    """The cursor `pages` pages down (following `older`), or as far as it goes."""
    from executions.reads import queries
    from executions.web.forms import ExecutionFilterForm

    cursor = None
    followed = 0
    for _ in range(pages):
        form = ExecutionFilterForm({**params, **({"cursor": cursor} if cursor else {})})
        assert form.is_valid(), form.errors
        page = queries.page(form.filters(), form.cleaned_data["cursor"])
        if page.older is None:
            break
        cursor = page.older.encode()
        followed += 1
    # Through the page too, so a broken cursor shows up here.
    if cursor is not None:
        status, _ = _get(client, _list_url({**params, "cursor": cursor}))
        assert status == 200
    return cursor, followed


def _rows(url: str) -> int:
    """How many executions a list URL shows."""
    from django.http import QueryDict

    from executions.reads import queries
    from executions.web.forms import ExecutionFilterForm

    form = ExecutionFilterForm(QueryDict(url.partition("?")[2]))
    assert form.is_valid(), form.errors
    return len(queries.page(form.filters(), form.cleaned_data["cursor"]).rows)


def make_plan(client: Any, skip_search: bool = False) -> dict[str, Any]:
    """The variants, chosen on this (the 1M) database."""
    from django.db.models import Max, Min
    from django.db.models.functions import Length
    from django.urls import reverse

    from executions.models import Execution, StateMachine
    from executions.reads.queries import Cursor
    from executions.web.forms import ExecutionFilterForm

    span = Execution.objects.aggregate(first=Min("start_date"), last=Max("start_date"))
    middle = span["first"] + (span["last"] - span["first"]) / 2
    middle = middle.replace(microsecond=0)
    months_back = (span["last"] - dt.timedelta(days=182)).replace(minute=0, second=0, microsecond=0)
    # Seeded: OrderPipeline is the busiest state machine, MlTraining the quietest.
    machines = list(StateMachine.objects.order_by("name").values_list("arn", "name"))
    by_name = {n: a for a, n in machines}
    big_sm = by_name.get("OrderPipeline", machines[0][0])
    small_sm = by_name.get("MlTraining", machines[-1][0])
    # A name fragment that few executions share: "-" and the 4 hex digits
    # that end a stamped name from the middle of the table (with a letter, so
    # that it is no date or time of day).
    samples = (
        Execution.objects.filter(name__startswith="order-", start_date__lte=middle)
        .order_by("-start_date")
        .values_list("name", flat=True)[:100]
    )
    few = next(
        ("-" + n.rsplit("-", 1)[-1] for n in samples if not n.rsplit("-", 1)[-1].isdigit()),
        "-7f3a",
    )
    filters: dict[str, dict[str, str]] = {
        "no filter": {},
        "status=FAILED": {"status": "FAILED"},
        "status=RUNNING": {"status": "RUNNING"},
        "state machine (big)": {"state_machine": big_sm},
        "state machine (small)": {"state_machine": small_sm},
        f"name search, few ({few!r})": {"q": few},
        "name search, many ('order')": {"q": "order"},
        # Matches that lie months back (a day's stamped names): a walk of the
        # start index would pass 700,000 rows before the first one.
        f"name search, one day ({middle:%Y%m%d})": {"q": f"{middle:%Y%m%d}"},
        "time range (30 days)": {
            "started_after": (middle - dt.timedelta(days=15)).isoformat(),
            "started_before": (middle + dt.timedelta(days=15)).isoformat(),
        },
        # Issue 15's variants. Fewer than 3 characters have no trigram: a
        # walk of 5,000 executions a page, which says so.
        "name search, 1 character ('x')": {"q": "x"},
        "name search, 2 characters ('zz')": {"q": "zz"},
        "name search, no match ('qqqqqq')": {"q": "qqqqqq"},
        # A day six months before the newest execution.
        f"name search, a day months back ({months_back:%Y%m%d})": {"q": f"{months_back:%Y%m%d}"},
        # In nearly every name (the seeded names are "<prefix>-<stamp>-<hex>").
        "name search, in every name ('-')": {"q": "-"},
        "status=TIMED_OUT": {"status": "TIMED_OUT"},
        "status=ABORTED": {"status": "ABORTED"},
        "time range (1 hour, six months back)": {
            "started_after": months_back.isoformat(),
            "started_before": (months_back + dt.timedelta(hours=1)).isoformat(),
        },
        "time range (open-ended: after, six months back)": {
            "started_after": months_back.isoformat()
        },
        "time range (open-ended: before, six months back)": {
            "started_before": months_back.isoformat()
        },
    }
    if skip_search:
        filters = {k: v for k, v in filters.items() if "q" not in v}
    lists: list[dict[str, Any]] = []
    for label, params in filters.items():
        form = ExecutionFilterForm(params)
        if not form.is_valid():
            # The search's syntax moves on (a lone "-" now leaves a term out).
            print(f"  skipped {label}: {form.errors.as_text()}", flush=True)
            continue
        lists.append({"name": f"list: {label}, first page", "url": _list_url(params)})
        cursor, followed = _deep(client, params, DEEP_PAGES)
        if cursor is not None:
            lists.append(
                {
                    "name": f"list: {label}, page {followed + 1}",
                    "url": _list_url({**params, "cursor": cursor}),
                }
            )
    jump = Cursor(middle, 2**62, forward=True).encode()
    lists.append({"name": "list: no filter, mid-year cursor", "url": _list_url({"cursor": jump})})

    def detail(qs: Any) -> str | None:
        arn = qs.values_list("arn", flat=True).first()
        return reverse("execution_detail", args=[arn]) if arn else None

    with_history = Execution.objects.filter(last_event_id__gt=0, last_event_id__lt=100)
    big = Execution.objects.order_by("-last_event_id").first()
    details = {
        "detail: succeeded": detail(with_history.filter(status="SUCCEEDED").order_by("-id")),
        "detail: failed (cause, failure point)": detail(
            with_history.filter(status="FAILED").order_by("-id")
        ),
        "detail: running (open states)": detail(
            with_history.filter(status="RUNNING").order_by("-id")
        ),
        "detail: 256 KiB input": detail(
            Execution.objects.annotate(size=Length("input")).filter(size__gt=250_000)
        ),
        "detail: the 25,000-event execution": reverse("execution_detail", args=[big.arn])
        if big
        else None,
    }
    pages = [{"name": k, "url": v} for k, v in details.items() if v]
    # Counts per status, failure rate, last start and the 24-hour chart of
    # every state machine (issue 15, item 6: they read the counts the
    # database keeps, not the executions table).
    pages.append({"name": "state machines: list", "url": reverse("state_machine_list")})
    for label, arn in (("big", big_sm), ("small", small_sm)):
        pages.append(
            {
                "name": f"state machine: detail ({label})",
                "url": reverse("state_machine_detail", args=[arn]),
            }
        )
    if big is not None and big.last_event_id > 1000:
        pages.append(
            {
                "name": f"history page: {big.last_event_id:,} events",
                "url": reverse("execution_history", args=[big.arn]),
                "heavy": True,
            }
        )
        for ext, view in (("txt", "execution_history_text"), ("json", "execution_history_json")):
            pages.append(
                {
                    "name": f"history.{ext}: {big.last_event_id:,} events",
                    "url": reverse(view, args=[big.arn]),
                    "heavy": True,
                    "export": True,
                }
            )
        typical = with_history.filter(status="SUCCEEDED").order_by("-id").first()
        if typical is not None:
            pages.append(
                {
                    "name": f"history page: {typical.last_event_id} events",
                    "url": reverse("execution_history", args=[typical.arn]),
                }
            )
    return {"lists": lists, "pages": pages, "few": few, "middle": middle.isoformat()}


def child_measure(args: argparse.Namespace) -> None:
    _django(args.database_url)
    from executions.models import Execution

    client = _client()
    plan_path = Path(args.plan)
    if args.make_plan:
        plan = make_plan(client, skip_search=args.skip_search)
        plan_path.write_text(json.dumps(plan, indent=2))
    plan = json.loads(plan_path.read_text())
    variants = list(plan["lists"]) if args.only in (None, "list") else []
    if not args.list_only and args.only in (None, "pages"):
        variants += [p for p in plan["pages"] if not (args.skip_heavy and p.get("heavy"))]
    results = []
    for v in variants:
        heavy = v.get("heavy", False)
        runs = args.heavy_runs if heavy else args.runs
        warmup = min(args.warmup, 2) if heavy else args.warmup
        r = _time(client, v["url"], runs, warmup)
        r["name"] = v["name"]
        if v["name"].startswith("list"):
            r["rows"] = _rows(v["url"])
        results.append(r)
        print(
            f"  {v['name']:<52} median {r['median_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
            f"(idle: {r['idle_median_ms']:6.1f} / {r['idle_p95_ms']:6.1f})  "
            f"{r['queries']:2d} queries  {r['bytes']:>10,} B",
            flush=True,
        )
    Path(args.out).write_text(
        json.dumps({"executions": Execution.objects.count(), "results": results}, indent=2)
    )


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def child_memory(args: argparse.Namespace) -> None:
    _django(args.database_url)
    client = _client()
    # Warm: imports, templates, the connection, a small export.
    from django.urls import reverse

    from executions.models import Execution

    small = Execution.objects.filter(last_event_id__gt=0, last_event_id__lt=100).first()
    assert small is not None
    for view in ("execution_history_text", "execution_history_json"):
        _get(client, reverse(view, args=[small.arn]))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _vm("VmRSS")
    t0 = time.perf_counter()
    response = client.get(args.url, secure=True)
    if args.whole:
        body = b"".join(response.streaming_content)
        size = len(body)
    else:
        size = 0
        for chunk in response.streaming_content:
            size += len(chunk)
    response.close()
    seconds = time.perf_counter() - t0
    peak = _vm("VmHWM")
    print(
        json.dumps(
            {
                "bytes": size,
                "seconds": round(seconds, 2),
                "rss_before_mb": round(before / 2**20, 1),
                "peak_growth_mb": round((peak - before) / 2**20, 1),
            }
        )
    )


# --- the parent ---------------------------------------------------------------------


def _run(argv: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pages", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout)
        raise SystemExit(f"bench.pages {' '.join(argv[:2])} failed ({proc.returncode})")
    return proc.stdout


def _measure(database_url: str, out: Path, *extra: str) -> dict[str, Any]:
    argv = ["--child", "measure", "--database-url", database_url, "--out", str(out), *extra]
    sys.stdout.write(_run(argv))
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--heavy-runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--db-1m", default=os.environ.get("BENCH_DB_1M", DB_1M))
    parser.add_argument("--db-10k", default=os.environ.get("BENCH_DB_10K", DB_10K))
    parser.add_argument("--only", choices=("list", "pages", "memory"))
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("BASE_URL", "OTHER_URL"),
        help="every page variant on two databases, each with the plan made on it, "
        "joined by name: OTHER / BASE (10,000,000 against 1,000,000; SQLite against "
        "PostgreSQL)",
    )
    parser.add_argument("--name", default="pages_compare", help="with --compare: results name")
    # Internal: one part in a child process.
    parser.add_argument("--child", choices=("measure", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--make-plan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--list-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-heavy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--skip-search",
        action="store_true",
        help="leave the name and text searches out (bench/search.py measures them)",
    )
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "measure":
        child_measure(args)
        return
    if args.child == "memory":
        child_memory(args)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    plan = OUT / "plan.json"
    # The static manifest as of this checkout (DEBUG off needs it).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-pages-exports-" + "x" * 40,
        },
        check=True,
    )
    if args.compare:
        compare(args)
        return
    common = ["--runs", str(args.runs), "--heavy-runs", str(args.heavy_runs)]
    common += ["--warmup", str(args.warmup), "--plan", str(plan)]
    only = ["--only", args.only] if args.only in ("list", "pages") else []
    load_before = _load()
    started = time.monotonic()
    big: dict[str, Any] = {"results": []}
    small: dict[str, Any] = {"results": []}
    if args.only != "memory":
        print(f"1,000,000: {args.db_1m}", flush=True)
        big = _measure(args.db_1m, OUT / "1m.json", "--make-plan", *common, *only)
        if args.only != "pages":
            print(f"10,000: {args.db_10k}", flush=True)
            small = _measure(args.db_10k, OUT / "10k.json", "--list-only", *common)
    memory: dict[str, Any] = {}
    if args.only in (None, "memory"):
        if not plan.exists():
            raise SystemExit("no plan yet: run without --only first")
        exports = [p for p in json.loads(plan.read_text())["pages"] if p.get("export")]
        for p in exports:
            for whole in (False, True):
                label = f"{p['name']}, {'whole body in memory' if whole else 'streamed'}"
                out = _run(
                    ["--child", "memory", "--database-url", args.db_1m, "--url", p["url"]]
                    + (["--whole"] if whole else [])
                )
                memory[label] = json.loads(out.strip().splitlines()[-1])
                print(f"  {label:<60} {memory[label]}", flush=True)

    at_10k = {r["url"]: r for r in small["results"]}
    rows = [_judged(r, at_10k.get(r["url"])) for r in big["results"]]
    report(
        "pages",
        {
            "executions": {"1m": big.get("executions"), "10k": small.get("executions")},
            "runs": args.runs,
            "heavy_runs": args.heavy_runs,
            "load_average_before": load_before,
            "load_average_after": _load(),
            "cpus": os.cpu_count(),
            "seconds": round(time.monotonic() - started),
            "targets": TARGETS,
            "pages": rows,
            "export_memory": memory,
        },
    )
    print()
    print(
        f"{'page':<50}{'median':>8}{'p95':>8}{'idle':>7}{'idle95':>7}{'q':>3}"
        f"{'x10k':>6}{'idle':>6}{'rows':>8}  misses (wall; idle estimate)"
    )
    for row in rows:
        shown = f"{row.get('rows', '')}/{row.get('rows_at_10k', '')}" if "rows" in row else ""
        print(
            f"{row['name'][:49]:<50}{row['median_ms']:8.1f}{row['p95_ms']:8.1f}"
            f"{row['idle_median_ms']:7.1f}{row['idle_p95_ms']:7.1f}{row['queries']:3d}"
            f"{row.get('vs_10k', ''):>6}{row.get('idle_vs_10k', ''):>6}{shown:>8}  "
            f"{','.join(row['misses']) or '-'}; {','.join(row['idle_misses']) or '-'}"
        )
    print("rows: shown at 1,000,000 / at 10,000; x10k is judged only where they match.")


def compare(args: argparse.Namespace) -> None:
    """Each database measured with the variants picked on it (its own ARNs,
    names and cursors); rows joined by variant name. The heavy history pages
    and exports are left out: one execution's history does not grow with the
    table."""
    common = ["--runs", str(args.runs), "--heavy-runs", str(args.heavy_runs)]
    common += ["--warmup", str(args.warmup)]
    load_before = _load()
    started = time.monotonic()
    measured = []
    for i, url in enumerate(args.compare):
        print(f"{url}", flush=True)
        plan = OUT / f"{args.name}-plan-{i}.json"
        out = OUT / f"{args.name}-{i}.json"
        argv = ["--make-plan", "--plan", str(plan), "--skip-heavy", *common]
        argv += ["--skip-search"] if args.skip_search else []
        measured.append({"url": url, "load_before": _load(), **_measure(url, out, *argv)})
        measured[-1]["load_after"] = _load()
    base = {r["name"]: r for r in measured[0]["results"]}
    rows = []
    for r in measured[1]["results"]:
        b = base.get(r["name"])
        row = {**r, "kind": _kind(r["name"])}
        if b is not None:
            row["base_median_ms"] = b["median_ms"]
            row["base_idle_median_ms"] = b["idle_median_ms"]
            row["base_queries"] = b["queries"]
            row["base_rows"] = b.get("rows")
            row["ratio"] = round(r["median_ms"] / b["median_ms"], 2)
            row["idle_ratio"] = round(r["idle_median_ms"] / b["idle_median_ms"], 2)
            row["misses"] = ["ratio"] if row["ratio"] > COMPARE_TARGET else []
        rows.append(row)
    report(
        args.name,
        {
            "base": {k: v for k, v in measured[0].items() if k != "results"},
            "other": {k: v for k, v in measured[1].items() if k != "results"},
            "runs": args.runs,
            "load_average_before": load_before,
            "load_average_after": _load(),
            "seconds": round(time.monotonic() - started),
            "target_ratio": COMPARE_TARGET,
            "pages": rows,
        },
    )
    print()
    print(f"{'page':<52}{'base':>8}{'other':>8}{'ratio':>7}{'idle':>7}{'q':>6}{'rows':>10}")
    for row in rows:
        print(
            f"{row['name'][:51]:<52}{row.get('base_median_ms', ''):>8}{row['median_ms']:>8}"
            f"{row.get('ratio', ''):>7}{row.get('idle_ratio', ''):>7}"
            f"{str(row.get('base_queries', '')) + '/' + str(row['queries']):>6}"
            f"{str(row.get('base_rows', '')) + '/' + str(row.get('rows', '')):>10}"
        )


def _kind(name: str) -> str:
    if name.startswith("state machine"):
        return "state_machine"
    if name.startswith("list"):
        return "list"
    if name.startswith("detail"):
        return "detail"
    return "export" if name.startswith("history.") else "history"


def _judged(r: dict[str, Any], at_10k: dict[str, Any] | None) -> dict[str, Any]:
    """The result with its kind, its ratio to the same page at 10,000, and the
    targets it misses by wall time and by the idle-machine estimate."""
    kind = _kind(r["name"])
    row = {**r, "kind": kind}
    if at_10k is not None:
        row["median_ms_at_10k"] = at_10k["median_ms"]
        row["idle_median_ms_at_10k"] = at_10k["idle_median_ms"]
        row["rows_at_10k"] = at_10k.get("rows")
        row["vs_10k"] = round(r["median_ms"] / at_10k["median_ms"], 2)
        row["idle_vs_10k"] = round(r["idle_median_ms"] / at_10k["idle_median_ms"], 2)
        # The same URL can show fewer rows at 10,000 (a quiet state machine, a
        # rare name): then the pages differ in more than the table size.
        row["like_for_like"] = r.get("rows") == at_10k.get("rows")
    target = TARGETS[kind]
    for prefix in ("", "idle_"):
        misses = [
            key
            for key, limit in (
                ("median_ms", target.get("median_ms")),
                ("p95_ms", target.get("p95_ms")),
                ("vs_10k", target.get("vs_10k")),
            )
            if limit is not None
            and prefix + key in row
            and row[prefix + key] > limit
            and (key != "vs_10k" or row["like_for_like"])
        ]
        if "queries" in target and row["queries"] > target["queries"]:
            misses.append("queries")
        if kind == "history" and r["bytes"] > TARGETS["history"]["html_bytes"]:
            misses.append("html_bytes")
        row[prefix + "misses"] = misses
    return row


if __name__ == "__main__":
    main()
