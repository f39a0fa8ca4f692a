"""docker-compose.yml, the Dockerfile and .env.example agree with the code.

No Docker engine runs here, so these read the files: every command names a
real module, Celery app or management command and parses with its real
options; every variable set is one the settings read (or boto3's, or the
postgres image's); host names, ports and URLs line up across services.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from celery import Celery
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from django.core.management import get_commands, load_command_class
from django.urls import resolve
from gunicorn.config import Config as GunicornConfig

from demo.__main__ import make_parser as demo_parser
from executions.views import health
from fakeaws import FaithfulStepFunctions

# No test here touches the database, but conftest's autouse `_isolated` clears
# the cache table: without one database test in the session, pytest-django
# sets up no test database and that would hit the real one.
pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "web", "worker", "beat", "events")
# What the postgres image reads, and boto3's credential chain.
EXTERNAL_PREFIXES = {"postgres": ("POSTGRES_",)}
BOTO3_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
}


# --- Reading the files ----------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if op in (":?", "?"):
            missing = not env.get(name) if op == ":?" else name not in env
            if missing:
                raise KeyError(f"compose would refuse to start without {name}: {arg}")
            return env[name]
        if op == ":-":
            return env.get(name) or arg
        if op == "-":
            return env.get(name, arg)
        return env.get(name, "")

    return _VARIABLE.sub(one, value)


def resolved(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolved(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolved(value, env) for key, value in node.items()}
    return node


def variables_used(node: Any) -> set[str]:
    if isinstance(node, str):
        return {m.group("name") for m in _VARIABLE.finditer(node) if m.group("name")}
    if isinstance(node, list):
        return set().union(*(variables_used(item) for item in node)) if node else set()
    if isinstance(node, dict):
        return set().union(*(variables_used(v) for v in node.values())) if node else set()
    return set()


def raw_compose() -> dict[str, Any]:
    # PyYAML's safe loader resolves the `<<: *app` merge keys as compose does.
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as `docker compose config` would see it, with the one
    required variable set and everything else at its default."""
    return resolved(raw_compose(), {"DJANGO_SECRET_KEY": "a-long-random-value"})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


