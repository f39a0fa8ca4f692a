"""The incoming-webhook client of the watch notifications: the post is a
Slack-compatible payload (Slack, Mattermost, Rocket.Chat, Discord's /slack
endpoint ...): `text` holds the Markdown summary, and `blocks` the same in
Slack's own mrkdwn, which Slack shows instead. Errors say whether a retry
could help, and never carry the webhook's URL (a secret).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests

# (connect, read) seconds: a webhook that hangs must not hold a worker.
TIMEOUT = (3.05, 10.0)
# Slack cuts a section block's text at 3,000 characters.
BLOCK_CHARS = 3000


class WebhookError(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def post(url: str, body: dict[str, Any]) -> None:
    """POST the payload. The webhook's URL is a secret (Slack's carries its
    token), so errors name only its host."""
    host = urlsplit(url).hostname or "the webhook"
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT, allow_redirects=False)
    except requests.Timeout:
        raise WebhookError(f"{host} did not answer in time", retry=True) from None
    except requests.RequestException as exc:
        raise WebhookError(
            f"{host} could not be reached ({type(exc).__name__})", retry=True
        ) from None
    if 200 <= response.status_code < 300:
        return
    said = re.sub(r"\s+", " ", response.text[:200]).strip()
    retry = response.status_code == 429 or response.status_code >= 500
    raise WebhookError(
        f"{host} answered HTTP {response.status_code}{': ' + said if said else ''}", retry=retry
    )


def payload(markdown: str) -> dict[str, Any]:
    slack = slack_mrkdwn(markdown)
    if len(slack) > BLOCK_CHARS:
        slack = slack[: BLOCK_CHARS - 1] + "…"
    return {
        "text": markdown,
        "mrkdwn": True,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": slack}}],
    }


# Code: fenced blocks, then code spans (any run of backticks, closed by the same run).
_CODE = re.compile(r"(```+)(?:.|\n)*?\1|(`+)(?:.|\n)*?\2")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()<>#+|!~])")
_BULLET = re.compile(r"^(\s*)- ", re.MULTILINE)


def slack_mrkdwn(markdown: str) -> str:
    """The summary's Markdown in Slack's mrkdwn: *bold*, no backslash escapes,
    • bullets, and &, <, > escaped as Slack asks (code left as it is)."""
    out: list[str] = []
    position = 0
    for match in _CODE.finditer(markdown):
        out.append(_slack_text(markdown[position : match.start()]))
        out.append(_slack_escape(match.group(0)))
        position = match.end()
    out.append(_slack_text(markdown[position:]))
    return "".join(out)


def _slack_text(text: str) -> str:
    text = _BULLET.sub(r"\1• ", text)
    text = _BOLD.sub(r"*\1*", text)
    return _slack_escape(_ESCAPED.sub(r"\1", text))


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
