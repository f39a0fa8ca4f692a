"""Browser journeys: Chromium (Debian's, driven by Playwright) against the live
server, a real Celery worker with beat, and moto in execute mode.

How a journey module is put together (tests/e2e/test_*.py):

- a module-scoped fixture creates its state machines and executions on the fake
  AWS once (`aws_world`), and a module-scoped `sync_worker` syncs them into the
  test database for the whole module;
- every test is transactional (the live server must see what is committed), so
  the database is flushed after each test: the worker, still running, fills the
  fresh database again from the same fake AWS, and `synced(...)` waits for that;
- `signed_in(page, user)` signs in through the real login form, and
  `screenshot(page, name)` saves the journey's final screen to
  test-results/screenshots/<database>/<name>.png;
- every page is watched: a JavaScript error, a static file that does not load,
  or a 5xx fails the test.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from playwright.sync_api import ConsoleMessage, Page, Request, Response, expect

from executions.models import Execution
from fakeaws import FakeAwsServer
from tests.conftest import REGION, ROLE
from tests.e2e.worker import Worker
from tests.support.helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# The passwords of the `user` and `operator` fixtures (tests/conftest.py).
PASSWORDS = {"viewer": "viewer-pass-123", "oncall": "oncall-pass-123"}
# Playwright's expect() waits this long by default here: the machine is shared
# and the sync is a real worker, so be generous (a passing check returns at once).
EXPECT_TIMEOUT_MS = 30_000


# --- The browser -----------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _chromium() -> None:
    """Debian's Chromium (Playwright's own browser download does not work on
    these machines). Without it the journeys skip, but in CI (SFNUI_CI=1) they
    fail: they must run there. Autouse, so that no worker is started first."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (as .ci/run does)"
        if os.environ.get("SFNUI_CI") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, headless unless --headed."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": browser_type_launch_args.get("headless", True),
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any], live_server: Any) -> dict[str, Any]:
    return {
        **browser_context_args,
        "base_url": live_server.url,
        "viewport": {"width": 1280, "height": 900},
        "locale": "en-US",
        "timezone_id": "UTC",
    }


@pytest.fixture(scope="session", autouse=True)
def _expect_timeout() -> None:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@dataclass
class PageProblems:
    """What went wrong in the browser while a journey ran."""

    problems: list[str] = field(default_factory=list)
    # How many times the page has set off to another document, and how many
    # times it had when each request went out: a stylesheet still loading when
    # the test moves on is cancelled by the browser (net::ERR_ABORTED), which
    # is no fault of the page.
    navigations: int = 0
    sent_at: dict[Request, int] = field(default_factory=dict)

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self.problems.append(f"JavaScript error: {exc}"))
        page.on("console", self._console)
        page.on("request", lambda request: self._request(page, request))
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _request(self, page: Page, request: Request) -> None:
        if request.is_navigation_request() and request.frame == page.main_frame:
            self.navigations += 1
        self.sent_at[request] = self.navigations

    def _console(self, message: ConsoleMessage) -> None:
        # "Failed to load resource" is reported (with its URL) by _response.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console error: {message.text}")

    def _response(self, response: Response) -> None:
        path = response.url.split("?", 1)[0]
        if response.status >= 500 or ("/static/" in path and response.status >= 400):
            self.problems.append(f"{response.status} for {response.request.method} {path}")

    def _failed(self, request: Request) -> None:
        if "/static/" not in request.url:
            return
        left_behind = self.sent_at.get(request, self.navigations) < self.navigations
        if left_behind and "ERR_ABORTED" in (request.failure or ""):
            return
        self.problems.append(f"{request.url} did not load: {request.failure}")


@pytest.fixture
def page(page: Page) -> Iterator[Page]:
    """pytest-playwright's page, watched: a test fails on a JavaScript error, a
    console error, a static file that does not load, or any 5xx."""
    page.set_default_timeout(EXPECT_TIMEOUT_MS)
    watcher = PageProblems()
    watcher.watch(page)
    yield page
    assert not watcher.problems, "the browser saw problems:\n" + "\n".join(watcher.problems)


