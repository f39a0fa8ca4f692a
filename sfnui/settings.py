"""sfnui settings: one file, read from the environment (see README.md, "Settings")."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
# Everything the app writes on its own (SQLite file, embedded broker, beat
# schedule) lives here, so a checkout stays clean and `rm -r var` resets it.
# Settings only name folders: each process makes them when Django starts
# (executions/apps.py), before anything opens them.
VAR_DIR = Path(env_str("SFNUI_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEVELOPMENT_SECRET_KEY = "django-insecure-sfnui-development-key-do-not-use-in-production"  # noqa: S105
# Set but empty (a .env line left blank) is as good as unset.
SECRET_KEY = env_str("DJANGO_SECRET_KEY").strip() or DEVELOPMENT_SECRET_KEY
DEBUG = env_bool("DJANGO_DEBUG", True)
if not DEBUG and SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is off but DJANGO_SECRET_KEY is the development key: "
        "set DJANGO_SECRET_KEY to a long random value."
    )


def weak_secret_key(key: str) -> str:
    """Why `key` fails Django's own rule (check --deploy's security.W009), or ""."""
    if key.startswith("django-insecure-"):
        return "starts with django-insecure-"
    if len(key) < 50:
        return f"has {len(key)} characters"
    different = len(set(key))
    if different < 5:
        return f"has {different} different character{'' if different == 1 else 's'}"
    return ""


# Production refuses what `check --deploy` would only warn about. The key
# itself is never in the message: even a weak one may be the real one.
if not DEBUG and (_weak := weak_secret_key(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DJANGO_DEBUG is off but DJANGO_SECRET_KEY {_weak}: in production it needs "
        "at least 50 characters, 5 or more of them different, e.g. from "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "axes",
    "executions",
    "alerts",
    "preferences",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every answer, error pages included.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Sign-in waits seconds, not 30 s, for a database another writer holds,
    # and a page that must write then answers 503 (before the session's save).
    "executions.database.busy.DatabaseBusyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A database that is gone, full or too slow: 503 with a message, not 500
    # (loads the user, so before the sign-in check; sets the web process's
    # statement timeout).
    "executions.database.unavailable.DatabaseUnavailableMiddleware",
    # Every page needs a signed-in user unless its view says
    # @login_not_required (/healthz, the login page).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Cache-Control: private, no-store on whatever a signed-in person gets.
    "executions.web.middleware.PrivatePagesMiddleware",
    # Who asks, for the per-user allowance of AWS lookups (ratelimit.py).
    "executions.web.middleware.RequesterMiddleware",
    # The admin's 500 for an empty ?_to_field=, as a 400 (after the sign-in).
    "executions.web.middleware.AdminEmptyToFieldMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "executions.web.middleware.TimezoneMiddleware",
    "executions.web.middleware.RefusalMessageMiddleware",
    "executions.web.middleware.PageErrorMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "sfnui.urls"
WSGI_APPLICATION = "sfnui.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "executions.web.context_processors.sync_status",
                "executions.web.context_processors.permissions",
                "preferences.context_processors.theme",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'sfnui.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat share one file: WAL lets pages read
    # while the sync writes, and IMMEDIATE makes writers queue for the lock
    # instead of failing with "database is locked" halfway through.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that a Celery worker started by a test sees the
    # test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
# A server that does not answer (a host gone, packets dropped) fails the
# connection after this long instead of libpq's "for ever"; a query string
# in DATABASE_URL (?connect_timeout=) wins.
SFNUI_DB_CONNECT_TIMEOUT = env_int("SFNUI_DB_CONNECT_TIMEOUT", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", SFNUI_DB_CONNECT_TIMEOUT
    )
    # No JIT: a page's statements run in milliseconds, and a branch the
    # planner prices high but never runs (a search's fallback to the index,
    # gated on the walk coming up short) made PostgreSQL compile the whole
    # statement first: 25 ms of JIT for a 1 ms query. `?options=` in
    # DATABASE_URL wins.
    DATABASES["default"]["OPTIONS"].setdefault("options", "-c jit=off")
# Seconds a statement of a web request may run on PostgreSQL before it is
# cancelled and the page answers 503; 0: no limit. The web process only
# (executions/database/unavailable.py): the sync and migrations are not bounded.
SFNUI_DB_STATEMENT_TIMEOUT = env_float("SFNUI_DB_STATEMENT_TIMEOUT", 10.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "sfnui",
            # A page must not hang on a Redis that is down.
            # No redis-py retries either: a Redis that hangs must cost a page
            # about two seconds, not several times that.
            "OPTIONS": {
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "retry": Retry(NoBackoff(), 0),
            },
        }
    }
else:
    # Every process (web, worker, beat) must see the same locks.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "sfnui_cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/executions/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# django-axes first: a locked-out sign-in is refused before any password is
# checked (the login form and the API's Basic auth alike).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic puts them (bin/run with DEBUG off, the image build).
STATIC_ROOT = Path(env_str("SFNUI_STATIC_ROOT", str(BASE_DIR / "staticfiles"))).resolve()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("SFNUI_LOG_LEVEL", "INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # One INFO line from every process at start is noise.
        "axes": {"level": "WARNING"},
    },
}

# --- AWS -------------------------------------------------------------------

SFNUI_REGIONS = env_list("SFNUI_REGIONS", [env_str("AWS_DEFAULT_REGION") or "us-east-1"])


def env_accounts(name: str) -> list[dict[str, object]]:
    """SFNUI_ACCOUNTS: the accounts to read, as JSON. Each entry is an IAM role to
    assume (`role_arn`, optional `external_id`) or, without `role_arn`, the one
    identity of boto3's chain; `regions` defaults to SFNUI_REGIONS. Unset: that
    one identity in SFNUI_REGIONS (see executions/aws.py, "Targets")."""
    import json
    import re

    value = os.environ.get(name, "").strip()
    if not value:
        return []
    try:
        entries = json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a JSON list of accounts: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ImproperlyConfigured(f"{name} must be a non-empty JSON list of accounts")
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{name}[{i}]"
        if not isinstance(entry, dict):
            raise ImproperlyConfigured(f'{where} must be an object like {{"role_arn": ...}}')
        unknown = set(entry) - {"role_arn", "external_id", "regions", "name"}
        if unknown:
            raise ImproperlyConfigured(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        role_arn = str(entry.get("role_arn") or "").strip()
        if role_arn and not re.fullmatch(
            r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}", role_arn, re.ASCII
        ):
            raise ImproperlyConfigured(
                f"{where}.role_arn {role_arn[:100]!r} is not an IAM role ARN"
            )
        regions = entry.get("regions") or SFNUI_REGIONS
        if isinstance(regions, str):
            regions = [r.strip() for r in regions.split(",") if r.strip()]
        if not isinstance(regions, list) or not all(
            isinstance(r, str) and re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", r)
            for r in regions
        ):
            raise ImproperlyConfigured(f"{where}.regions must be a list of AWS region names")
        key = role_arn.split(":")[4] if role_arn else "default"
        if key in seen:
            raise ImproperlyConfigured(f"{where}: account {key} is named twice")
        seen.add(key)
        out.append(
            {
                "role_arn": role_arn,
                "external_id": str(entry.get("external_id") or ""),
                "regions": list(dict.fromkeys(regions)),
                "name": str(entry.get("name") or ""),
            }
        )
    return out


# Empty: the one identity of boto3's chain, in SFNUI_REGIONS.
SFNUI_ACCOUNTS = env_accounts("SFNUI_ACCOUNTS")
SFNUI_AWS_ENDPOINT_URL = env_str("SFNUI_AWS_ENDPOINT_URL") or None
SFNUI_AWS_CONNECT_TIMEOUT = env_float("SFNUI_AWS_CONNECT_TIMEOUT", 3.0)
SFNUI_AWS_READ_TIMEOUT = env_float("SFNUI_AWS_READ_TIMEOUT", 10.0)
# botocore's "standard" retry mode; each attempt is counted and paid for from
# the budget below.
SFNUI_AWS_MAX_ATTEMPTS = env_int("SFNUI_AWS_MAX_ATTEMPTS", 3)
# Seconds for all the attempts of one call together (the timeouts above are
# per attempt), and for all the calls a page makes while someone waits for it
# (a lookup of an ARN the cache lacks, a stop). gunicorn's --timeout (Dockerfile,
# docker-compose.yml) stays well above the page deadline.
SFNUI_AWS_CALL_DEADLINE = env_float("SFNUI_AWS_CALL_DEADLINE", 20.0)
SFNUI_AWS_PAGE_DEADLINE = env_float("SFNUI_AWS_PAGE_DEADLINE", 5.0)
# `manage.py sync` starts no new work after this many seconds (what is left
# is the next sync's).
SFNUI_SYNC_CYCLE_DEADLINE = env_float("SFNUI_SYNC_CYCLE_DEADLINE", 300.0)

# The share of each AWS quota the sync may spend; the rest stays for the
# console, deploys and the workflows themselves.
SFNUI_API_SHARE = env_float("SFNUI_API_SHARE", 0.5)
if not 0 < SFNUI_API_SHARE <= 1:
    raise ImproperlyConfigured("SFNUI_API_SHARE must be above 0 and at most 1")
# How long one call may wait for budget before the sync gives the work back
# and tries later.
SFNUI_API_MAX_WAIT = env_float("SFNUI_API_MAX_WAIT", 5.0)
# Token buckets per account and region: (burst, refill per second). Defaults
# are AWS's us-east-1 numbers; SFNUI_API_QUOTAS="ListExecutions=100/2,..."
# overrides them for smaller regions.
SFNUI_API_QUOTAS: dict[str, tuple[float, float]] = {
    "ListStateMachines": (100, 5),
    "DescribeStateMachine": (200, 20),
    "ListExecutions": (200, 5),
    "DescribeExecution": (300, 15),
    "GetExecutionHistory": (400, 20),
    "StopExecution": (1000, 200),
    "RedriveExecution": (1000, 200),
    "StartExecution": (1300, 300),
}
for _item in env_list("SFNUI_API_QUOTAS", []):
    try:
        _op, _spec = _item.split("=")
        _burst, _rate = _spec.split("/")
        SFNUI_API_QUOTAS[_op.strip()] = (float(_burst), float(_rate))
    except ValueError:
        raise ImproperlyConfigured(
            f"SFNUI_API_QUOTAS item {_item!r} is not Operation=burst/rate"
        ) from None

# --- The sync ----------------------------------------------------------------

# How often beat wakes the scheduler, which then decides what is due.
SFNUI_SYNC_TICK = env_float("SFNUI_SYNC_TICK", 2.0)
# State machines are re-discovered this often.
SFNUI_DISCOVER_INTERVAL = env_float("SFNUI_DISCOVER_INTERVAL", 300.0)
# A state machine with running executions or recent starts is listed this
# often; an idle one every SFNUI_LIST_IDLE_INTERVAL. When the ListExecutions
# budget of an account and region cannot pay for that, the intervals stretch
# (idle ones first) so that the listings stay within it (executions/sync/plan.py;
# /sync/ shows what the budget allows). SFNUI_LIST_MAX_INTERVAL bounds the
# backoff of a state machine whose listing keeps failing.
SFNUI_LIST_INTERVAL = env_float("SFNUI_LIST_INTERVAL", 5.0)
SFNUI_LIST_IDLE_INTERVAL = env_float("SFNUI_LIST_IDLE_INTERVAL", 60.0)
SFNUI_LIST_MAX_INTERVAL = env_float("SFNUI_LIST_MAX_INTERVAL", 300.0)
# A state machine counts as busy this long after it last had a running or a
# new execution.
SFNUI_LIST_BUSY_WINDOW = env_float("SFNUI_LIST_BUSY_WINDOW", 600.0)

# --- Events (EventBridge through SQS; see README "Events") --------------------

# One or more SQS queue URLs (comma-separated) fed by an EventBridge rule on
# "Step Functions Execution Status Change". Unset: polling only.
SFNUI_EVENTS_QUEUE_URL = env_list("SFNUI_EVENTS_QUEUE_URL", [])
# With events flowing, every state machine is still listed this often, to
# catch what EventBridge dropped (delivery is best effort).
SFNUI_RECONCILE_INTERVAL = env_float("SFNUI_RECONCILE_INTERVAL", 300.0)
# Events count as flowing while the consumer was heard from this recently;
# after that the sync polls as if events were off.
SFNUI_EVENTS_HEARTBEAT = env_float("SFNUI_EVENTS_HEARTBEAT", 60.0)
# A message that failed this many receives is kept aside (see /sync/).
SFNUI_EVENTS_MAX_RECEIVES = env_int("SFNUI_EVENTS_MAX_RECEIVES", 5)
# A running execution's history is re-read after this share of its age,
# bounded below and above: young executions often, old ones less.
SFNUI_RUNNING_MIN_INTERVAL = env_float("SFNUI_RUNNING_MIN_INTERVAL", 5.0)
SFNUI_RUNNING_MAX_INTERVAL = env_float("SFNUI_RUNNING_MAX_INTERVAL", 60.0)
# While someone has a running execution open, it is re-synced this often.
SFNUI_VIEWED_INTERVAL = env_float("SFNUI_VIEWED_INTERVAL", 3.0)
# A claimed execution that was not finished (worker killed) is due again after this.
SFNUI_SYNC_LEASE = env_float("SFNUI_SYNC_LEASE", 120.0)
# Executions handed to one task.
SFNUI_SYNC_BATCH = env_int("SFNUI_SYNC_BATCH", 20)
# Pages warn when the newest successful sync is older than this.
SFNUI_STALE_AFTER = env_float("SFNUI_STALE_AFTER", 120.0)
# Sync runs older than this are deleted.
SFNUI_SYNC_RUN_RETENTION_DAYS = env_int("SFNUI_SYNC_RUN_RETENTION_DAYS", 7)

# --- Incident features -------------------------------------------------------

# Chat tools unfurl links without signing in: when on, a request without a
# session gets a minimal page with only Open Graph / Twitter tags (status,
# state machine, name, failing state, first line of the error, start, data
# age) and a sign-in link; never input, output or cause.
SFNUI_PUBLIC_PREVIEWS = env_bool("SFNUI_PUBLIC_PREVIEWS", False)
# Previews one client address may get a minute without signing in (a chat
# tool fetches one per link posted); beyond, a 429 (executions/web/ratelimit.py).
SFNUI_PREVIEW_LIMIT = env_int("SFNUI_PREVIEW_LIMIT", 30)
# Executions the cache lacks that one person may have looked up in AWS a
# minute (each a DescribeExecution, paid from the sync's budget); beyond, a 429.
SFNUI_LOOKUP_LIMIT = env_int("SFNUI_LOOKUP_LIMIT", 30)
for _name in ("SFNUI_PREVIEW_LIMIT", "SFNUI_LOOKUP_LIMIT"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")
# The address people reach the dashboard at, for absolute links in copied
# summaries, previews and webhooks (e.g. https://sfnui.example.com). Unset:
# taken from each request.
SFNUI_BASE_URL = env_str("SFNUI_BASE_URL").rstrip("/")
# "Watch" posts a Slack-compatible message here when a watched execution ends.
SFNUI_WATCH_WEBHOOK_URL = env_str("SFNUI_WATCH_WEBHOOK_URL")
# Alert rules (/alerts/) post here; unset: to Watch's webhook.
SFNUI_ALERTS_WEBHOOK_URL = env_str("SFNUI_ALERTS_WEBHOOK_URL") or SFNUI_WATCH_WEBHOOK_URL

# --- Security (see README.md, "Security") ------------------------------------

# Behind a proxy or load balancer that terminates TLS and says so in this
# header (e.g. X-Forwarded-Proto): requests it marks "https" are secure.
# Only set it when the proxy always sets (or strips) the header.
SFNUI_PROXY_SSL_HEADER = env_str("SFNUI_PROXY_SSL_HEADER").strip()
if SFNUI_PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + SFNUI_PROXY_SSL_HEADER.upper().replace("-", "_"),
        "https",
    )
# How many proxies in front of the app append to X-Forwarded-For: the client
# address that rate-limits sign-ins is taken that many hops from the right.
# 0: the connection's own address.
SFNUI_PROXY_COUNT = env_int("SFNUI_PROXY_COUNT", 0)
SECURE_SSL_REDIRECT = env_bool("SFNUI_SSL_REDIRECT", False)
# /healthz answers over plain HTTP inside the network (load balancer checks).
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SFNUI_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SFNUI_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SFNUI_HSTS_PRELOAD", False)
# Cookies only over HTTPS unless DEBUG (browsers accept them on
# http://localhost too); SFNUI_SECURE_COOKIES=false for a plain-HTTP install.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SFNUI_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SFNUI_SESSION_HOURS", 12) * 3600
SECURE_CONTENT_TYPE_NOSNIFF = True
# Execution ARNs are in our URLs: never send them to the AWS console or elsewhere.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Forms posted from the public address pass the CSRF origin check even when
# the proxy does not say the request came over HTTPS.
_base_url = urlsplit(SFNUI_BASE_URL)
CSRF_TRUSTED_ORIGINS = (
    [f"https://{_base_url.netloc}"] if _base_url.scheme == "https" and _base_url.netloc else []
)

# Content-Security-Policy (django-csp): our own scripts and styles only. No
# inline script anywhere and no eval (htmx runs with allowEval off, see
# base.html); no inline style either: the timeline's SVG uses presentation
# attributes, not style="...". Images may be data: URLs (the admin's icons).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "manifest-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}

# Sign-in rate limit (django-axes): after this many failures for one user
# name from one address, that pair is refused for the cool-off time. A
# success resets the count. `python manage.py axes_reset_username NAME` lifts it.
AXES_FAILURE_LIMIT = env_int("SFNUI_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_float("SFNUI_LOGIN_COOLOFF_MINUTES", 15))
# Per user name and address: a guesser is stopped, yet nobody can lock the
# whole team out from one address, nor one person out from everywhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "executions.web.lockout.locked_out"
AXES_CLIENT_IP_CALLABLE = "executions.web.lockout.client_ip"
# Logged sign-ins (axes' AccessLog) are not kept: failures are enough.
AXES_DISABLE_ACCESS_LOG = True

# --- Single sign-on (OpenID Connect, off unless SFNUI_OIDC_ISSUER is set) -------

SFNUI_OIDC_ISSUER = env_str("SFNUI_OIDC_ISSUER").strip().rstrip("/")
SFNUI_OIDC_ENABLED = bool(SFNUI_OIDC_ISSUER)
# The claim that names the person (their sfnui user name), and the claim that
# lists their groups.
SFNUI_OIDC_USERNAME_CLAIM = env_str("SFNUI_OIDC_USERNAME_CLAIM", "preferred_username")
SFNUI_OIDC_GROUPS_CLAIM = env_str("SFNUI_OIDC_GROUPS_CLAIM", "groups")
# Members of any of these groups may stop executions, others may not; checked
# at every sign-in. Empty: the permission is managed in the admin instead.
SFNUI_OIDC_STOP_GROUPS = env_list("SFNUI_OIDC_STOP_GROUPS", [])
if SFNUI_OIDC_ENABLED:
    if not DEBUG and not SFNUI_OIDC_ISSUER.startswith("https://"):
        raise ImproperlyConfigured("SFNUI_OIDC_ISSUER must be an https:// URL in production")
    for _name in ("SFNUI_OIDC_CLIENT_ID", "SFNUI_OIDC_CLIENT_SECRET"):
        if not env_str(_name):
            raise ImproperlyConfigured(f"SFNUI_OIDC_ISSUER is set: {_name} must be set too")
    OIDC_RP_CLIENT_ID = env_str("SFNUI_OIDC_CLIENT_ID")
    OIDC_RP_CLIENT_SECRET = env_str("SFNUI_OIDC_CLIENT_SECRET")
    OIDC_RP_SCOPES = env_str("SFNUI_OIDC_SCOPES", "openid email profile")
    OIDC_RP_SIGN_ALGO = env_str("SFNUI_OIDC_SIGN_ALGO", "RS256")
    # Unset endpoints come from the issuer's discovery document.
    OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("SFNUI_OIDC_AUTHORIZATION_ENDPOINT")
    OIDC_OP_TOKEN_ENDPOINT = env_str("SFNUI_OIDC_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = env_str("SFNUI_OIDC_USERINFO_ENDPOINT")
    OIDC_OP_JWKS_ENDPOINT = env_str("SFNUI_OIDC_JWKS_URI")
    OIDC_USE_PKCE = True
    OIDC_TIMEOUT = env_float("SFNUI_OIDC_TIMEOUT", 10.0)
    OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
    AUTHENTICATION_BACKENDS.append("executions.web.oidc.SingleSignOnBackend")

# --- Celery ------------------------------------------------------------------

CELERY_TASK_DEFAULT_QUEUE = env_str("SFNUI_QUEUE", "sfnui")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": 3600,
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
    }
else:
    # The embedded broker: kombu's filesystem transport under var/, shared by
    # every process on this machine, no server needed (sfnui/broker.py makes
    # its writes atomic).
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A page that enqueues a sync must not hang on a broker that is down.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_TASK_IGNORE_RESULT = True
# Every task is an idempotent upsert, so a task that dies with its worker is
# simply run again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sync-tick": {"task": "executions.tasks.sync_tick", "schedule": SFNUI_SYNC_TICK},
    # The alert rules, checked against the cache on the same tick (alerts/).
    "alerts-check": {"task": "alerts.tasks.check_alerts", "schedule": SFNUI_SYNC_TICK},
    "prune-sync-runs": {"task": "executions.tasks.prune_sync_runs", "schedule": 3600.0},
    # The changes to the counts per state machine, folded in (database/counts.py).
    "compact-counts": {"task": "executions.tasks.compact_counts", "schedule": 60.0},
    # Watches whose message could not be queued when the sync saw the end
    # (broker down): the safety net.
    "notify-finished-watches": {
        "task": "executions.tasks.notify_finished_watches",
        "schedule": 60.0,
    },
}
