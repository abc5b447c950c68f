"""Python client for a Wharf market (HTTP, with httpx).

Names are imported on first use: ``from wharf.client import WharfError`` loads no HTTP client,
so a command that only catches it starts faster.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {"WharfClient": "sdk", "WharfError": "errors", "JobFailed": "errors"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
