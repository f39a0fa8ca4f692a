"""Accounts and regions, as the pages show and filter them.

A state machine's account and region come from its ARN; which identity reads
them, and the name SFNUI_ACCOUNTS gives it, from aws.targets(). Pages show
them only when the cache holds more than one of either: a dashboard of one
account in one region has no use for two more columns.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from executions import aws
from executions.models import StateMachine

log = logging.getLogger(__name__)

# An AWS account id, as an ARN carries it.
ACCOUNT = re.compile(r"[0-9]{12}")
# An AWS region name (us-east-1, us-gov-west-1, ap-southeast-2 ...).
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")


@dataclass(frozen=True)
class Places:
    """The (account, region) pairs the cache holds state machines of."""

    pairs: tuple[tuple[str, str], ...] = ()

    @property
    def accounts(self) -> list[str]:
        return sorted({account for account, _ in self.pairs})

    @property
    def regions(self) -> list[str]:
        return sorted({region for _, region in self.pairs})

    @property
    def several(self) -> bool:
        """More than one account or region: worth showing on every row."""
        return len(self.accounts) > 1 or len(self.regions) > 1


# With Redis, known() is shared by every request and process this long (a
# list page then asks the database one question less). A new state machine
# in a new account or region forgets it at once (forget(), on its save); one
# deleted leaves its place in the filter for this long at most.
KNOWN_TTL = 60
_KNOWN_KEY = "places:known"


def known() -> Places:
    """The places: through Redis when it is there (see KNOWN_TTL), else one
    query, answered from sm_account_region_idx alone (no table rows). Without
    Redis the cache is a database table: no cheaper than the query."""
    if not settings.REDIS_URL:
        return _query()
    try:
        hit = cache.get(_KNOWN_KEY)
    except Exception:  # Redis is down: the database answers
        log.debug("shared cache unavailable", exc_info=True)
        return _query()
    if isinstance(hit, Places):
        return hit
    found = _query()
    try:
        cache.set(_KNOWN_KEY, found, timeout=KNOWN_TTL)
    except Exception:
        log.debug("shared cache unavailable", exc_info=True)
    return found


def _query() -> Places:
    pairs = (
        StateMachine.objects.order_by("account", "region")
        .values_list("account", "region")
        .distinct()
    )
    return Places(tuple((str(a), str(r)) for a, r in pairs))


def on_state_machine_saved(sender: Any = None, *, created: bool = False, **kwargs: Any) -> None:
    """A post_save receiver (connected in ExecutionsConfig.ready): a new state
    machine may be the first of its account or region."""
    if created:
        forget()


def forget() -> None:
    """known() asks the database again next time (after a bulk insert of
    state machines, which sends no post_save)."""
    if not settings.REDIS_URL:
        return
    try:
        cache.delete(_KNOWN_KEY)
    except Exception:  # Redis is down: nothing is cached there either
        log.debug("shared cache unavailable", exc_info=True)


def identity_name(account: str, region: str = "") -> str:
    """The name SFNUI_ACCOUNTS gives the identity that reads `account` (in
    `region`, when known); "" when it names none."""
    if region:
        key = aws.key_for(account, region)
    else:
        # No region to ask about: the role of that account, if one is configured.
        key = next((t.key for t in aws.targets() if t.role_arn and t.key == account), "")
    if not key:
        return ""
    try:
        return aws.target(key).name
    except aws.NotConfigured:
        return ""


def account_label(account: str, region: str = "") -> str:
    """ "prod (123456789012)" when SFNUI_ACCOUNTS names it, else the id alone."""
    name = identity_name(account, region)
    return f"{name} ({account})" if name else account


def where_read() -> list[str]:
    """What this dashboard reads, in words, for a page that refuses an ARN:
    "prod (123456789012) in us-east-1, eu-west-1"."""
    out = []
    for t in aws.targets():
        if t.role_arn:
            who = f"{t.name} ({t.key})" if t.name else f"account {t.key}"
        else:
            who = f"{t.name} (the default identity)" if t.name else "the default identity"
        out.append(f"{who} in {', '.join(t.regions) or 'no region'}")
    return out


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    selected: bool


@dataclass(frozen=True)
class PlaceChoices:
    """The account and region filters: what the cache holds to choose from,
    and what the URL asks for (kept even when the cache holds none of it)."""

    accounts: list[Choice]
    regions: list[Choice]
    # More than one account or region in the cache: a choice worth offering,
    # and each row says where it runs.
    several: bool

    @property
    def selected_accounts(self) -> list[str]:
        return [c.value for c in self.accounts if c.selected]

    @property
    def selected_regions(self) -> list[str]:
        return [c.value for c in self.regions if c.selected]


def choices(known: Places, accounts: list[str], regions: list[str]) -> PlaceChoices:
    """Filter choices: what the cache holds, plus what the URL asks for."""
    return PlaceChoices(
        accounts=[
            Choice(a, account_label(a), a in accounts)
            for a in sorted(set(known.accounts) | set(accounts))
        ],
        regions=[Choice(r, r, r in regions) for r in sorted(set(known.regions) | set(regions))],
        several=known.several,
    )