class Dockerfile:
    def __init__(self, text: str) -> None:
        # Join continued lines, drop comments.
        joined = re.sub(r"\\\n", " ", text)
        self.stages: dict[str, list[tuple[str, str]]] = {}
        self.bases: dict[str, str] = {}
        current = ""
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            instruction, _, rest = line.partition(" ")
            instruction = instruction.upper()
            if instruction == "FROM":
                match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest.strip(), re.IGNORECASE)
                assert match, f"every stage is named: {line}"
                current = match.group(2)
                self.bases[current] = match.group(1)
                self.stages[current] = []
            else:
                self.stages[current].append((instruction, rest.strip()))

    def chain(self, stage: str) -> list[str]:
        """The stage and the stages it is built on, base first."""
        out = [stage]
        while self.bases.get(out[0]) in self.stages:
            out.insert(0, self.bases[out[0]])
        return out

    def instructions(self, stage: str, name: str) -> list[str]:
        return [rest for s in self.chain(stage) for (i, rest) in self.stages[s] if i == name]

    def last(self, stage: str, name: str) -> str:
        found = self.instructions(stage, name)
        assert found, f"stage {stage} has no {name}"
        return found[-1]

    def env(self, stage: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for rest in self.instructions(stage, "ENV"):
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                out[key] = value
        return out

    def exec_form(self, stage: str, name: str) -> list[str]:
        value = self.last(stage, name)
        if name == "HEALTHCHECK":
            value = value[value.index("CMD ") + 4 :]
        parsed = ast.literal_eval(value.strip())
        assert isinstance(parsed, list), f"{name} of {stage} uses the exec (JSON) form"
        return [str(item) for item in parsed]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile((ROOT / "Dockerfile").read_text())


def settings_variables() -> set[str]:
    """Every environment variable sfnui/settings.py reads."""
    tree = ast.parse((ROOT / "sfnui" / "settings.py").read_text())
    names: set[str] = set()
    readers = {
        "env_str",
        "env_bool",
        "env_int",
        "env_float",
        "env_list",
        "env_accounts",
        "getenv",
        "get",
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            is_environ = name != "get" or ast.unparse(func) == "os.environ.get"
            if name in readers and is_environ and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
        if (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(str(node.slice.value))
    return names


# --- Commands ---------------------------------------------------------------------------------


def check_command(args: list[str]) -> str:
    """Parse a service's command with the real program's own parser; returns
    what it runs ("gunicorn sfnui.wsgi", "celery worker", "manage.py migrate" ...)."""
    program = args[0]
    if program == "gunicorn":
        parsed = GunicornConfig(usage="", prog="gunicorn").parser().parse_args(args[1:])
        (module,) = parsed.args
        wsgi = importlib.import_module(module.split(":")[0])
        assert callable(getattr(wsgi, "application", None)), f"{module} has no application"
        return f"gunicorn {module}"
    if program == "celery":
        ctx = celery_cli.make_context("celery", args[1:])
        app_module = importlib.import_module(f"{ctx.params['app']}.celery")
        assert isinstance(app_module.app, Celery)
        ctx.obj = CLIContext(app=app_module.app, no_color=True, workdir=None, quiet=True)
        with warnings.catch_warnings():
            # Click 8.2 deprecates protected_args (the subcommand's name) for 9.0.
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*ctx.protected_args, *ctx.args]
        sub = celery_cli.get_command(ctx, rest[0])
        assert sub is not None, f"celery has no command {rest[0]}"
        sub.make_context(rest[0], rest[1:], parent=ctx)  # raises on an unknown option
        return f"celery {rest[0]}"
    if program == "python" and args[1] == "manage.py":
        name = args[2]
        assert name in get_commands(), f"no management command {name}"
        load_command_class(get_commands()[name], name).create_parser("manage.py", name).parse_args(
            args[3:]
        )
        return f"manage.py {name}"
    if program == "python" and args[1] == "-m":
        assert args[2] == "demo", f"unexpected module {args[2]}"
        assert importlib.util.find_spec("demo.__main__") is not None
        with contextlib.redirect_stderr(io.StringIO()):
            demo_parser().parse_args(args[3:])
        return "python -m demo"
    raise AssertionError(f"unknown program in {args}")


# Importing sfnui.wsgi builds the app; WhiteNoise notes that collectstatic has not run here.
@pytest.mark.filterwarnings("ignore:No directory at")
def test_every_app_command_names_a_real_program_and_parses(
    services: dict[str, dict[str, Any]], dockerfile: Dockerfile
) -> None:
    expected = {
        "migrate": "manage.py migrate",
        "web": "gunicorn sfnui.wsgi",
        "worker": "celery worker",
        "beat": "celery beat",
        "demo": "python -m demo",
    }
    for name, runs in expected.items():
        assert check_command(command(services[name])) == runs, name
    assert check_command(dockerfile.exec_form("app", "CMD")) == "gunicorn sfnui.wsgi"
    assert check_command(dockerfile.exec_form("demo", "CMD")) == "python -m demo"


def test_the_worker_health_check_is_a_real_celery_command(
    services: dict[str, dict[str, Any]],
) -> None:
    test = services["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    args = shlex.split(test[1].replace("$HOSTNAME", "host"))
    args = args[: args.index(">/dev/null")] if ">/dev/null" in args else args
    assert check_command(args) == "celery inspect"


def test_a_misspelt_option_would_be_caught() -> None:
    with pytest.raises(Exception, match="concurency"):
        check_command(["celery", "-A", "sfnui", "worker", "--concurency=4"])
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        check_command(["gunicorn", "sfnui.wsgi", "--wrkers", "3"])
    with pytest.raises(AssertionError, match="no management command"):
        check_command(["python", "manage.py", "migrat"])


# --- Environment ------------------------------------------------------------------------------


def test_every_variable_set_is_one_the_code_reads(services: dict[str, dict[str, Any]]) -> None:
    read = settings_variables()
    assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "SFNUI_REGIONS"} <= read
    for name, service in services.items():
        allowed_prefixes = EXTERNAL_PREFIXES.get(name, ())
        for variable in environment(service):
            ok = (
                variable in read
                or variable in BOTO3_VARIABLES
                or variable.startswith(allowed_prefixes)
            )
            assert ok, f"{name} sets {variable}, which nothing reads"


def test_the_app_runs_in_production_mode_and_needs_a_secret_key(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        env = environment(services[name])
        assert env["DJANGO_DEBUG"] == "false", name
        assert env["DJANGO_SECRET_KEY"] == "a-long-random-value", name
    with pytest.raises(KeyError, match="DJANGO_SECRET_KEY"):
        resolved(raw_compose(), {})


def test_env_example_documents_only_what_compose_reads() -> None:
    used = variables_used(raw_compose())
    documented = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            documented.add(match.group(1))
    assert documented <= used, f"not read by docker-compose.yml: {documented - used}"
    # And everything compose asks for is documented there.
    assert used <= documented, f"not in .env.example: {used - documented}"


# --- Hosts, ports, URLs -----------------------------------------------------------------------


def test_database_url_points_at_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    pg = environment(services["postgres"])
    assert services["postgres"]["image"].startswith("postgres:")
    for name in APP_SERVICES:
        url = urlsplit(environment(services[name])["DATABASE_URL"])
        assert url.scheme in ("postgres", "postgresql")
        assert url.hostname == "postgres"
        assert (url.port or 5432) == int(pg.get("PGPORT", 5432))
        assert url.username == pg["POSTGRES_USER"]
        assert url.password == pg["POSTGRES_PASSWORD"]
        assert url.path.lstrip("/") == pg["POSTGRES_DB"]
    with_password = resolved(
        raw_compose(), {"DJANGO_SECRET_KEY": "k", "POSTGRES_PASSWORD": "s3cret"}
    )["services"]
    assert urlsplit(environment(with_password["web"])["DATABASE_URL"]).password == "s3cret"
    assert environment(with_password["postgres"])["POSTGRES_PASSWORD"] == "s3cret"


def test_redis_url_points_at_the_redis_service(services: dict[str, dict[str, Any]]) -> None:
    assert services["redis"]["image"].startswith("redis:")
    for name in APP_SERVICES:
        url = urlsplit(environment(services[name])["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port or 6379) == ("redis", "redis", 6379)


def gunicorn_port(args: list[str]) -> int:
    parsed = GunicornConfig(usage="", prog="gunicorn").parser().parse_args(args[1:])
    (bind,) = parsed.bind
    return int(bind.rsplit(":", 1)[1])


def test_web_publishes_the_port_gunicorn_binds(
    services: dict[str, dict[str, Any]], dockerfile: Dockerfile
) -> None:
    bound = gunicorn_port(command(services["web"]))
    assert gunicorn_port(dockerfile.exec_form("app", "CMD")) == bound
    (published,) = services["web"]["ports"]
    assert int(str(published).rsplit(":", 1)[1]) == bound
    assert f"EXPOSE {bound}" in (ROOT / "Dockerfile").read_text()


def test_the_image_health_check_asks_healthz_on_the_gunicorn_port(
    services: dict[str, dict[str, Any]], dockerfile: Dockerfile
) -> None:
    check = dockerfile.exec_form("app", "HEALTHCHECK")
    assert check[:2] == ["python", "bin/healthcheck.py"]
    assert (ROOT / check[1]).is_file()
    url = urlsplit(check[2])
    assert url.hostname == "127.0.0.1"
    assert url.port == gunicorn_port(command(services["web"]))
    match = resolve(url.path)
    assert match.func is health.healthz
    assert match.url_name == "healthz"
    assert "healthcheck" not in services["web"], "web uses the image's"


def test_the_demo_endpoint_url_is_the_demo_service(
    services: dict[str, dict[str, Any]], dockerfile: Dockerfile
) -> None:
    demo = services["demo"]
    assert demo["profiles"] == ["demo"]
    assert demo["build"]["target"] == "demo"
    args = demo_parser().parse_args(command(demo)[3:])
    assert args.host == "0.0.0.0"  # noqa: S104 (inside its container)
    # What .env.example tells the app to use for the demo.
    text = (ROOT / ".env.example").read_text()
    (endpoint,) = re.findall(r"^#?\s*SFNUI_AWS_ENDPOINT_URL=(\S+)", text, re.MULTILINE)
    url = urlsplit(endpoint)
    assert (url.hostname, url.port) == ("demo", args.port)
    # The demo image's health check asks that port, on a path fakeaws answers.
    check = dockerfile.exec_form("demo", "HEALTHCHECK")
    (probe,) = re.findall(r"http://[^'\"]+", " ".join(check))
    probe_url = urlsplit(probe)
    assert probe_url.port == args.port
    answered: list[str] = []
    FaithfulStepFunctions(inner=lambda env, sr: [])(
        {"PATH_INFO": probe_url.path, "wsgi.input": io.BytesIO()},
        lambda status, headers, exc_info=None: answered.append(status),
    )
    assert answered == ["200 OK"]
    # And the app's services take the endpoint from there.
    with_demo = resolved(
        raw_compose(), {"DJANGO_SECRET_KEY": "k", "SFNUI_AWS_ENDPOINT_URL": endpoint}
    )["services"]
    for name in APP_SERVICES:
        assert environment(with_demo[name])["SFNUI_AWS_ENDPOINT_URL"] == endpoint, name


# --- Order and state ----------------------------------------------------------------------------


def test_the_app_waits_for_healthy_services_and_migrations(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["restart"] == "no"


def test_state_lives_on_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], dockerfile: Dockerfile
) -> None:
    declared = set(compose["volumes"])
    var_dir = dockerfile.env("app")["SFNUI_VAR_DIR"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["beat"]["volumes"]}
    # Beat keeps its schedule file in SFNUI_VAR_DIR.
    assert mounts.get(var_dir) in declared
    pg_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["postgres"]["volumes"]}
    assert pg_mounts.get("/var/lib/postgresql/data") in declared


def test_the_images_are_slim_unprivileged_and_pinned(dockerfile: Dockerfile) -> None:
    assert dockerfile.bases[dockerfile.chain("app")[0]] == "python:3.11-slim"
    for stage in ("app", "demo"):
        user = dockerfile.last(stage, "USER")
        assert user not in ("root", "0"), stage
    app_installs = " ".join(dockerfile.instructions("app", "RUN"))
    assert "pip install -r requirements.txt" in app_installs
    assert "requirements-dev" not in app_installs
    assert "requirements-demo" not in app_installs
    assert "collectstatic --noinput" in app_installs
    for name in ("requirements.txt", "requirements-demo.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r ")):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[0-9][\w.]*", line), line


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", ".env"} <= ignored
