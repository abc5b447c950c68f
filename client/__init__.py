"""Python client for a Wharf market (HTTP, with httpx)."""

from .sdk import JobFailed, WharfClient, WharfError

__all__ = ["JobFailed", "WharfClient", "WharfError"]
