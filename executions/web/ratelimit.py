"""Rate limits on what costs the dashboard or leaks from it: the previews
a signed-out visitor may ask for (per client address), and the AWS lookups
of executions the cache lacks that one person may make (per user).

Each limit is a token bucket of `per_minute` tokens refilled at that rate,
kept where the API budget keeps its own (executions/budget.py: one atomic
Lua script in Redis, or one conditional UPDATE in the database), so that
every web worker shares it and two requests never spend the same token.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from django.conf import settings
from django.http import HttpRequest

from executions import budget
from executions.models import ApiBucket
from executions.web.errors import PageError
from executions.web.lockout import client_ip
from executions.web.middleware import current_request

log = logging.getLogger(__name__)

KEY_PREFIX = "ratelimit:"
# Without Redis, buckets are rows: those of visitors gone for longer than
# this are deleted now and then (a bucket left alone that long is full
# again, so deleting it changes nothing).
PRUNE_AFTER = 3600.0
_last_prune = 0.0


def spend(scope: str, who: str, per_minute: int) -> float:
    """Take one token from `who`'s bucket of `scope`. Returns 0 when allowed,
    else the seconds until the next one is (never less than 1)."""
    bucket = budget.Bucket(
        key=f"{KEY_PREFIX}{scope}:{who}", capacity=float(per_minute), rate=per_minute / 60
    )
    try:
        # The budget's store, for its atomic take in Redis or the database.
        wait = budget._store().take(bucket)
    except Exception:
        # Redis (or the database) is down: the request goes through rather
        # than failing, as an API call does when its budget cannot be read.
        log.warning("rate limit store unavailable; not limiting", exc_info=True)
        return 0.0
    _prune()
    return 0.0 if wait <= 0 else float(max(1, math.ceil(wait)))


def _prune() -> None:
    global _last_prune
    now = time.time()
    if settings.REDIS_URL or now - _last_prune < PRUNE_AFTER / 6:
        return  # Redis expires its keys itself
    _last_prune = now
    ApiBucket.objects.filter(key__startswith=KEY_PREFIX, stamp__lt=now - PRUNE_AFTER).delete()


def address(request: HttpRequest) -> str:
    """The client's address as rate limits count it: behind a proxy, the one
    SFNUI_PROXY_COUNT says (lockout.client_ip); an IPv6 client by its /64,
    which one machine usually holds whole."""
    ip = client_ip(request)
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


# --- Signed-out previews ----------------------------------------------------------------------


def preview_wait(request: HttpRequest) -> float:
    """0 when this signed-out preview may be answered, else the Retry-After."""
    return spend("preview", address(request), settings.SFNUI_PREVIEW_LIMIT)


def preview_refusal(wait: float) -> str:
    limit = settings.SFNUI_PREVIEW_LIMIT
    return (
        f"Too many requests from your address without signing in: at most {limit} a minute. "
        f"Try again in {int(wait)} s, or sign in."
    )


# --- Lookups of executions the cache lacks ----------------------------------------------------


def spend_lookup() -> None:
    """One AWS lookup of an execution the cache lacks, for whoever asks.
    Raises PageError 429 (with Retry-After) beyond SFNUI_LOOKUP_LIMIT a
    minute; outside a request (a command, a task) there is no limit."""
    # Set by middleware.RequesterMiddleware: the lookup happens deep in
    # views.common.execution_or_404, which every page with an ARN shares.
    request = current_request.get()
    if request is None:
        return
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        who = f"user:{user.pk}"
    else:
        who = f"address:{address(request)}"
    limit: int = settings.SFNUI_LOOKUP_LIMIT
    wait = spend("lookup", who, limit)
    if wait:
        raise PageError(
            429,
            "Too many lookups",
            f"You looked up {limit} executions that were not in the cache within a minute, "
            f"which is as many as one person may: each costs a call to AWS. Try again in "
            f"{int(wait)} s. Executions already in the cache open as usual.",
            headers={"Retry-After": str(int(wait))},
        )
