"""The SDK's errors, importable without an HTTP client (the CLI catches them)."""

from __future__ import annotations

from typing import Any


class WharfError(Exception):
    """An error answer from the market; ``status`` and ``problem`` hold the details."""

    def __init__(self, status: int, problem: dict[str, Any], *, retry_after: float | None = None):
        detail = problem.get("detail") or problem.get("title") or "request failed"
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.problem = problem
        self.retry_after = retry_after  # seconds, from a 429's or 503's Retry-After


class JobFailed(WharfError):
    """A job that ended failed (``WharfClient.wait``, ``WharfClient.search``)."""
