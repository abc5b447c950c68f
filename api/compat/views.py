"""How the deployed market writes a learnware: its status words, its time format, its spec."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from wharf.specification.reference_layout import reference_semantic_spec

#: The deployed market's verify_status of each Wharf status.
VERIFY_STATUS = {
    "pending": "WAITING",
    "checking": "PROCESSING",
    "accepted": "SUCCESS",
    "rejected": "FAIL",
}


def last_modify(when: datetime) -> str:
    """The deployed market's time format (``2026-12-05 02:40:00.000000 UTC``)."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f %Z")


def semantic_specification(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with the keys the reference 0.4 requires (``Model``, ``License``)."""
    return reference_semantic_spec(stored)
