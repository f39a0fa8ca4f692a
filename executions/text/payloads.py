"""Input, output and causes as people read them: JSON indented, large ones folded.

The indentation is done on the tokens of the stored text rather than by
json.loads + json.dumps, which would rewrite what the payload says: 1.10
would become 1.1, 1e400 Infinity, and a duplicated key would vanish.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

# Shown expanded; the rest of a larger payload is folded.
PREVIEW_CHARS = 8 * 1024
# Deeper than this is shown as stored: indenting it would only make it longer.
MAX_DEPTH = 64
# Payloads up to this size get a "Copy" button carrying the whole text.
COPY_MAX_BYTES = 64 * 1024

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]|[^{}\[\],:"\s]+', re.S)


class _TooDeep(Exception):
    pass


def _indented(text: str) -> Iterator[str]:
    """The pieces of `text` (valid JSON) indented by two spaces, lazily."""
    depth = 0
    pending = ""  # an opening bracket, held back to see whether it is empty
    for match in _TOKEN.finditer(text):
        piece = match.group()
        if pending:
            opened, pending = pending, ""
            if piece == ("}" if opened == "{" else "]"):
                yield opened + piece
                continue
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep
            yield opened + "\n" + "  " * depth
        if piece in ("{", "["):
            pending = piece
        elif piece in ("}", "]"):
            depth -= 1
            yield "\n" + "  " * depth + piece
        elif piece == ",":
            yield ",\n" + "  " * depth
        elif piece == ":":
            yield ": "
        else:
            yield piece
    if pending:
        yield pending


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def pretty_json(text: str) -> str | None:
    """`text` indented by two spaces, every token as written; None when it is
    not JSON (or nested deeper than MAX_DEPTH)."""
    if not _is_json(text):
        return None
    try:
        return "".join(_indented(text))
    except _TooDeep:
        return None


def _pretty_start(text: str, limit: int) -> tuple[str, bool] | None:
    """At least the first `limit` characters of pretty_json(text) (all of it
    when shorter), and whether there is more; None as for pretty_json."""
    if not _is_json(text):
        return None
    out: list[str] = []
    length = 0
    try:
        for piece in _indented(text):
            if length >= limit:
                return "".join(out), True
            out.append(piece)
            length += len(piece)
    except _TooDeep:
        return None
    return "".join(out), False


@dataclass(frozen=True)
class Payload:
    """A stored string ready for the page: its start, and all of it on demand."""

    raw: str
    is_json: bool
    size: int  # bytes, as stored (UTF-8)
    preview: str  # all of it when it is small
    folded: bool  # the preview is only the start

    @property
    def copyable(self) -> bool:
        return self.size <= COPY_MAX_BYTES

    @cached_property
    def text(self) -> str:
        """All of it: pretty JSON, or the raw text when it is not JSON."""
        if not self.folded:
            return self.preview
        return (pretty_json(self.raw) if self.is_json else None) or self.raw

    @cached_property
    def lines(self) -> int:
        return self.text.count("\n") + 1


def payload(raw: str | None, preview_chars: int = PREVIEW_CHARS) -> Payload | None:
    if raw is None:
        return None
    start = _pretty_start(raw, preview_chars)
    text, more = start if start is not None else (raw, False)
    if len(text) > preview_chars:
        more = True
        cut = text.rfind("\n", 0, preview_chars)
        text = text[: cut if cut > preview_chars // 2 else preview_chars]
    return Payload(
        raw=raw,
        is_json=start is not None,
        size=len(raw.encode("utf-8", "replace")),
        preview=text,
        folded=more,
    )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB".replace(".0 KiB", " KiB")
    return f"{size / 1024 / 1024:.1f} MiB".replace(".0 MiB", " MiB")
