"""Every URL pattern the resolver knows, for the tests that must cover them all
(test_fuzz.py, test_access.py): a page added tomorrow is covered tomorrow."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import UUIDConverter
from django.urls.resolvers import RegexPattern, RoutePattern

from executions.web.converters import (
    ExecutionArnConverter,
    MapRunArnConverter,
    StateMachineArnConverter,
)

# For <uuid:...> parameters (a bulk stop's batch id): well formed, never stored.
SAMPLE_UUID = "00000000-0000-4000-8000-000000000001"
# A Map Run ARN for patterns that take one, when the test gives none.
SAMPLE_MAP_RUN = "arn:aws:states:us-east-1:123456789012:mapRun:order-pipeline/Items:0"
TOKEN = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")


@dataclass(frozen=True)
class Endpoint:
    name: str  # "namespace:name" or "" for an unnamed pattern
    route: str  # the patterns joined, as Django prints them
    patterns: tuple[Any, ...]
    callback: Callable[..., Any]
    namespace: str

    @property
    def admin(self) -> bool:
        return self.namespace == "admin"

    def __str__(self) -> str:
        return f"{self.name or 'unnamed'} /{self.route}"

    def sample_path(self, arns: dict[str, str], pk: str) -> str:
        """A path of this pattern with plausible values: the ARN of a cached
        execution or state machine, a primary key, or the regex's own text."""
        out = []
        for pattern in self.patterns:
            if isinstance(pattern, RoutePattern):
                route = str(pattern)

                def value(match: re.Match[str], pattern: RoutePattern = pattern) -> str:
                    converter = pattern.converters[match["parameter"]]
                    if isinstance(converter, ExecutionArnConverter):
                        return quote(arns["execution"], safe=":/")
                    if isinstance(converter, StateMachineArnConverter):
                        return quote(arns["state_machine"], safe=":/")
                    if isinstance(converter, MapRunArnConverter):
                        return quote(arns.get("map_run", SAMPLE_MAP_RUN), safe=":/")
                    if match["parameter"] == "content_type_id":
                        return "1"
                    if isinstance(converter, UUIDConverter):
                        return SAMPLE_UUID
                    return pk

                out.append(TOKEN.sub(value, route))
            else:
                assert isinstance(pattern, RegexPattern)
                regex = str(pattern.regex.pattern).removeprefix("^").removesuffix("$")
                # The admin's app index and catch-all: the first alternative.
                regex = re.sub(r"\(\?P<app_label>([^|)]+)[^)]*\)", r"\1", regex)
                regex = regex.replace("(?P<url>.*)", "nowhere/")
                out.append(regex)
        return "/" + "".join(out)


def _walk(patterns: list[Any], prefix: tuple[Any, ...], namespace: str) -> Iterator[Endpoint]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, (*prefix, p.pattern), p.namespace or namespace)
        elif isinstance(p, URLPattern):
            route = "".join(str(x) for x in (*prefix, p.pattern))
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or "")
            yield Endpoint(name, route, (*prefix, p.pattern), p.callback, namespace)


def endpoints() -> list[Endpoint]:
    return list(_walk(get_resolver().url_patterns, (), ""))
