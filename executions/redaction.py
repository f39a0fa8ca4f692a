"""What an error message may carry that no page, API answer or audit row may
show, blanked out: the password of a URL (http://user:pw@host, an endpoint,
a proxy, the broker or the cache), an access key id, and where the
configured AWS endpoint or proxy is (botocore names it: 'Could not connect
to the endpoint URL: "http://10.0.3.7:4566/"'). The log keeps the full text.

The one place for it: aws.py's errors, the pages' and /healthz's errors,
the audit and the sync's services check all use it. Imports Django's
settings only.
"""

from __future__ import annotations

import re

from django.conf import settings

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"']*@")
_ACCESS_KEY_ID = re.compile(r"\b((?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{4})[A-Z0-9]{12}\b")
_WHERE = re.compile(r"(?i)\b((?:endpoint|proxy) URL: )\"[^\"]*\"")


def redact(text: str) -> str:
    """`text` without credentials, nor where the AWS endpoint or proxy is."""
    text = _WHERE.sub(r"\1(not shown)", text)
    endpoint = settings.SFNUI_AWS_ENDPOINT_URL
    if endpoint:
        text = text.replace(endpoint.rstrip("/"), "(the configured endpoint)")
    return _ACCESS_KEY_ID.sub(r"\1************", _URL_CREDENTIALS.sub(r"\1***@", text))


def safe_error(exc: BaseException) -> str:
    """The error's type and first line, redacted: never a stack trace or a
    password in a response."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = redact(first_line)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
