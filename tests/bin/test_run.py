"""bin/run for real, as a new user runs it: the printed URL and sign-in work,
the pages show the demo's executions, the sync keeps up, Ctrl-C and SIGTERM
leave no process behind, and a second run reuses what the first made."""

from __future__ import annotations

import http.cookiejar
import importlib.util
import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakeaws import FakeAwsServer
from tests.conftest import ROLE
from tests.support.helpers import PASS, wait_for

pytestmark = [
    pytest.mark.worker,
    # conftest's autouse fixture clears the cache table: it needs the test database.
    pytest.mark.django_db,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc"),
]

ROOT = Path(__file__).resolve().parents[2]
DEMO_NAME = re.compile(r"\b(?:order|payment|invoice|nightly)-\d{8}-\d{4}-[0-9a-f]{4}\b")
# The promise: a page with demo executions within 90 s of the command.
FIRST_PAGE_WITHIN = 90.0
STOPPED_WITHIN = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    proc: subprocess.Popen[str]
    started: float
    lines: list[str] = field(default_factory=list)
    queue: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                match = re.search(pattern, line)
                if match:
                    return match
            seen = len(self.lines)
            assert self.proc.poll() is None, f"bin/run exited early:\n{self.output[-5000:]}"
            if time.monotonic() > deadline:
                raise AssertionError(f"no line like {pattern!r} in {timeout} s:\n{self.output}")
            time.sleep(0.2)


def run_env(var_dir: Path, port: int) -> dict[str, str]:
    """The environment of a new user with nothing configured: no AWS
    credentials (the tests' fake ones removed), no endpoint, no database URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SFNUI_", "DJANGO_", "PYTEST", "VENV_"))
        and k not in ("DATABASE_URL",)
    }
    env.update(
        SFNUI_VAR_DIR=str(var_dir),
        # Its own, as a fresh checkout has: and CI's two passes, side by
        # side, must not collect into one folder at once.
        SFNUI_STATIC_ROOT=str(var_dir.parent / "staticfiles"),
        SFNUI_PORT=str(port),
        # Neither the developer's ~/.aws nor an instance role of the CI host.
        AWS_CONFIG_FILE=str(var_dir.parent / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(var_dir.parent / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        # With REDIS_URL (CI's second pass) the worker must not take other tests' tasks.
        SFNUI_QUEUE=f"test-run-{port}",
    )
    return env


@pytest.fixture
def bin_run(tmp_path: Path) -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        print(f"--- bin/run output ---\n{run.output[-6000:]}")


def start(runs: list[Run], env: dict[str, str]) -> Run:
    proc = subprocess.Popen(
        [str(ROOT / "bin" / "run")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own session and process group, as a job started from a terminal.
        start_new_session=True,
    )
    run = Run(proc, time.monotonic())
    runs.append(run)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return run


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with self.opener.open(self.base + path.lstrip("/"), timeout=15) as r:
                return r.status, r.geturl(), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.geturl(), e.read().decode(errors="replace")

    def sign_in(self, user: str, password: str) -> None:
        status, _, page = self.get("accounts/login/")
        assert status == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "the login form has a CSRF token"
        form = urllib.parse.urlencode(
            {"username": user, "password": password, "csrfmiddlewaretoken": token.group(1)}
        ).encode()
        with self.opener.open(self.base + "accounts/login/", data=form, timeout=15) as r:
            assert "/accounts/login/" not in r.geturl(), "the printed sign-in was refused"


def rows(var_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{var_dir / 'sfnui.sqlite3'}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql).fetchall()


def session_processes(sid: int) -> list[str]:
    """Live processes (zombies aside) of the session bin/run started in."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(f"{stat.parent.name}: {cmdline.strip()}")
    return found


def wait_until_gone(sid: int, timeout: float) -> float:
    began = time.monotonic()
    while session_processes(sid):
        if time.monotonic() - began > timeout:
            left = "\n".join(session_processes(sid))
            raise AssertionError(f"still running {timeout} s after the stop:\n{left}")
        time.sleep(0.2)
    return time.monotonic() - began