def signed_in(page: Page, user: Any, path: str = "/executions/") -> Page:
    """Sign in through the real login form and land on `path`, with the page's
    CSS and scripts loaded."""
    page.goto(path)
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(PASSWORDS[user.username])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header .who")).to_contain_text(user.username)
    assert path_of(page) == path
    assert_assets_loaded(page)
    return page


def assert_assets_loaded(page: Page) -> None:
    """Every stylesheet and script of the page came with a 200, the CSS is
    applied and htmx is there."""
    page.wait_for_load_state("load")
    assets = page.evaluate(
        """() => {
            const status = Object.fromEntries(performance.getEntriesByType("resource")
                .map(e => [e.name, e.responseStatus]));
            return [...document.querySelectorAll("link[rel=stylesheet], script[src]")]
                .map(e => [e.href || e.src, status[e.href || e.src] ?? null]);
        }"""
    )
    names = [url.split("?", 1)[0].rsplit("/", 1)[-1] for url, _ in assets]
    assert {"app.css", "app.js"} <= set(names), assets
    assert any(n.startswith("htmx") for n in names), assets
    for url, status in assets:
        # No timing entry (or no status in it) when it came from the memory
        # cache: ask the server.
        if status != 200:
            assert page.request.get(url).status == 200, (url, status)
    assert page.evaluate(
        "typeof window.htmx === 'object' && typeof window.htmx.ajax === 'function'"
    )
    # app.css lays out the header as a flex row.
    expect(page.locator("header.top")).to_have_css("display", "flex")


@pytest.fixture(scope="session")
def screenshots_dir(pytestconfig: pytest.Config) -> Path:
    """test-results/screenshots/<database>, next to (not in) pytest-playwright's
    --output folder, which it empties at the start of every session. CI keeps
    it; its two runs (SQLite, PostgreSQL) each keep their own."""
    from django.db import connection

    folder = pytestconfig.rootpath / "test-results" / "screenshots" / connection.vendor
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(screenshots_dir: Path) -> Callable[[Page, str], Path]:
    def save(page: Page, journey: str) -> Path:
        path = screenshots_dir / f"{journey}.png"
        # caret="initial": hiding the caret injects a style the CSP refuses,
        # and htmx would copy the leftover style="" into swapped content.
        page.screenshot(path=str(path), full_page=True, caret="initial")
        return path

    return save


# --- The server side ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _e2e_settings(_isolated: None, settings: Any, fake_aws_server: FakeAwsServer) -> None:
    """The live server runs in this process: point it at the fake AWS (for the
    two things a page asks AWS directly: a lookup and a stop), and serve the
    static files without collectstatic (pytest-django's live server serves them
    from the finders; the manifest storage of DEBUG=False would need a manifest)."""
    settings.SFNUI_AWS_ENDPOINT_URL = fake_aws_server.url
    settings.SFNUI_REGIONS = [REGION]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@dataclass
