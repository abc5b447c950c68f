"""One browse page of learnwares: the ids first, then those rows.

A learnware's row holds its RKME JSON (``stat_spec``, kilobytes to megabytes). On SQLite the
columns stored after it can only be read by walking its overflow pages, so sorting every
matching row to cut one page (what ``repo.list_learnwares`` asks of the database) reads every
spec: 40 ms on an idle machine for 5,000 learnwares, several hundred under load. The ids of a
page come from the status index alone; only the page's rows are read whole.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session
from wharf.market.catalog import Learnware, LearnwareScenario, LearnwareStatus, Role, User

from .query import BrowseQuery


def _conditions(q: BrowseQuery, user: User | None) -> list[ColumnElement[bool]]:
    """The same filters and visibility rule as ``GET /v1/learnwares``."""
    where: list[ColumnElement[bool]] = []
    for column, value in (
        (Learnware.data_type, q.data),
        (Learnware.task_type, q.task),
        (Learnware.library, q.library),
        (Learnware.license, q.license),
    ):
        if value:
            where.append(column == value)
    if q.scenario:
        tagged = select(LearnwareScenario.learnware_id).where(
            LearnwareScenario.scenario.in_(q.scenario)
        )
        where.append(Learnware.id.in_(tagged))
    if q.q:
        where.append(
            or_(
                Learnware.name.icontains(q.q, autoescape=True),
                Learnware.description.icontains(q.q, autoescape=True),
            )
        )
    if user is None or user.role != Role.admin:  # others' unchecked learnwares stay private
        visible = Learnware.status == LearnwareStatus.accepted
        if user is not None:
            visible = or_(visible, Learnware.owner_id == user.id)
        where.append(visible)
    return where


def browse_page(session: Session, q: BrowseQuery, user: User | None) -> tuple[list[Learnware], int]:
    """The page's learnwares, newest first, and how many match in all."""
    where = _conditions(q, user)
    total = session.scalar(select(func.count()).select_from(Learnware).where(*where)) or 0
    ids = session.scalars(
        select(Learnware.id)
        .where(*where)
        .order_by(Learnware.id.desc())
        .limit(q.per_page)
        .offset(q.offset)
    ).all()
    if not ids:
        return [], total
    rows = {lw.id: lw for lw in session.scalars(select(Learnware).where(Learnware.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows], total
