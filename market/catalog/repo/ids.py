"""Learnware ids: 32-bit integers in the catalog, zero-padded text outside it."""

from __future__ import annotations

#: Learnware ids are 32-bit on every backend (SQLite's AUTOINCREMENT needs ``INTEGER``).
MAX_ID = 2**31 - 1
IN_BATCH = 500  # ids per IN (…) list


def format_id(learnware_id: int) -> str:
    """The public form of a learnware id: 8 digits, zero-padded (``42`` → ``"00000042"``)."""
    if isinstance(learnware_id, bool) or not isinstance(learnware_id, int):
        raise TypeError(f"a learnware id is an int, got {type(learnware_id).__name__}")
    if not 1 <= learnware_id <= MAX_ID:
        raise ValueError(f"a learnware id is between 1 and {MAX_ID}, got {learnware_id}")
    return f"{learnware_id:08d}"


def parse_id(text: str) -> int:
    """Parse a public learnware id: ASCII digits only (``"00000042"`` or ``"42"``).

    Signs, spaces, other characters, zero and values past :data:`MAX_ID` raise
    :class:`ValueError` with a message that can be shown to the client.
    """
    if not isinstance(text, str):
        raise ValueError(f"a learnware id is a string of digits, got {type(text).__name__}")
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise ValueError(f"{text[:40]!r} is not a learnware id: expected digits, e.g. 00000042")
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise ValueError(f"{text!r} is not a learnware id: expected 1 … {MAX_ID}")
    return value
