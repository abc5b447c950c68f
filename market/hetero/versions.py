"""A map version's life in the catalog, and the version searches use.

``request_training`` makes a version ``training`` (or returns the one already training or
computing: there is never more than one in the making); the training task stores the map and
makes it ``computing``; the spec task maps every eligible learnware with it, then makes it
``ready``. Searches use the newest ``ready`` version (:func:`current_version`) and only its
specs, so a search never mixes two maps; the specs of versions older than the previous ready
one are removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from wharf.market.catalog import (
    HeteroMapVersion,
    HeteroSpec,
    Learnware,
    LearnwareStatus,
    MapState,
)
from wharf.market.catalog.models import utcnow
from wharf.market.catalog.repo import IN_BATCH, log_index_changes

MAKING = (MapState.training, MapState.computing)
#: Where a version's map is stored.
MAP_KEY = "hetero/maps/v{version:06d}.pt"


class NoHeteroMap(LookupError):
    """The market has no ready map: heterogeneous search is not available yet."""

    def __init__(self, making: int | None = None):
        detail = "this market has no trained heterogeneous map yet"
        if making is not None:
            detail += f" (version {making} is being made; try again when it is ready)"
        else:
            detail += " (an admin starts one: wharf admin hetero train)"
        super().__init__(detail)
        self.making = making


def current_version(s: Session) -> HeteroMapVersion | None:
    """The newest ready version: the one searches map requirements with."""
    return s.scalars(
        select(HeteroMapVersion)
        .where(HeteroMapVersion.state == MapState.ready)
        .order_by(HeteroMapVersion.version.desc())
        .limit(1)
    ).first()


def require_current_version(s: Session) -> HeteroMapVersion:
    """:func:`current_version`, or :class:`NoHeteroMap` saying whether one is being made."""
    version = current_version(s)
    if version is None:
        making = in_the_making(s)
        raise NoHeteroMap(making.version if making is not None else None)
    return version


def in_the_making(s: Session) -> HeteroMapVersion | None:
    return s.scalars(
        select(HeteroMapVersion)
        .where(HeteroMapVersion.state.in_(MAKING))
        .order_by(HeteroMapVersion.version.desc())
        .limit(1)
    ).first()


def get_version(s: Session, version: int) -> HeteroMapVersion | None:
    return s.get(HeteroMapVersion, version)


def list_versions(s: Session, limit: int = 50) -> list[HeteroMapVersion]:
    return list(
        s.scalars(select(HeteroMapVersion).order_by(HeteroMapVersion.version.desc()).limit(limit))
    )


def request_training(s: Session, trigger: str) -> tuple[HeteroMapVersion, bool]:
    """A new version to train, or the one already in the making; ``(version, created)``.

    Two requests at once may both create one on PostgreSQL's default isolation: the second
    insert then fails on the primary key, and the caller's transaction with it (retry).
    """
    making = in_the_making(s)
    if making is not None:
        return making, False
    newest = s.scalar(select(func.max(HeteroMapVersion.version))) or 0
    row = HeteroMapVersion(
        version=newest + 1, state=MapState.training, trigger=trigger, learnwares=0, progress=0.0
    )
    s.add(row)
    s.flush()
    return row, True


def mark_trained(
    s: Session, version: int, object_key: str, learnwares: int, info: dict[str, Any]
) -> None:
    row = s.get(HeteroMapVersion, version, with_for_update=True)
    if row is not None and row.state == MapState.training:
        row.state, row.object_key, row.learnwares = MapState.computing, object_key, learnwares
        row.info, row.progress = info, 0.0


def mark_failed(s: Session, version: int, error: str) -> None:
    row = s.get(HeteroMapVersion, version, with_for_update=True)
    if row is not None and row.state in MAKING:
        row.state, row.error = MapState.failed, error[:2000]


def set_progress(s: Session, version: int, progress: float) -> None:
    row = s.get(HeteroMapVersion, version)
    if row is not None:
        row.progress = float(progress)


def mark_ready(s: Session, version: int) -> list[str]:
    """Make ``version`` the one searches use. Only its specs and those of the version it
    replaces are kept (a search that read the previous version a moment ago still finds its
    specs); the map objects of the versions before those two are returned, for the caller to
    delete from the store once this commits (users may still download the previous map)."""
    row = s.get(HeteroMapVersion, version, with_for_update=True)
    if row is None or row.state != MapState.computing:
        return []
    previous = current_version(s)
    row.state, row.progress, row.ready_at = MapState.ready, 1.0, utcnow()
    keep = [version] + ([previous.version] if previous is not None else [])
    s.execute(delete(HeteroSpec).where(HeteroSpec.map_version.not_in(keep)))
    older = s.scalars(
        select(HeteroMapVersion).where(
            HeteroMapVersion.version.not_in(keep), HeteroMapVersion.object_key.is_not(None)
        )
    ).all()
    keys = [v.object_key for v in older]
    for v in older:
        v.object_key = None  # its map is gone: GET .../file answers 404
    return keys


#: The change-log operation of a hetero spec stored or dropped (searchers re-read the learnware).
LOG_OP = "hetero"


def put_spec(
    s: Session, learnware_id: int, version: int, sha256: str, spec_json: str, *, log: bool = True
) -> None:
    """Store (or replace) a learnware's spec under ``version``, and log the change for the
    searchers' hetero indexes (``log=False``: a version not ready yet, whose index is built
    from the catalog once it is)."""
    if log:
        log_index_changes(s, [learnware_id], LOG_OP)
    row = s.get(HeteroSpec, (learnware_id, version))
    if row is None:
        s.add(
            HeteroSpec(
                learnware_id=learnware_id,
                map_version=version,
                content_sha256=sha256,
                spec=spec_json,
            )
        )
    else:
        row.content_sha256, row.spec, row.created_at = sha256, spec_json, utcnow()


def drop_specs(s: Session, learnware_id: int) -> None:
    """Remove a learnware's specs under every version (it does not take part any more)."""
    log_index_changes(s, [learnware_id], LOG_OP)
    s.execute(delete(HeteroSpec).where(HeteroSpec.learnware_id == learnware_id))


