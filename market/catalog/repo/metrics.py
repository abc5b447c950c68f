"""Figures for monitoring."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import (
    Job,
    Learnware,
)


def learnware_counts(s: Session) -> dict[str, int]:
    """Learnwares per status."""
    rows = s.execute(select(Learnware.status, func.count()).group_by(Learnware.status))
    return {str(status.value if hasattr(status, "value") else status): n for status, n in rows}


def job_counts(s: Session) -> dict[tuple[str, str], int]:
    """Jobs per (kind, state)."""
    rows = s.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
    return {(_value(kind), _value(state)): n for kind, state, n in rows}


def recent_job_durations(
    s: Session, since: datetime, limit: int = 10_000
) -> list[tuple[str, float]]:
    """(kind, seconds from creation to finish) of jobs finished since ``since``, newest first:
    what a user waits, queueing included."""
    rows = s.execute(
        select(Job.kind, Job.created_at, Job.finished_at)
        .where(Job.finished_at.is_not(None), Job.finished_at >= since)
        .order_by(Job.finished_at.desc())
        .limit(limit)
    )
    return [(_value(kind), (done - made).total_seconds()) for kind, made, done in rows]


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))
