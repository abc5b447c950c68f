"""Learnwares: creation, the check's state changes, edits, deletion, listing, and the specs a
search reads."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer
from wharf.specification.semantic import DEFAULT_MODEL, MAX_DESCRIPTION_CHARS, SemanticSpec

from ..errors import DuplicateContent, LearnwareNotFound
from ..models import (
    Job,
    JobKind,
    JobState,
    Learnware,
    LearnwareScenario,
    LearnwareStatus,
    utcnow,
)
from .ids import IN_BATCH
from .index_log import log_index_changes

MAX_LIST_LIMIT = 10_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SPEC_META_KEYS = frozenset({"type", "shape", "gamma", "points", "num_points"})
_TAG_LENGTH = 64  # the width of the tag columns


def semantic_columns(
    semantic_spec: Mapping[str, Any], parsed: SemanticSpec | None = None
) -> dict[str, Any]:
    """The filter columns copied from a semantic spec (raises ``SemanticSpecError`` if bad);
    ``parsed``, if given, is that spec already parsed (bulk imports parse thousands)."""
    spec = parsed if parsed is not None else SemanticSpec.from_dict(semantic_spec)
    for key, values in (
        ("Data", spec.values("Data")),
        ("Task", spec.values("Task")),
        ("Model", spec.values("Model")),
        ("Library", spec.values("Library")),
        ("License", spec.values("License")),
        ("Scenario", spec.scenarios),
    ):
        if any(len(v) > _TAG_LENGTH for v in values):
            raise ValueError(f"semantic_spec.{key}: values are at most {_TAG_LENGTH} characters")
    return {
        "semantic_spec": dict(semantic_spec),
        "name": spec.name,
        "description": spec.description,
        "data_type": spec.data_type,
        "task_type": spec.task_type,
        "model_type": spec.model_type or DEFAULT_MODEL,
        "library": spec.library,
        "license": spec.license,
        "scenarios": list(dict.fromkeys(spec.scenarios)),
    }


def _set_semantic(lw: Learnware, semantic_spec: Mapping[str, Any]) -> None:
    for column, value in semantic_columns(semantic_spec).items():
        setattr(lw, column, value)
    # Edit the tag rows in place: removing and re-adding a row in one flush could collide.
    wanted = set(lw.scenarios)
    lw.scenario_links = [link for link in lw.scenario_links if link.scenario in wanted]
    have = {link.scenario for link in lw.scenario_links}
    lw.scenario_links.extend(LearnwareScenario(scenario=t) for t in lw.scenarios if t not in have)


def check_package(sha256: str, package_key: str, package_size: int) -> None:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, got {sha256!r:.80}")
    if not package_key:
        raise ValueError("package_key must not be empty")
    if isinstance(package_size, bool) or not isinstance(package_size, int) or package_size < 0:
        raise ValueError(f"package_size must be a non-negative int, got {package_size!r}")


def _duplicate_of(s: Session, sha256: str, exc: IntegrityError) -> DuplicateContent:
    """Turn a failed insert/update into :class:`DuplicateContent` if the sha256 caused it."""
    existing = find_by_sha256(s, sha256)
    if existing is None:
        raise exc
    return DuplicateContent(existing.id)


def find_by_sha256(s: Session, sha256: str) -> Learnware | None:
    return s.scalar(select(Learnware).where(Learnware.content_sha256 == sha256))


def create_learnware(
    s: Session,
    owner_id: int,
    semantic_spec: Mapping[str, Any],
    sha256: str,
    package_key: str,
    package_size: int,
    package_offset: int | None = None,
) -> Learnware:
    """Add a ``pending`` learnware; :class:`DuplicateContent` if its content is already here.

    ``package_offset``: the package is that many bytes into the object ``package_key`` (a
    pack: a bulk submission's bundle). The pre-check catches the usual case; the unique
    constraint catches two submissions of the same bytes racing each other.
    """
    check_package(sha256, package_key, package_size)
    existing = find_by_sha256(s, sha256)
    if existing is not None:
        raise DuplicateContent(existing.id)
    lw = Learnware(
        owner_id=owner_id,
        status=LearnwareStatus.pending,
        content_sha256=sha256,
        package_key=package_key,
        package_size=package_size,
        package_offset=package_offset,
    )
    _set_semantic(lw, semantic_spec)
    try:
        with s.begin_nested():
            s.add(lw)
            s.flush()
    except IntegrityError as exc:
        raise _duplicate_of(s, sha256, exc) from None
    return lw


def get_learnware(s: Session, learnware_id: int) -> Learnware | None:
    return s.get(Learnware, learnware_id)


def get_learnwares(s: Session, learnware_ids: Iterable[int]) -> list[Learnware]:
    """The learnwares with these ids (missing ones left out), by id, ``stat_spec`` loaded."""
    wanted = sorted(set(learnware_ids))
    found: list[Learnware] = []
    for start in range(0, len(wanted), IN_BATCH):
        stmt = (
            select(Learnware)
            .where(Learnware.id.in_(wanted[start : start + IN_BATCH]))
            .options(undefer(Learnware.stat_spec))
            .order_by(Learnware.id)
        )
        found.extend(s.scalars(stmt))
    return found


def accepted_versions(s: Session) -> list[tuple[int, datetime]]:
    """``(id, updated_at)`` of every accepted learnware: what a search cache compares with.

    Any change to a learnware moves its ``updated_at``, so a cache reloads exactly the rows
    whose pair changed and drops the ids that are gone.
    """
    stmt = (
        select(Learnware.id, Learnware.updated_at)
        .where(Learnware.status == LearnwareStatus.accepted)
        .order_by(Learnware.id)
    )
    return [(row.id, row.updated_at) for row in s.execute(stmt)]


def _locked(s: Session, learnware_id: int) -> Learnware:
    """Load a learnware for change, locking its row on PostgreSQL until the commit."""
    lw = s.get(Learnware, learnware_id, with_for_update=True, populate_existing=True)
    if lw is None:
        raise LearnwareNotFound(learnware_id)
    return lw


def _any_of(column: Any, values: str | Iterable[str] | None) -> ColumnElement[bool] | None:
    if values is None:
        return None
    wanted = [values] if isinstance(values, str) else list(values)
    return column.in_(wanted) if wanted else None


def list_learnwares(
    s: Session,
    *,
    status: str | Iterable[str] | None = None,
    data_type: str | Iterable[str] | None = None,
    task_type: str | Iterable[str] | None = None,
    library: str | Iterable[str] | None = None,
    license: str | Iterable[str] | None = None,
    scenario: str | Iterable[str] | None = None,
    name: str | None = None,
    owner_id: int | None = None,
    restricted: bool = False,
    viewer_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Learnware], int]:
    """One page of learnwares, newest first, and the total number that match.

    Each filter given narrows the result; a list means "any of these" (``scenario``: the
    learnware has at least one of the tags). ``name`` is a case-insensitive substring of the
    name or the description, taken literally (``%`` and ``_`` are not wildcards).
    ``restricted`` hides learnwares that are not accepted, except those of ``viewer_id``
    (what a non-admin may see; an anonymous caller passes no ``viewer_id``).
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be ≥ 0, got {offset}")
    conditions = [
        _any_of(Learnware.status, status),
        _any_of(Learnware.data_type, data_type),
        _any_of(Learnware.task_type, task_type),
        _any_of(Learnware.library, library),
        _any_of(Learnware.license, license),
    ]
    tags = _any_of(LearnwareScenario.scenario, scenario)
    if tags is not None:
        conditions.append(Learnware.id.in_(select(LearnwareScenario.learnware_id).where(tags)))
    if name:
        conditions.append(
            or_(
                Learnware.name.icontains(name, autoescape=True),
                Learnware.description.icontains(name, autoescape=True),
            )
        )
    if owner_id is not None:
        conditions.append(Learnware.owner_id == owner_id)
    if restricted:
        visible = Learnware.status == LearnwareStatus.accepted
        if viewer_id is not None:
            visible = or_(visible, Learnware.owner_id == viewer_id)
        conditions.append(visible)
    where = [c for c in conditions if c is not None]
    total = s.scalar(select(func.count()).select_from(Learnware).where(*where)) or 0
    stmt = select(Learnware).where(*where).order_by(Learnware.id.desc())
    items = s.scalars(stmt.limit(limit).offset(offset)).all()
    return list(items), total


def _transition(s: Session, learnware_id: int, frm: LearnwareStatus, **values: Any) -> bool:
    """``UPDATE learnwares SET … WHERE id = ? AND status = frm``; whether a row changed."""
    result = s.execute(
        update(Learnware)
        .where(Learnware.id == learnware_id, Learnware.status == frm)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def claim_for_check(s: Session, learnware_id: int) -> bool:
    """Move ``pending`` → ``checking``; ``False`` if it was not pending (someone else has it)."""
    return _transition(s, learnware_id, LearnwareStatus.pending, status=LearnwareStatus.checking)


def reset_to_pending(s: Session, learnware_id: int) -> bool:
    """Move ``checking`` → ``pending`` (the worker checking it died); ``False`` otherwise."""
    return _transition(s, learnware_id, LearnwareStatus.checking, status=LearnwareStatus.pending)


def reject_unchecked(s: Session, learnware_id: int, log: str) -> bool:
    """``pending`` or ``checking`` → ``rejected`` with ``log``, nothing judged: its check was
    cancelled. Like any rejected learnware, it is checked again when its owner edits it or
    sends its package again, and can be deleted. ``False`` if it was neither."""
    result = s.execute(
        update(Learnware)
        .where(
            Learnware.id == learnware_id,
            Learnware.status.in_((LearnwareStatus.pending, LearnwareStatus.checking)),
        )
        .values(status=LearnwareStatus.rejected, check_log=log, checked_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def spec_columns(spec_meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if spec_meta is None:
        return dict.fromkeys(("spec_type", "spec_shape", "spec_gamma", "spec_points", "num_points"))
    if set(spec_meta) != _SPEC_META_KEYS:
        raise ValueError(
            f"spec_meta needs exactly the keys {sorted(_SPEC_META_KEYS)}, got {sorted(spec_meta)}"
        )
    shape, gamma = spec_meta["shape"], spec_meta["gamma"]
    if not isinstance(spec_meta["type"], str) or not spec_meta["type"]:
        raise ValueError(f"spec_meta['type'] must be a non-empty string, got {spec_meta['type']!r}")
    if not isinstance(shape, list | tuple) or not all(_is_count(d, 1) for d in shape):
        raise ValueError(f"spec_meta['shape'] must be a list of positive ints, got {shape!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not math.isfinite(gamma):
        raise ValueError(f"spec_meta['gamma'] must be a finite number, got {gamma!r}")
    for key in ("points", "num_points"):
        if not _is_count(spec_meta[key], 0):
            raise ValueError(f"spec_meta[{key!r}] must be an int ≥ 0, got {spec_meta[key]!r}")
    return {
        "spec_type": spec_meta["type"],
        "spec_shape": [int(d) for d in shape],
        "spec_gamma": float(gamma),
        "spec_points": spec_meta["points"],
        "num_points": spec_meta["num_points"],
    }


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def finish_check(
    s: Session,
    learnware_id: int,
    *,
    accepted: bool,
    log: str,
    spec_meta: Mapping[str, Any] | None,
    stat_spec_json: str | None,
    sha256: str | None = None,
) -> bool:
    """Record a check's outcome: ``checking`` → ``accepted``/``rejected``.

    ``spec_meta`` has the keys ``type``, ``shape`` (of one point), ``gamma``, ``points`` (K)
    and ``num_points``. ``stat_spec_json`` is kept only when accepted. Pass the ``sha256`` of
    the package that was checked: if the package was replaced meanwhile, the stale outcome is
    dropped. Returns ``False`` (changing nothing) unless the learnware was ``checking``.
    """
    values = spec_columns(spec_meta)
    values.update(
        status=LearnwareStatus.accepted if accepted else LearnwareStatus.rejected,
        check_log=log,
        stat_spec=stat_spec_json if accepted else None,
        checked_at=utcnow(),
    )
    stmt = update(Learnware).where(
        Learnware.id == learnware_id, Learnware.status == LearnwareStatus.checking
    )
    if sha256 is not None:
        stmt = stmt.where(Learnware.content_sha256 == sha256)
    result = s.execute(stmt.values(**values).execution_options(synchronize_session="fetch"))
    if result.rowcount == 1 and accepted:
        log_index_changes(s, [learnware_id], "add")
    return result.rowcount == 1


def update_semantic(s: Session, learnware_id: int, semantic_spec: Mapping[str, Any]) -> Learnware:
    """Replace the semantic spec (a metadata edit: the status stays); refreshes the filters."""
    lw = _locked(s, learnware_id)
    _set_semantic(lw, semantic_spec)
    s.flush()
    return lw


def replace_package(
    s: Session,
    learnware_id: int,
    sha256: str,
    package_key: str,
    package_size: int,
    package_offset: int | None = None,
) -> tuple[Learnware, str, int | None]:
    """Point a learnware at a new package: back to ``pending``, spec and log cleared.

    Returns ``(learnware, previous key, previous offset)``: release the previous package
    after the commit (if it is not the new one). Raises :class:`DuplicateContent` if another
    learnware has this content, :class:`LearnwareNotFound` if there is no such learnware.
    """
    check_package(sha256, package_key, package_size)
    lw = _locked(s, learnware_id)
    other = find_by_sha256(s, sha256)
    if other is not None and other.id != learnware_id:
        raise DuplicateContent(other.id)
    previous_key, previous_offset = lw.package_key, lw.package_offset
    if lw.status == LearnwareStatus.accepted:
        log_index_changes(s, [learnware_id], "remove")
    try:
        with s.begin_nested():
            lw.content_sha256 = sha256
            lw.package_key = package_key
            lw.package_size = package_size
            lw.package_offset = package_offset
            lw.status = LearnwareStatus.pending
            lw.stat_spec = None
            lw.check_log = None
            lw.checked_at = None
            for column, value in spec_columns(None).items():
                setattr(lw, column, value)
            s.flush()
    except IntegrityError as exc:
        raise _duplicate_of(s, sha256, exc) from None
    return lw, previous_key, previous_offset


def delete_learnware(s: Session, learnware_id: int) -> Learnware | None:
    """Delete a learnware (its jobs keep a NULL ``learnware_id``); returns the deleted row.

    The caller releases its package after the commit
    (:func:`market.packages.release_package`). The id is never handed out again.
    """
    lw = s.get(Learnware, learnware_id, with_for_update=True, populate_existing=True)
    if lw is None:
        return None
    if lw.status == LearnwareStatus.accepted:
        log_index_changes(s, [learnware_id], "remove")
    s.delete(lw)
    s.flush()
    return lw


def package_in_use(s: Session, key: str) -> bool:
    """Whether a learnware's package is in the object ``key``, or an unfinished bulk import
    may still add one (its job's request names the key as its ``pack``)."""
    if s.scalar(select(Learnware.id).where(Learnware.package_key == key).limit(1)) is not None:
        return True
    unfinished = select(Job.request).where(
        Job.kind == JobKind.index, Job.state.in_((JobState.queued, JobState.running))
    )
    return any((request or {}).get("pack") == key for request in s.scalars(unfinished))


def accepted_specs(
    s: Session, *, spec_type: str, spec_shape: Iterable[int], spec_gamma: float | None
) -> Iterator[tuple[int, dict[str, Any], str]]:
    """Stream ``(id, semantic_spec, stat_spec_json)`` of one partition's accepted learnwares.

    A partition is a spec type, the shape of one point and γ (compared exactly; ``None``
    matches specs without γ). Rows are fetched in batches; consume the iterator inside the
    session (``Catalog.session(read_only=True)`` keeps a long scan from blocking writers).
    """
    gamma = (
        Learnware.spec_gamma.is_(None)
        if spec_gamma is None
        else (Learnware.spec_gamma == float(spec_gamma))
    )
    stmt = (
        select(Learnware.id, Learnware.semantic_spec, Learnware.stat_spec, Learnware.spec_shape)
        .where(
            Learnware.status == LearnwareStatus.accepted,
            Learnware.spec_type == spec_type,
            gamma,
            Learnware.stat_spec.is_not(None),
        )
        .order_by(Learnware.id)
        .execution_options(yield_per=256)
    )
    # The shape is compared here rather than in SQL: JSON equality differs between backends.
    wanted = [int(d) for d in spec_shape]
    for learnware_id, semantic, stat_spec, shape in s.execute(stmt):
        if list(shape or ()) == wanted:
            yield learnware_id, semantic, stat_spec


def semantic_candidates(
    s: Session, requirement: SemanticSpec, *, with_text: bool
) -> list[tuple[int, str | None, str | None]]:
    """``(id, name, description)`` of the accepted learnwares passing a requirement's tag
    filter (:func:`specification.semantic.tags_match`, in SQL), by id; name and description
    are ``None`` unless ``with_text``, and cut to the part the search compares (a learnware
    stored before the bounds on text may have megabytes of it)."""
    columns = [Learnware.id]
    if with_text:
        columns += [
            func.substr(Learnware.name, 1, MAX_DESCRIPTION_CHARS),
            func.substr(Learnware.description, 1, MAX_DESCRIPTION_CHARS),
        ]
    stmt = select(*columns).where(Learnware.status == LearnwareStatus.accepted)
    for key, column in (
        ("Data", Learnware.data_type),
        ("Task", Learnware.task_type),
        ("Model", Learnware.model_type),
        ("Library", Learnware.library),
        ("License", Learnware.license),
    ):
        wanted = requirement.values(key)
        if wanted:
            stmt = stmt.where(column.in_(wanted))
    if requirement.scenarios:
        tagged = select(LearnwareScenario.learnware_id).where(
            LearnwareScenario.scenario.in_(requirement.scenarios)
        )
        stmt = stmt.where(Learnware.id.in_(tagged))
    rows = s.execute(stmt.order_by(Learnware.id)).all()
    return [(r[0], r[1], r[2]) if with_text else (r[0], None, None) for r in rows]
