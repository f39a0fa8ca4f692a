"""PageError: an error a person should read, raised anywhere a page is
drawn and rendered by web/middleware.PageErrorMiddleware (or as JSON for the
API). Imports nothing of executions, so that every module of web/ may use it."""

from __future__ import annotations


class PageError(Exception):
    """An error a person should read: rendered as a page with this status, never a 500."""

    def __init__(
        self, status: int, title: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        # E.g. Retry-After on a 429.
        self.headers = headers or {}