def mapped_ids(s: Session, version: int) -> set[int]:
    """Learnwares that have a spec under ``version``."""
    return set(s.scalars(select(HeteroSpec.learnware_id).where(HeteroSpec.map_version == version)))


def specs_of_version(s: Session, version: int) -> Iterator[tuple[int, str]]:
    """``(learnware_id, spec JSON)`` of the accepted learnwares' specs under ``version``,
    each of the package the learnware has now; by id, fetched in batches."""
    stmt = (
        select(HeteroSpec.learnware_id, HeteroSpec.spec)
        .join(Learnware, Learnware.id == HeteroSpec.learnware_id)
        .where(
            HeteroSpec.map_version == version,
            Learnware.status == LearnwareStatus.accepted,
            Learnware.content_sha256 == HeteroSpec.content_sha256,
        )
        .order_by(HeteroSpec.learnware_id)
        .execution_options(yield_per=256)
    )
    yield from s.execute(stmt)


def version_entries(s: Session, version: int, learnware_ids: list[int]) -> list[tuple[int, str]]:
    """``(learnware_id, spec JSON)`` of those of ``learnware_ids`` that have a spec under
    ``version`` now, as :func:`specs_of_version` reads them (accepted, of their package)."""
    ids = sorted({int(i) for i in learnware_ids})
    out: list[tuple[int, str]] = []
    for start in range(0, len(ids), IN_BATCH):
        stmt = (
            select(HeteroSpec.learnware_id, HeteroSpec.spec)
            .join(Learnware, Learnware.id == HeteroSpec.learnware_id)
            .where(
                HeteroSpec.map_version == version,
                HeteroSpec.learnware_id.in_(ids[start : start + IN_BATCH]),
                Learnware.status == LearnwareStatus.accepted,
                Learnware.content_sha256 == HeteroSpec.content_sha256,
            )
        )
        out.extend((int(a), b) for a, b in s.execute(stmt))
    return out


def version_view(row: HeteroMapVersion, specs: int | None = None) -> dict[str, Any]:
    """What the API and the CLI show of a version."""
    view = {
        "version": row.version,
        "state": str(row.state),
        "trigger": row.trigger,
        "learnwares": row.learnwares,
        "progress": round(row.progress, 4),
        "created_at": row.created_at.isoformat(),
        "ready_at": row.ready_at.isoformat() if row.ready_at else None,
        "error": row.error,
        "training": row.info,
    }
    if specs is not None:
        view["specs"] = specs
    return view


def spec_count(s: Session, version: int) -> int:
    return int(
        s.scalar(
            select(func.count()).select_from(HeteroSpec).where(HeteroSpec.map_version == version)
        )
        or 0
    )
