"""Real processes for the tests: Celery workers (with beat), a web server and a
Redis server of our own, each in a process group of its own so that a test can
kill it whole (prefork children included), as the kernel's OOM killer or a
node going away would."""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.db import connection


def database_url() -> str:
    """The test database, as a URL a subprocess can open."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process died before it listened on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {timeout} s") from None
            time.sleep(0.1)


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    log: Path
    name: str


@dataclass
class Processes:
    """Starts workers, web servers and Redis servers; stops every one of them at
    the end (by process group, so nothing is left behind)."""

    tmp: Path
    endpoint: str = ""
    started: list[Started] = field(default_factory=list)
    queue: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "SFNUI_AWS_ENDPOINT_URL": self.endpoint,
            "SFNUI_REGIONS": "us-east-1",
            "SFNUI_SYNC_TICK": "0.5",
            "SFNUI_RUNNING_MIN_INTERVAL": "1",
            "SFNUI_LIST_INTERVAL": "1",
            "SFNUI_LIST_IDLE_INTERVAL": "2",
            # Its own broker folder and queue, so that no other test's worker
            # takes its tasks.
            "SFNUI_VAR_DIR": str(self.tmp / "var"),
            "SFNUI_QUEUE": self.queue,
            "DJANGO_DEBUG": "true",
        }
        if django_settings.REDIS_URL:
            env["REDIS_URL"] = django_settings.REDIS_URL
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}-{len(self.started)}.log"
        proc = subprocess.Popen(
            args,
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started.append(Started(proc, log, name))
        return proc

    def worker(
        self, *extra: str, concurrency: int = 2, beat: bool = True, **env: str
    ) -> subprocess.Popen[bytes]:
        """`celery worker` (prefork) with beat embedded, on the test database."""
        n = len(self.started)
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sfnui",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if beat:
            args += ["--beat", "--schedule", str(self.tmp / f"beat-{n}")]
        return self._spawn("worker", [*args, *extra], self.env(**env))

    def consumer(self, *queues: str, **env: str) -> subprocess.Popen[bytes]:
        """`manage.py consume_events` on the test database, reading `queues`."""
        args = [sys.executable, "manage.py", "consume_events"]
        for url in queues:
            args += ["--queue", url]
        return self._spawn("consumer", args, self.env(**env))

    def web(self, **env: str) -> WebServer:
        """The web app under gunicorn, as in production, on a free port."""
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "sfnui.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--timeout",
            "60",
        ]
        proc = self._spawn("web", args, self.env(**env))
        wait_for_port(port, proc=proc)
        return WebServer(f"http://127.0.0.1:{port}", proc)

    def redis(self, port: int | None = None) -> RedisServer:
        """A redis-server of our own (never the machine's, which others use)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed")
        port = port or free_port()
        args = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmp),
        ]
        proc = self._spawn("redis", args, dict(os.environ))
        wait_for_port(port, proc=proc)
        return RedisServer(port, proc)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the whole process group: no shutdown, no cleanup, no acks."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_until_group_gone(proc.pid, kill=True)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        """SIGTERM to the group, SIGKILL after `timeout`; what the main process
        leaves behind (a pool child or an embedded beat still exiting on a busy
        machine: a CI run once found one alive 30 s on) is killed soon after."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(proc)
            except ProcessLookupError:
                pass
        try:
            wait_until_group_gone(proc.pid, timeout=5.0)
        except AssertionError:
            self.kill(proc)

    def close(self) -> None:
        # The test is over: no need for a graceful shutdown (a worker's takes
        # seconds, waiting for its beat).
        for started in reversed(self.started):
            self.kill(started.proc)
        for started in self.started:
            tail = started.log.read_text(errors="replace")[-3000:]
            print(f"--- {started.log.name} ---\n{tail}")

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (in parentheses) may hold spaces: split after it.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def wait_until_group_gone(pgid: int, timeout: float = 30.0, kill: bool = False) -> None:
    """Every process of the group has exited (prefork children go with the
    parent). With `kill`, SIGKILL again while waiting: a process forked as the
    first one was sent is killed too."""
    deadline = time.monotonic() + timeout
    while members := group_members(pgid):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"processes of group {pgid} still alive: {[describe(pid) for pid in members]}"
            )
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)


def describe(pid: int) -> str:
    """A process's number, state and command line, for a message."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} [{state}] {cmdline.strip()[:200]}"


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class WebServer:
    """A browser of sorts for a web server in another process: keeps cookies,
    signs in through the login form, posts forms with their CSRF token."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(
        self, path: str, data: dict[str, str] | None = None, timeout: float = 30.0
    ) -> Response:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body)  # noqa: S310 (loopback)
        if body is not None:
            req.add_header("Referer", self.url + path)
        started = time.monotonic()
        try:
            with self.opener.open(req, timeout=timeout) as r:
                status, headers, text = r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            status, headers, text = e.code, dict(e.headers), e.read().decode()
        return Response(status, headers, text, time.monotonic() - started)

    def get(self, path: str, timeout: float = 30.0) -> Response:
        return self.request(path, timeout=timeout)

    def post_form(self, path: str, fields: dict[str, str], timeout: float = 30.0) -> Response:
        """GET the page with the form, then POST it with `fields` and its hidden inputs."""
        page = self.get(path, timeout=timeout)
        assert page.status == 200, (path, page.status, page.text[:2000])
        data = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        data.update(fields)
        return self.request(path, data, timeout=timeout)

    def sign_in(self, username: str, password: str) -> Response:
        response = self.post_form("/accounts/login/", {"username": username, "password": password})
        assert response.status == 302, (response.status, response.text[:2000])
        return response


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str
    seconds: float


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
