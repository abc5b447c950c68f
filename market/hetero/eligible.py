"""The accepted learnwares that take part in the heterogeneous market.

A learnware takes part when its check accepted it with a table RKME and its semantic spec
passes :func:`specification.hetero.check_hetero_input` (Data Table, a classification or
regression, every column described, ``Input.Dimension`` the RKME's width). The catalog's filter
columns narrow the rows in SQL; the descriptions are checked in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from wharf.market.catalog import Learnware, LearnwareStatus
from wharf.specification.errors import SpecificationError
from wharf.specification.hetero.eligibility import TASKS, check_hetero_input
from wharf.specification.rkme import TABLE_SPEC_TYPE


@dataclass(frozen=True)
class Eligible:
    """An eligible learnware: what mapping it needs."""

    learnware_id: int
    content_sha256: str
    descriptions: list[str]
    stat_spec: str | None  # the RKME JSON, when asked for


def _candidates(with_spec: bool, since: datetime | None = None):
    columns = [
        Learnware.id,
        Learnware.content_sha256,
        Learnware.semantic_spec,
        Learnware.spec_shape,
    ]
    if with_spec:
        columns.append(Learnware.stat_spec)
    stmt = select(*columns).where(
        Learnware.status == LearnwareStatus.accepted,
        Learnware.spec_type == TABLE_SPEC_TYPE,
        or_(Learnware.data_type.is_(None), Learnware.data_type == "Table"),
        or_(Learnware.task_type.is_(None), Learnware.task_type.in_(TASKS)),
    )
    if since is not None:
        stmt = stmt.where(Learnware.checked_at > since)
    return stmt.order_by(Learnware.id).execution_options(yield_per=256)


def eligible_learnwares(s: Session, *, with_spec: bool = True) -> Iterator[Eligible]:
    """Every eligible accepted learnware, by id (stream it inside the session)."""
    for row in s.execute(_candidates(with_spec)):
        eligible = _eligible(row, with_spec)
        if eligible is not None:
            yield eligible


def eligible_learnware(s: Session, learnware_id: int) -> Eligible | None:
    """The learnware if it is accepted and eligible, else ``None``."""
    stmt = _candidates(True).where(Learnware.id == learnware_id)
    row = s.execute(stmt).first()
    return _eligible(row, True) if row is not None else None


def eligible_among(s: Session, learnware_ids: list[int]) -> list[Eligible]:
    """Those of ``learnware_ids`` that are accepted and eligible, with their RKME JSON."""
    stmt = _candidates(True).where(Learnware.id.in_(learnware_ids))
    return [e for e in (_eligible(row, True) for row in s.execute(stmt)) if e is not None]


def count_eligible_since(s: Session, since: datetime | None) -> int:
    """Eligible learnwares accepted after ``since`` (all of them with ``None``)."""
    return sum(1 for row in s.execute(_candidates(False, since)) if _eligible(row, False))


def count_candidates(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(_candidates(False).subquery())) or 0)


def _eligible(row, with_spec: bool) -> Eligible | None:
    shape = list(row.spec_shape or ())
    if len(shape) != 1:
        return None
    try:
        descriptions = check_hetero_input(row.semantic_spec or {}, TABLE_SPEC_TYPE, shape[0])
    except SpecificationError:
        return None
    return Eligible(row.id, row.content_sha256, descriptions, row.stat_spec if with_spec else None)