def test_bin_run_serves_the_demo_and_stops_cleanly_then_reuses_it(
    bin_run: list[Run], tmp_path: Path
) -> None:
    var_dir = tmp_path / "var"
    port = free_port()
    run = start(bin_run, run_env(var_dir, port))

    # 1. The banner: URL and sign-in.
    url = run.wait_for_line(r"sfnui is running: open (http://\S+)", FIRST_PAGE_WITHIN).group(1)
    assert url == f"http://127.0.0.1:{port}/"
    user, password = run.wait_for_line(r"sign in as (\S+), password (\S+)", 5).groups()
    assert user == "demo"
    assert "the local demo endpoint http://127.0.0.1:" in run.output

    # 2. Signed in, the list shows the demo's executions.
    browser = Browser(url)
    assert browser.get("accounts/login/")[0] == 200
    browser.sign_in(user, password)
    status, final_url, page = browser.get("executions/")
    first_page_after = time.monotonic() - run.started
    cached = rows(var_dir, "SELECT name FROM executions_execution")
    assert cached, "the first sync ran before the banner"
    assert status == 200, (status, final_url)
    shown = set(DEMO_NAME.findall(page))
    assert shown, "the list shows demo executions"
    assert shown <= {name for (name,) in cached}
    assert first_page_after < FIRST_PAGE_WITHIN
    print(f"first page with demo executions {first_page_after:.1f} s after bin/run started")

    # 3. The worker and beat keep the cache in step with the endpoint: new
    # executions come in, failures arrive with their error and cause, the
    # hour-long batch is there running.
    first_count = len(cached)

    def live() -> bool:
        count = rows(var_dir, "SELECT count(*) FROM executions_execution")[0][0]
        failed = rows(
            var_dir,
            "SELECT count(*) FROM executions_execution "
            "WHERE status = 'FAILED' AND error != '' AND cause != ''",
        )[0][0]
        batch = rows(
            var_dir,
            "SELECT count(*) FROM executions_execution e JOIN executions_statemachine s "
            "ON e.state_machine_id = s.id WHERE s.name = 'nightly-batch' AND e.status = 'RUNNING'",
        )[0][0]
        return bool(count >= first_count + 5 and failed and batch)

    deadline = time.monotonic() + 60
    while not live():
        assert run.proc.poll() is None, run.output[-5000:]
        assert time.monotonic() < deadline, "the sync did not keep up with the demo"
        time.sleep(1)
    status, _, page = browser.get("executions/?status=FAILED")
    assert status == 200
    failed_names = set(DEMO_NAME.findall(page))
    assert failed_names, "the FAILED filter shows failed demo executions"
    assert failed_names <= {
        name
        for (name,) in rows(
            var_dir, "SELECT name FROM executions_execution WHERE status = 'FAILED'"
        )
    }

    # 4. Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
    arns_of_first_run = {arn for (arn,) in rows(var_dir, "SELECT arn FROM executions_execution")}
    os.killpg(run.proc.pid, signal.SIGINT)
    took = wait_until_gone(run.proc.pid, STOPPED_WITHIN)
    assert run.proc.wait(timeout=5) == 0
    assert "bin/run | stopped" in run.output
    print(f"Ctrl-C: every process gone in {took:.1f} s")

    # 5. A second run reuses the venv, the database and the sign-in, and
    # forgets the first demo's executions (its endpoint starts empty).
    again = start(bin_run, run_env(var_dir, port))
    again.wait_for_line(r"sfnui is running: open", FIRST_PAGE_WITHIN)
    assert again.wait_for_line(r"sign in as (\S+), password (\S+)", 5).groups() == (
        user,
        password,
    )
    assert "Installing" not in again.output
    assert "Creating .venv" not in again.output
    arns_now = {arn for (arn,) in rows(var_dir, "SELECT arn FROM executions_execution")}
    assert arns_now, "the second run's first sync filled the cache"
    assert not arns_now & arns_of_first_run
    browser = Browser(url)
    browser.sign_in(user, password)

    # 6. SIGTERM to bin/run alone (a process manager, `kill PID`) stops them all too.
    again.proc.send_signal(signal.SIGTERM)
    took = wait_until_gone(again.proc.pid, STOPPED_WITHIN)
    assert again.proc.wait(timeout=5) == 0
    print(f"SIGTERM: every process gone in {took:.1f} s")


