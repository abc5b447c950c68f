"""The index change log (what the search index must add or drop), and the lookups by id that
the index and the search workers make."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from ..models import (
    IndexChange,
    Learnware,
    LearnwareStatus,
    utcnow,
)
from .ids import IN_BATCH


def log_index_changes(s: Session, learnware_ids: Iterable[int], op: str) -> None:
    """Append one change-log entry per learnware (in this transaction)."""
    now = utcnow()
    rows = [{"learnware_id": int(i), "op": op, "created_at": now} for i in learnware_ids]
    if rows:
        s.execute(IndexChange.__table__.insert(), rows)


#: A search's two reads of the catalog, built once (building a statement cost about what
#: SQLite takes to run these).
_CHANGES_AFTER = (
    select(IndexChange.seq, IndexChange.learnware_id)
    .where(IndexChange.seq > bindparam("seq"))
    .order_by(IndexChange.seq)
    .limit(bindparam("limit"))
)
_NAMES = select(Learnware.id, Learnware.name, Learnware.status).where(
    Learnware.id.in_(bindparam("ids", expanding=True))
)


def index_changes_after(s: Session, seq: int, *, limit: int = 100_000) -> list[tuple[int, int]]:
    """``(seq, learnware_id)`` of the log entries after ``seq``, in order."""
    rows = s.execute(_CHANGES_AFTER, {"seq": int(seq), "limit": int(limit)})
    return [(int(a), int(b)) for a, b in rows]


def index_changes_in(s: Session, seqs: Iterable[int]) -> list[tuple[int, int]]:
    """``(seq, learnware_id)`` of those log entries among ``seqs`` that exist."""
    wanted = sorted({int(q) for q in seqs})
    out: list[tuple[int, int]] = []
    for start in range(0, len(wanted), IN_BATCH):
        stmt = select(IndexChange.seq, IndexChange.learnware_id).where(
            IndexChange.seq.in_(wanted[start : start + IN_BATCH])
        )
        out.extend((int(a), int(b)) for a, b in s.execute(stmt))
    return out


def index_seq_floor(s: Session, since: datetime) -> int:
    """The last seq logged before ``since``: entries after it may still be committing."""
    before = s.scalar(select(func.max(IndexChange.seq)).where(IndexChange.created_at < since))
    return int(before or 0)


def index_entries(s: Session, learnware_ids: Iterable[int]) -> list[tuple[int, str]]:
    """``(id, stat_spec_json)`` of those of ``learnware_ids`` that are accepted with a spec."""
    ids = sorted({int(i) for i in learnware_ids})
    out: list[tuple[int, str]] = []
    for start in range(0, len(ids), IN_BATCH):
        stmt = select(Learnware.id, Learnware.stat_spec).where(
            Learnware.id.in_(ids[start : start + IN_BATCH]),
            Learnware.status == LearnwareStatus.accepted,
            Learnware.stat_spec.is_not(None),
        )
        out.extend((int(a), b) for a, b in s.execute(stmt))
    return out


def spec_partitions(s: Session) -> list[tuple[str, tuple[int, ...], float | None]]:
    """The distinct (spec type, shape of one point, γ) of the accepted learnwares."""
    stmt = (
        select(Learnware.spec_type, Learnware.spec_shape, Learnware.spec_gamma)
        .where(Learnware.status == LearnwareStatus.accepted, Learnware.spec_type.is_not(None))
        .distinct()
    )
    found = {(t, tuple(shape or ()), g) for t, shape, g in s.execute(stmt)}
    return sorted(found, key=lambda p: (p[0], p[1], p[2] or 0.0))


def accepted_spec_ids(s: Session) -> list[int]:
    """Ids of every accepted learnware with a spec, ascending."""
    stmt = select(Learnware.id).where(
        Learnware.status == LearnwareStatus.accepted, Learnware.stat_spec.is_not(None)
    )
    return [int(i) for i in s.scalars(stmt.order_by(Learnware.id))]


def accepted_ids(s: Session, learnware_ids: Iterable[int]) -> set[int]:
    """Those of ``learnware_ids`` that are accepted now."""
    return set(accepted_names(s, learnware_ids))


def accepted_names(s: Session, learnware_ids: Iterable[int]) -> dict[int, str]:
    """The names of those of ``learnware_ids`` that are accepted now."""
    ids = sorted({int(i) for i in learnware_ids})
    found: dict[int, str] = {}
    for start in range(0, len(ids), IN_BATCH):
        # The status is compared here, not in SQL: with it in the WHERE clause SQLite reads
        # the (status, …) index of every accepted learnware instead of looking these up by id.
        found.update(
            (int(i), name or "")
            for i, name, status in s.execute(_NAMES, {"ids": ids[start : start + IN_BATCH]})
            if status == LearnwareStatus.accepted
        )
    return found


def accepted_count(s: Session) -> int:
    stmt = select(func.count()).where(Learnware.status == LearnwareStatus.accepted)
    return s.scalar(stmt) or 0
