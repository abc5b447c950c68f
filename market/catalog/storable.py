"""What text the catalog can store and compare.

PostgreSQL refuses NUL in text and JSON, and an unpaired surrogate cannot be encoded as UTF-8
by any database driver; such text from a request is refused with a clear answer before it
reaches a query (where it would be a 500).
"""

from __future__ import annotations

from typing import Any

UNSTORABLE_TEXT = "must be text without NUL characters or unpaired surrogates"


def storable_text(text: str) -> bool:
    """Whether ``text`` can be stored in (and compared by) the catalog."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_unstorable(value: Any, path: str) -> str | None:
    """The path of the first text in ``value`` (JSON data) that the catalog cannot store, or
    ``None``."""
    if isinstance(value, str):
        return None if storable_text(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not storable_text(str(key)):
                return path
            if (found := first_unstorable(item, f"{path}.{key}")) is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := first_unstorable(item, f"{path}.{i}")) is not None:
                return found
    return None
