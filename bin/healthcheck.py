"""The container's health check: `python bin/healthcheck.py URL` exits 0 when URL answers 200.

It asks with a Host header that DJANGO_ALLOWED_HOSTS allows (its first
entry), since Django answers 400 to any other: the check must not depend on
which name the outside world uses.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def allowed_host() -> str:
    hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    first = hosts[0] if hosts else "localhost"
    if first == "*":
        return "localhost"
    # ".example.com" allows example.com and every subdomain.
    return first.lstrip(".")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bin/healthcheck.py URL", file=sys.stderr)
        return 2
    # The URL is the Dockerfile's own HEALTHCHECK argument.
    request = urllib.request.Request(argv[1], headers={"Host": allowed_host()})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            print(response.read(500).decode(errors="replace"))
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{exc.code}: {exc.read(500).decode(errors='replace')}")
        return 1
    except OSError as exc:
        print(f"no answer: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