def test_bin_run_refuses_a_port_in_use(bin_run: list[Run], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = start(bin_run, run_env(tmp_path / "var", port))
        assert run.proc.wait(timeout=60) == 1
    # Its last lines reach run.output through a reader thread: wait for them.
    wait_for(lambda: f"port {port} on 127.0.0.1 is in use" in run.output, timeout=10)
    assert session_processes(run.proc.pid) == []


def test_bin_run_skips_the_demo_and_syncs_a_configured_endpoint(
    bin_run: list[Run], tmp_path: Path, fake_aws: FakeAwsServer, sfn: Any
) -> None:
    arn = sfn.create_state_machine(name="team-etl", definition=json.dumps(PASS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    sfn.start_execution(stateMachineArn=arn, name="etl-1", input="{}")
    var_dir = tmp_path / "var"
    env = run_env(var_dir, free_port())
    env.update(
        SFNUI_AWS_ENDPOINT_URL=fake_aws.url,
        SFNUI_REGIONS="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        # Only to keep the test short: ticks every second instead of five.
        SFNUI_SYNC_TICK="1",
    )
    run = start(bin_run, env)
    run.wait_for_line(r"sfnui is running: open", FIRST_PAGE_WITHIN)
    assert f"AWS: the endpoint {fake_aws.url}; syncing us-east-1" in run.output
    assert not any(line.startswith("demo ") for line in run.lines)
    # The worker and beat sync what that endpoint has.
    deadline = time.monotonic() + 60
    while not rows(var_dir, "SELECT name FROM executions_execution WHERE name = 'etl-1'"):
        assert run.proc.poll() is None, run.output[-5000:]
        assert time.monotonic() < deadline, "the worker did not sync the configured endpoint"
        time.sleep(1)
    os.killpg(run.proc.pid, signal.SIGINT)
    wait_until_gone(run.proc.pid, STOPPED_WITHIN)
    assert run.proc.wait(timeout=5) == 0


def load_run_script() -> Any:
    spec = importlib.util.spec_from_file_location("bin_run_script", ROOT / "bin" / "_run.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_runs_only_without_aws_endpoint_or_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_run_script()
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert script.choose_demo({}) == (True, "no AWS endpoint or credentials are configured")
    assert script.choose_demo({"SFNUI_AWS_ENDPOINT_URL": "http://localstack:4566"}) == (
        False,
        "AWS: the endpoint http://localstack:4566",
    )
    assert script.choose_demo({"SFNUI_DEMO": "0"}) == (False, "SFNUI_DEMO is off")

    # Credentials from the environment ...
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert script.choose_demo({}) == (False, "AWS: credentials from env")
    assert script.choose_demo({"SFNUI_DEMO": "1"}) == (True, "SFNUI_DEMO is on")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # ... or a profile in the shared credentials file.
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    assert script.choose_demo({}) == (False, "AWS: credentials from shared-credentials-file")
    # A profile that does not exist is an error to fix, not a reason for the demo.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(script.Failed, match="no-such-profile"):
        script.choose_demo({})


def test_with_debug_off_it_collects_the_static_files_before_it_serves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = load_run_script()
    steps: list[list[str]] = []

    class Recorder(script.Supervisor):  # type: ignore[name-defined]
        def step(self, name: str, args: list[str], env: dict[str, str], show: bool = False) -> str:
            steps.append(args[2:])
            return "user: demo\npassword: pw\n"

    manage = ["python", "manage.py"]
    for debug in ("", "true", "1"):
        steps.clear()
        assert script.set_up(Recorder(), {"DJANGO_DEBUG": debug}, manage) == ("demo", "pw")
        assert ["collectstatic", "--noinput"] not in steps
    for debug in ("false", "0", "Off"):
        steps.clear()
        script.set_up(Recorder(), {"DJANGO_DEBUG": debug}, manage)
        assert steps == [["migrate", "--noinput"], ["collectstatic", "--noinput"], ["ensure_user"]]
    assert "DEBUG is off: collecting the static files" in capsys.readouterr().out


def test_bin_run_with_debug_off_serves_its_pages_and_static_files(
    bin_run: list[Run], tmp_path: Path
) -> None:
    """A fresh checkout has no collected static files; with DEBUG off every
    page linked to the manifest's hashed names and was a 500."""
    port = free_port()
    env = run_env(tmp_path / "var", port)
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="bin-run-debug-off-test-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # Plain HTTP on the loopback: the cookies must come back.
        SFNUI_SECURE_COOKIES="false",
        SFNUI_DEMO_EVENTS="0",
    )
    run = start(bin_run, env)
    url = run.wait_for_line(r"sfnui is running: open (http://\S+)", FIRST_PAGE_WITHIN).group(1)
    assert "DEBUG is off: collecting the static files" in run.output
    browser = Browser(url)
    status, _, page = browser.get("accounts/login/")
    assert status == 200, page[:2000]
    css = re.search(r'href="(/static/[^"]+\.[0-9a-f]{12}\.css)"', page)
    assert css, "the page links to a hashed (collected) stylesheet"
    assert browser.get(css.group(1))[0] == 200
    status, _, health = browser.get("healthz")
    assert status == 200, health
    assert json.loads(health)["static"] == {"ok": True}


def test_a_demo_that_ignores_the_stop_is_killed_at_its_own_grace_not_the_workers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded CI machine once saw the demo still running 15 s after
    Ctrl-C, while bin/run gave every child 20 s. The demo, which exits by
    itself within 5 s, gets a grace of its own; the worker keeps its 20 s."""
    script = load_run_script()
    monkeypatch.setattr(script, "GRACE_FOR", {"demo": 1.0})
    sup = script.Supervisor()
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    polite = "import time; time.sleep(60)"  # SIGTERM ends it at once
    sup.start("demo", [sys.executable, "-c", deaf], dict(os.environ))
    sup.start("worker", [sys.executable, "-c", polite], dict(os.environ))
    time.sleep(0.5)  # both have set up their signals (a longer wait changes nothing)
    began = time.monotonic()
    sup.stop_all()
    took = time.monotonic() - began
    demo, worker = sup.children["demo"], sup.children["worker"]
    assert demo.returncode == -signal.SIGKILL
    assert worker.returncode == -signal.SIGTERM
    assert "demo did not stop in 1 s: killing it" in capsys.readouterr().out
    # Killed at its own grace: nowhere near the worker's 20 s.
    assert took < script.GRACE / 2, took