class AwsWorld:
    """The fake AWS of one module: what its journeys run on."""

    server: FakeAwsServer
    sfn: Any
    state_machines: dict[str, str] = field(default_factory=dict)
    executions: dict[str, str] = field(default_factory=dict)

    def client(self, service: str, region: str = REGION) -> Any:
        make: Any = boto3.client  # its stubs know literal service names only
        return make(service, region_name=region, endpoint_url=self.server.url)

    def make_state_machine(
        self, name: str, definition: dict[str, Any], region: str = REGION
    ) -> str:
        client = self.sfn if region == REGION else self.client("stepfunctions", region)
        arn: str = client.create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        self.state_machines[name] = arn
        return arn

    def start(
        self, state_machine: str, name: str, payload: Any = None, region: str = REGION
    ) -> str:
        client = self.sfn if region == REGION else self.client("stepfunctions", region)
        arn: str = client.start_execution(
            stateMachineArn=self.state_machines.get(state_machine, state_machine),
            name=name,
            input=json.dumps({} if payload is None else payload),
        )["executionArn"]
        self.executions[name] = arn
        return arn

    def status(self, name_or_arn: str) -> str:
        arn = self.executions.get(name_or_arn, name_or_arn)
        status: str = self.sfn.describe_execution(executionArn=arn)["status"]
        return status

    def make_gate(self, name: str) -> Gate:
        """A state machine whose executions wait for the test to let them go."""
        sqs = self.client("sqs")
        queue_url: str = sqs.create_queue(QueueName=f"{name}-tokens")["QueueUrl"]
        definition = {
            "StartAt": "WaitForApproval",
            "States": {
                "WaitForApproval": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {
                        "QueueUrl": queue_url,
                        "MessageBody": {
                            "execution.$": "$$.Execution.Id",
                            "token.$": "$$.Task.Token",
                        },
                    },
                    "ResultPath": "$.approval",
                    "Next": "Ship",
                },
                "Ship": {"Type": "Pass", "End": True},
            },
        }
        return Gate(self, self.make_state_machine(name, definition), sqs, queue_url)


@dataclass
class Gate:
    """Executions of `arn` run a `.waitForTaskToken` task (its token goes to an
    SQS queue) and stay RUNNING until `release` sends the task's result: a
    running execution for exactly as long as a journey needs, with no timing
    to guess."""

    world: AwsWorld
    arn: str
    sqs: Any
    queue_url: str

    def release(self, execution_arn: str, output: Any = None, timeout: float = 30.0) -> None:
        def token() -> str | None:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                # Others' tokens stay in the queue for their own release.
                VisibilityTimeout=0,
            ).get("Messages", [])
            for message in messages:
                body = json.loads(message["Body"])
                if body["execution"] == execution_arn:
                    self.sqs.delete_message(
                        QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
                    return str(body["token"])
            return None

        self.world.sfn.send_task_success(
            taskToken=wait_for(token, timeout=timeout, interval=0),
            output=json.dumps({"approved": True} if output is None else output),
        )


@pytest.fixture(scope="module")
def aws_world(fake_aws_server: FakeAwsServer) -> Iterator[AwsWorld]:
    """A fake AWS emptied for this module (the function-scoped `fake_aws` would
    empty it before every test)."""
    fake_aws_server.reset()
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=fake_aws_server.url)
    yield AwsWorld(fake_aws_server, sfn)
    fake_aws_server.reset()


@pytest.fixture(scope="module")
def sync_worker(
    aws_world: AwsWorld,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """One real worker (with beat) for the module's journeys."""
    worker = Worker(aws_world.server.url, tmp_path_factory.mktemp("e2e-worker"))
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        print(f"--- worker log ({worker.log}) ---\n{worker.tail()}")
        # The worker kept writing after the last test's flush: leave the
        # database as empty as the tests that come next expect it.
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def synced(worker: Worker, *arns: str, timeout: float = 60.0) -> list[Execution]:
    """Wait until the worker has these executions in the cache with their whole
    history (finished) or some of it (running)."""

    def ready() -> list[Execution] | None:
        worker.assert_alive()
        rows = {
            ex.arn: ex
            for ex in Execution.objects.filter(arn__in=arns).select_related("state_machine")
        }
        if len(rows) < len(arns):
            return None
        for ex in rows.values():
            if ex.is_open and not ex.last_event_id:
                return None
            if not ex.is_open and not ex.history_complete:
                return None
        return [rows[a] for a in arns]

    result: list[Execution] = wait_for(ready, timeout=timeout, interval=0.25)
    return result


def path_of(page: Page) -> str:
    """The page's path and query, without the scheme and host."""
    return re.sub(r"^https?://[^/]+", "", page.url)
