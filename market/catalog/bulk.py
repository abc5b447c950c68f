"""Catalog writes for bulk imports: many learnwares per statement.

A trusted import inserts thousands of already-accepted learnwares. Row by row through the
ORM that costs about a millisecond each; here one multi-row ``INSERT … RETURNING`` adds a
whole batch, its scenario rows and its index change-log entries in the caller's transaction,
so the search workers see the batch appear at once (or not at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Learnware, LearnwareScenario, LearnwareStatus, utcnow
from .repo import IN_BATCH, check_package, log_index_changes, spec_columns


@dataclass(frozen=True, slots=True)
class AcceptedRow:
    """One learnware to insert as ``accepted``.

    ``semantic`` are the filter columns of :func:`market.catalog.repo.semantic_columns`
    (``semantic_spec``, ``name`` … ``scenarios``); ``spec_meta`` has the keys of
    :func:`market.catalog.repo.finish_check`'s (``type``, ``shape``, ``gamma``, ``points``,
    ``num_points``).
    """

    semantic: Mapping[str, Any]
    spec_meta: Mapping[str, Any]
    stat_spec: str
    sha256: str
    package_key: str
    package_size: int
    package_offset: int | None = None  # in the pack ``package_key``; None: a whole object


def packages_by_sha256(
    s: Session, sha256s: Iterable[str]
) -> dict[str, tuple[int, str, int | None]]:
    """``sha256 → (learnware id, package key, package offset)`` of the learnwares already
    holding that content."""
    wanted = sorted(set(sha256s))
    found: dict[str, tuple[int, str, int | None]] = {}
    for start in range(0, len(wanted), IN_BATCH):
        stmt = select(
            Learnware.content_sha256, Learnware.id, Learnware.package_key, Learnware.package_offset
        ).where(Learnware.content_sha256.in_(wanted[start : start + IN_BATCH]))
        found.update((sha, (int(lid), key, offset)) for sha, lid, key, offset in s.execute(stmt))
    return found


def insert_accepted(
    s: Session, owner_id: int, rows: Sequence[AcceptedRow], *, check_log: str
) -> list[int]:
    """Insert ``rows`` as accepted learnwares of ``owner_id``; their ids, in order.

    Logs them in the index change log (``add``) in the same transaction. A sha256 already in
    the catalog raises ``IntegrityError`` (the unique constraint): look duplicates up with
    :func:`packages_by_sha256` first, inside the same transaction.
    """
    if not rows:
        return []
    now = utcnow()
    values = []
    for row in rows:
        check_package(row.sha256, row.package_key, row.package_size)
        values.append(
            {
                **row.semantic,
                **spec_columns(row.spec_meta),
                "owner_id": owner_id,
                "status": LearnwareStatus.accepted,
                "stat_spec": row.stat_spec,
                "content_sha256": row.sha256,
                "package_key": row.package_key,
                "package_size": row.package_size,
                "package_offset": row.package_offset,
                "check_log": check_log,
                "created_at": now,
                "updated_at": now,
                "checked_at": now,
            }
        )
    # A plain executemany, then the ids by sha256 (unique): on SQLite, INSERT … RETURNING
    # with the rows' order kept runs one statement per row, about twice as slow.
    s.execute(Learnware.__table__.insert(), values)
    by_sha = packages_by_sha256(s, [row.sha256 for row in rows])
    ids = [by_sha[row.sha256][0] for row in rows]
    tags = [
        {"learnware_id": lid, "scenario": tag}
        for lid, row in zip(ids, rows, strict=True)
        for tag in row.semantic["scenarios"]
    ]
    if tags:
        s.execute(LearnwareScenario.__table__.insert(), tags)
    log_index_changes(s, ids, "add")
    return ids
