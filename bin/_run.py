"""The second half of bin/run, in the project's .venv: set up, then supervise.

Migrates the database, makes sure the demo sign-in exists, and runs the web
server, a Celery worker and beat, and (when no AWS endpoint or credentials
are configured) the local demo Step Functions endpoint, all in the caller's
process group. Every child's output comes out prefixed with its name. Ctrl-C
(SIGINT to the group) or SIGTERM to this process stops them all; if one of
them dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# What the demo endpoint is: moto's default account in one region, and a
# second account (read through a role, as a real one would be) in another
# (demo/workflows.py).
DEMO_ACCOUNT = "123456789012"
DEMO_REGION = "us-east-1"
DEMO_OTHER_ACCOUNT = "210987654321"
DEMO_OTHER_REGION = "eu-west-1"
DEMO_ACCOUNTS = json.dumps(
    [
        {"regions": [DEMO_REGION]},
        {
            "role_arn": f"arn:aws:iam::{DEMO_OTHER_ACCOUNT}:role/sfnui-reader",
            "regions": [DEMO_OTHER_REGION],
            "name": "payments",
        },
    ]
)
EVENTS_QUEUE = re.compile(r"^SFNUI_EVENTS_QUEUE_URL=(\S+)$", re.MULTILINE)
DEMO_READY = re.compile(r"Step Functions endpoint on (http://\S+)")
# The demo should feel live: sync more often than a real account would allow.
DEMO_SETTINGS = {
    "SFNUI_SYNC_TICK": "2",
    "SFNUI_LIST_INTERVAL": "3",
    "SFNUI_LIST_MAX_INTERVAL": "15",
    "SFNUI_RUNNING_MIN_INTERVAL": "3",
    "SFNUI_DISCOVER_INTERVAL": "60",
}
# Seconds the children get to finish after the stop signal, before SIGKILL.
GRACE = 20.0
# The demo's own: it gives its calls 3 s and exits by itself 2 s later
# (demo/__main__.py, STOP_GRACE and its watchdog); should that fail too (a
# loaded CI machine once saw it still there 15 s after Ctrl-C), it is killed
# soon after, not when the worker's grace ends. Beat has nothing to finish
# but writing its schedule file (the last run of each entry: lost, it only
# makes the next start send the due syncs at once), and a loaded CI machine
# once saw it still there 15 s after Ctrl-C; the web server has only the
# requests in flight.
GRACE_FOR = {"demo": 8.0, "beat": 8.0, "web": 8.0}
STARTUP_TIMEOUT = 90.0


def say(message: str) -> None:
    with Supervisor.output_lock:
        print(f"bin/run | {message}", flush=True)


class Failed(Exception):
    """Setting up failed; the message says what and what to do."""


# --- Deciding ----------------------------------------------------------------------------


def aws_in_use(env: dict[str, str]) -> str | None:
    """What points the app at AWS ("the endpoint ...", "credentials from ..."), or None."""
    if env.get("SFNUI_AWS_ENDPOINT_URL"):
        return f"the endpoint {env['SFNUI_AWS_ENDPOINT_URL']}"
    # boto3's chain, as the app will see it. The instance-role step asks the
    # metadata endpoint, which does not answer off EC2: keep that short, and
    # give up on the whole look-up after a few seconds.
    os.environ.setdefault("AWS_METADATA_SERVICE_TIMEOUT", "1")
    os.environ.setdefault("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")

    def look() -> None:
        import boto3

        try:
            creds = boto3.session.Session().get_credentials()
        except Exception as exc:
            # A misspelt AWS_PROFILE, a broken config file: say so rather
            # than quietly show the demo to someone who asked for AWS.
            problems.append(f"{type(exc).__name__}: {exc}")
            return
        if creds is not None:
            found.append(creds.method)

    found: list[str] = []
    problems: list[str] = []
    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    thread.join(timeout=6)
    if problems:
        raise Failed(
            f"could not read the AWS credentials ({problems[0]}): fix that, or set SFNUI_DEMO=1"
        )
    return f"credentials from {found[0]}" if found else None


def choose_demo(env: dict[str, str]) -> tuple[bool, str]:
    forced = env.get("SFNUI_DEMO", "").lower()
    if forced in ("1", "true", "yes", "on"):
        return True, "SFNUI_DEMO is on"
    if forced in ("0", "false", "no", "off"):
        return False, "SFNUI_DEMO is off"
    used = aws_in_use(env)
    if used:
        return False, f"AWS: {used}"
    return True, "no AWS endpoint or credentials are configured"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- Running -----------------------------------------------------------------------------


class Supervisor:
    output_lock = threading.Lock()

    def __init__(self) -> None:
        # Started from the main thread and from setup threads while other
        # threads read it: always iterate over a copy (list(...)).
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.readers: list[threading.Thread] = []
        self.stop_requested = threading.Event()
        self.signals = 0
        self._watches: dict[str, tuple[re.Pattern[str], list[str], threading.Event]] = {}

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.stop_requested.set()
        if self.signals > 1:
            # A second Ctrl-C: no more waiting. SIGQUIT is Celery's cold
            # shutdown (it takes its pool processes along) and ends the others.
            for proc in list(self.children.values()):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGQUIT)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.children[name] = proc
        reader = threading.Thread(target=self._relay, args=(name, proc), daemon=True)
        reader.start()
        self.readers.append(reader)

    def watch(self, name: str, pattern: re.Pattern[str]) -> Callable[[float], str]:
        """Returns a function that waits for the first line of `name` matching
        `pattern` and gives its first group."""
        found: list[str] = []
        event = threading.Event()
        self._watches[name] = (pattern, found, event)

        def wait(timeout: float) -> str:
            deadline = time.monotonic() + timeout
            while not event.wait(0.2):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise Failed(f"{name} did not get ready in {timeout:.0f} s")
            return found[0]

        return wait

    def _relay(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            watch = self._watches.get(name)
            if watch and not watch[2].is_set():
                match = watch[0].search(line)
                if match:
                    watch[1].append(match.group(1))
                    watch[2].set()
            with self.output_lock:
                print(f"{name:<7} | {line}", flush=True)

    def check_alive(self) -> None:
        if self.stop_requested.is_set():
            raise Failed("stopped")
        for name, proc in list(self.children.items()):
            code = proc.poll()
            if code is not None:
                raise Failed(f"{name} exited with code {code}")

    def step(self, name: str, args: list[str], env: dict[str, str], show: bool = False) -> str:
        """Run a setup command to the end; its output, or Failed with it."""
        self.check_alive()
        result = subprocess.run(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        out = result.stdout.decode(errors="replace")
        if result.returncode != 0 or show:
            with self.output_lock:
                for line in out.splitlines():
                    print(f"{name:<7} | {line}", flush=True)
        if result.returncode != 0:
            raise Failed(f"{' '.join(args[1:])} failed (exit code {result.returncode})")
        self.check_alive()
        return out

    def wait(self) -> int:
        """Until a stop signal (0) or a child's death (1)."""
        while not self.stop_requested.wait(0.3):
            for name, proc in list(self.children.items()):
                code = proc.poll()
                if code is not None:
                    say(f"{name} exited with code {code}: stopping the others")
                    return 1
        return 0

    def stop_all(self) -> None:
        """SIGTERM to every child still running, then SIGKILL after its grace (GRACE,
        or GRACE_FOR[name])."""
        for proc in list(self.children.values()):
            if proc.poll() is None:
                # After a Ctrl-C they already have SIGINT; SIGTERM covers a
                # `kill` of this process alone. Both mean "shut down cleanly".
                proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # The quickest to give up on first: a hung demo is killed at its own
        # grace while the worker is still finishing its tasks.
        by_grace = sorted(self.children.items(), key=lambda item: GRACE_FOR.get(item[0], GRACE))
        for name, proc in by_grace:
            grace = GRACE_FOR.get(name, GRACE)
            try:
                proc.wait(timeout=max(0.1, signalled + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in {grace:.0f} s: killing it")
                proc.kill()
                proc.wait()
        for reader in self.readers:
            reader.join(timeout=2)


def wait_for_http(sup: Supervisor, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        sup.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our loopback)
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise Failed(f"{url} did not answer in {timeout:.0f} s")
        time.sleep(0.25)


def parse_sign_in(output: str) -> tuple[str, str]:
    fields = dict(
        line.split(": ", 1)
        for line in output.splitlines()
        if line.startswith(("user: ", "password: "))
    )
    return fields["user"], fields["password"]


def debug_is_off(env: dict[str, str]) -> bool:
    """DJANGO_DEBUG as the settings read it (a value they refuse is theirs to report)."""
    return env.get("DJANGO_DEBUG", "").strip().lower() in ("0", "false", "no", "off")


def set_up(sup: Supervisor, env: dict[str, str], manage: list[str]) -> tuple[str, str]:
    """The database migrated, the static files collected when DEBUG is off,
    and the sign-in; returns the sign-in (user, password)."""
    sup.step("migrate", [*manage, "migrate", "--noinput"], env)
    if debug_is_off(env):
        # Then every page links to the hashed names of collectstatic's
        # manifest, and WhiteNoise serves only what it collected: without
        # it every page is a 500 ("Missing staticfiles manifest entry").
        say("DEBUG is off: collecting the static files (manage.py collectstatic)")
        sup.step("static", [*manage, "collectstatic", "--noinput"], env)
    return parse_sign_in(sup.step("user", [*manage, "ensure_user"], env))


def sync_once(sup: Supervisor, args: list[str], env: dict[str, str]) -> None:
    try:
        sup.step("sync", args, env, show=True)
    except Failed as exc:
        if not sup.stop_requested.is_set():
            say(f"the first sync failed ({exc}); the worker will try again")


def run(sup: Supervisor, env: dict[str, str], port: int) -> None:
    demo, why = choose_demo(env)
    manage = [PYTHON, "manage.py"]
    level = env.get("SFNUI_LOG_LEVEL") or "WARNING"
    if demo:
        say(f"starting the local demo Step Functions endpoint ({why})")
        # It seeds while the database is migrated.
        sup.start("demo", [PYTHON, "-m", "demo", "--region", DEMO_REGION], env)
        demo_ready = sup.watch("demo", DEMO_READY)
    else:
        # As the settings read it.
        regions = env.get("SFNUI_REGIONS") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        say(f"{why}; syncing {regions}")

    user, password = set_up(sup, env, manage)

    first_sync: threading.Thread | None = None
    if demo:
        # The endpoint starts empty every time: what the cache kept of the
        # last demo is gone from "AWS".
        for account in (DEMO_ACCOUNT, DEMO_OTHER_ACCOUNT):
            sup.step("forget", [*manage, "forget", "--account", account], env)
        endpoint = demo_ready(60)
        env["SFNUI_AWS_ENDPOINT_URL"] = endpoint
        env["SFNUI_REGIONS"] = DEMO_REGION
        env.setdefault("SFNUI_ACCOUNTS", DEMO_ACCOUNTS)
        # The demo endpoint checks no signature, but boto3 signs every request.
        env["AWS_ACCESS_KEY_ID"] = "demo"
        env["AWS_SECRET_ACCESS_KEY"] = "demo"  # noqa: S105
        env["AWS_DEFAULT_REGION"] = DEMO_REGION
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(name, None)
        for name, value in DEMO_SETTINGS.items():
            env.setdefault(name, value)
        if env.get("SFNUI_DEMO_EVENTS", "1").lower() not in ("0", "false", "no", "off"):
            # Events on, as a real account with the CloudFormation stack has
            # them: the demo endpoint emits Step Functions' events into its
            # EventBridge, and this routes them to a queue the consumer reads.
            made = sup.step("setup", [*manage, "setup_events"], env)
            found = EVENTS_QUEUE.search(made)
            if found is None:
                raise Failed("setup_events printed no queue URL")
            env["SFNUI_EVENTS_QUEUE_URL"] = found.group(1)
        # One sync in the foreground, while the servers start, so that the
        # first page already shows executions.
        first_sync = threading.Thread(
            target=sync_once, args=(sup, [*manage, "sync"], dict(env)), daemon=True
        )
        first_sync.start()

    celery = [PYTHON, "-m", "celery", "-A", "sfnui", "--quiet"]
    sup.start(
        "worker",
        [
            *celery,
            "worker",
            f"--loglevel={level}",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )
    sup.start("beat", [*celery, "beat", f"--loglevel={level}"], env)
    if env.get("SFNUI_EVENTS_QUEUE_URL"):
        sup.start("events", [*manage, "consume_events"], env)
    sup.start("web", [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"], env)
    url = f"http://127.0.0.1:{port}/"
    wait_for_http(sup, f"{url}accounts/login/", STARTUP_TIMEOUT)
    if first_sync is not None:
        first_sync.join(timeout=STARTUP_TIMEOUT)
        sup.check_alive()

    lines = [
        "",
        f"sfnui is running: open {url}",
        f"  sign in as {user}, password {password}",
    ]
    if demo:
        lines.append(f"  AWS: the local demo endpoint {env['SFNUI_AWS_ENDPOINT_URL']} ({why})")
    else:
        lines.append(f"  {why}")
    if env.get("SFNUI_EVENTS_QUEUE_URL"):
        lines.append(f"  events: from {env['SFNUI_EVENTS_QUEUE_URL']} (polling reconciles)")
    else:
        lines.append("  events: off (polling only; see README, Events)")
    lines += ["  Ctrl-C stops everything.", ""]
    with sup.output_lock:
        print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="bin/run",
        description="Start sfnui on this machine: web server, Celery worker and beat, and, "
        "when no AWS endpoint or credentials are configured, a local demo endpoint. "
        "SFNUI_PORT (8000) sets the web port; SFNUI_DEMO=1 / 0 forces the demo on / off; "
        "SFNUI_DEMO_USER and SFNUI_DEMO_PASSWORD set the sign-in. See README.md.",
    ).parse_args(argv)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    try:
        port = int(env.get("SFNUI_PORT") or 8000)
    except ValueError:
        say(f"SFNUI_PORT must be a port number, not {env['SFNUI_PORT']!r}")
        return 2
    if not port_is_free(port):
        say(f"port {port} on 127.0.0.1 is in use: stop what listens there, or set SFNUI_PORT")
        return 1

    sup = Supervisor()
    signal.signal(signal.SIGINT, sup.on_signal)
    signal.signal(signal.SIGTERM, sup.on_signal)
    code = 0
    try:
        run(sup, env, port)
        code = sup.wait()
    except Failed as exc:
        if not sup.stop_requested.is_set():
            say(f"{exc}; stopping")
            code = 1
    finally:
        sup.stop_all()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
