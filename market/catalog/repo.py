"""Catalog operations: plain functions over a :class:`~sqlalchemy.orm.Session`.

Every query is built with SQLAlchemy expressions, so values always travel as bound
parameters. The functions flush but never commit: the caller's ``Catalog.session()`` owns
the transaction, so one request's changes land together or not at all.

State changes that workers race for (claiming a check, starting or finishing a job) are one
conditional ``UPDATE … WHERE state = …``: the database decides who wins, and the loser gets
``False``/``None`` instead of a second run. That is what makes the tasks idempotent.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer
from wharf.specification.semantic import MAX_DESCRIPTION_CHARS, SemanticSpec

from .errors import DuplicateContent, LearnwareNotFound, NameTaken
from .models import (
    ApiToken,
    IndexChange,
    Job,
    JobKind,
    JobState,
    Learnware,
    LearnwareScenario,
    LearnwareStatus,
    Role,
    User,
    utcnow,
)

#: Learnware ids are 32-bit on every backend (SQLite's AUTOINCREMENT needs ``INTEGER``).
MAX_ID = 2**31 - 1
MAX_LIST_LIMIT = 10_000
TOKEN_PREFIX = "wharf_"
#: ``last_used_at`` is written at most this often, so a busy client does not write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SPEC_META_KEYS = frozenset({"type", "shape", "gamma", "points", "num_points"})
_UNFINISHED = (JobState.queued, JobState.running)
_TAG_LENGTH = 64  # the width of the tag columns
_IN_BATCH = 500  # ids per IN (…) list

# -- ids ------------------------------------------------------------------------------------


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


# -- users and tokens -----------------------------------------------------------------------


def create_user(s: Session, name: str, role: Role = Role.user) -> User:
    """Add a user; :class:`NameTaken` if another user has ``name``."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValueError("a user name is 1 to 100 characters, not blank")
    user = User(name=name, role=Role(role))
    try:
        with s.begin_nested():
            s.add(user)
            s.flush()
    except IntegrityError:
        raise NameTaken(name) from None
    return user


def get_user(s: Session, user_id: int) -> User | None:
    return s.get(User, user_id)


def get_user_by_name(s: Session, name: str) -> User | None:
    return s.scalar(select(User).where(User.name == name))


def hash_token(plaintext: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_token(
    s: Session, user_id: int, name: str, expires_at: datetime | None = None
) -> tuple[str, ApiToken]:
    """Issue a token: ``(plaintext, row)``. The plaintext is shown once and never stored."""
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user_id, name=name, token_hash=hash_token(plaintext))
    token.expires_at = expires_at
    s.add(token)
    s.flush()
    return plaintext, token


def token_expiry(
    days: int | None, max_days: int, *, now: datetime | None = None
) -> datetime | None:
    """When a new token expires under a lifetime policy of ``max_days`` (0: no limit).

    ``days`` is the lifetime asked for; without one the token lives ``max_days`` (or forever
    when there is no limit). Asking for more than ``max_days`` raises :class:`ValueError` with
    a message that can be shown to the client.
    """
    if days is not None and days < 1:
        raise ValueError(f"a token lives at least 1 day, not {days}")
    if max_days and days is not None and days > max_days:
        raise ValueError(f"tokens of this market live at most {max_days} days, not {days}")
    days = days or max_days
    return (now or utcnow()) + timedelta(days=days) if days else None


def find_token(s: Session, plaintext: str) -> tuple[User, ApiToken] | None:
    """The user and token for a secret whatever its state (see :func:`token_state`), or
    ``None`` if no token has this secret.

    Read-only (works in a read-only session). The lookup is by hash, so no comparison of
    secrets happens here.
    """
    if not isinstance(plaintext, str) or not plaintext or len(plaintext) > 256:
        return None
    row = s.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(plaintext))
    ).one_or_none()
    if row is None:
        return None
    token, user = row
    return user, token


def token_state(token: ApiToken, *, now: datetime | None = None) -> str:
    """``"active"``, ``"revoked"`` or ``"expired"`` (a revoked token is reported as revoked
    even once past its expiry)."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def lookup_token(s: Session, plaintext: str) -> tuple[User, ApiToken] | None:
    """The user and token for a secret, or ``None`` if unknown, revoked or expired.

    Read-only, like :func:`find_token`.
    """
    found = find_token(s, plaintext)
    if found is None or token_state(found[1]) != "active":
        return None
    return found


def token_use_is_stale(token: ApiToken) -> bool:
    """Whether ``last_used_at`` is older than :data:`LAST_USED_RESOLUTION` (worth a write)."""
    return token.last_used_at is None or utcnow() - token.last_used_at >= LAST_USED_RESOLUTION


def record_token_use(s: Session, token_id: int) -> None:
    s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def authenticate(s: Session, plaintext: str) -> User | None:
    """:func:`lookup_token`, recording the use (at most once per
    :data:`LAST_USED_RESOLUTION`); needs a read-write session."""
    found = lookup_token(s, plaintext)
    if found is None:
        return None
    user, token = found
    if token_use_is_stale(token):
        token.last_used_at = utcnow()
    return user


def revoke_token(s: Session, token_id: int, *, user_id: int | None = None) -> ApiToken | None:
    """Revoke a token (idempotent); with ``user_id``, only if it belongs to that user.

    Returns the token, or ``None`` when there is no such token (for that user).
    """
    token = s.get(ApiToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        return None
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        s.flush()
    return token


def list_tokens(s: Session, user_id: int, *, include_revoked: bool = True) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return list(s.scalars(stmt))


# -- learnwares -----------------------------------------------------------------------------


def _semantic_columns(
    semantic_spec: Mapping[str, Any], parsed: SemanticSpec | None = None
) -> dict[str, Any]:
    """The filter columns copied from a semantic spec (raises ``SemanticSpecError`` if bad);
    ``parsed``, if given, is that spec already parsed (bulk imports parse thousands)."""
    spec = parsed if parsed is not None else SemanticSpec.from_dict(semantic_spec)
    for key, values in (
        ("Data", spec.values("Data")),
        ("Task", spec.values("Task")),
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
        "library": spec.library,
        "license": spec.license,
        "scenarios": list(dict.fromkeys(spec.scenarios)),
    }


def _set_semantic(lw: Learnware, semantic_spec: Mapping[str, Any]) -> None:
    for column, value in _semantic_columns(semantic_spec).items():
        setattr(lw, column, value)
    # Edit the tag rows in place: removing and re-adding a row in one flush could collide.
    wanted = set(lw.scenarios)
    lw.scenario_links = [link for link in lw.scenario_links if link.scenario in wanted]
    have = {link.scenario for link in lw.scenario_links}
    lw.scenario_links.extend(LearnwareScenario(scenario=t) for t in lw.scenarios if t not in have)


def _check_package(sha256: str, package_key: str, package_size: int) -> None:
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
    _check_package(sha256, package_key, package_size)
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
    for start in range(0, len(wanted), _IN_BATCH):
        stmt = (
            select(Learnware)
            .where(Learnware.id.in_(wanted[start : start + _IN_BATCH]))
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


def _spec_columns(spec_meta: Mapping[str, Any] | None) -> dict[str, Any]:
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
    values = _spec_columns(spec_meta)
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
    _check_package(sha256, package_key, package_size)
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
            for column, value in _spec_columns(None).items():
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


# -- the index change log -------------------------------------------------------------------


def log_index_changes(s: Session, learnware_ids: Iterable[int], op: str) -> None:
    """Append one change-log entry per learnware (in this transaction)."""
    now = utcnow()
    rows = [{"learnware_id": int(i), "op": op, "created_at": now} for i in learnware_ids]
    if rows:
        s.execute(IndexChange.__table__.insert(), rows)


def index_changes_after(s: Session, seq: int, *, limit: int = 100_000) -> list[tuple[int, int]]:
    """``(seq, learnware_id)`` of the log entries after ``seq``, in order."""
    stmt = (
        select(IndexChange.seq, IndexChange.learnware_id)
        .where(IndexChange.seq > seq)
        .order_by(IndexChange.seq)
        .limit(limit)
    )
    return [(int(a), int(b)) for a, b in s.execute(stmt)]


def index_changes_in(s: Session, seqs: Iterable[int]) -> list[tuple[int, int]]:
    """``(seq, learnware_id)`` of those log entries among ``seqs`` that exist."""
    wanted = sorted({int(q) for q in seqs})
    out: list[tuple[int, int]] = []
    for start in range(0, len(wanted), _IN_BATCH):
        stmt = select(IndexChange.seq, IndexChange.learnware_id).where(
            IndexChange.seq.in_(wanted[start : start + _IN_BATCH])
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
    for start in range(0, len(ids), _IN_BATCH):
        stmt = select(Learnware.id, Learnware.stat_spec).where(
            Learnware.id.in_(ids[start : start + _IN_BATCH]),
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
    for start in range(0, len(ids), _IN_BATCH):
        # The status is compared here, not in SQL: with it in the WHERE clause SQLite reads
        # the (status, …) index of every accepted learnware instead of looking these up by id.
        stmt = select(Learnware.id, Learnware.name, Learnware.status).where(
            Learnware.id.in_(ids[start : start + _IN_BATCH])
        )
        found.update(
            (int(i), name or "")
            for i, name, status in s.execute(stmt)
            if status == LearnwareStatus.accepted
        )
    return found


def accepted_count(s: Session) -> int:
    stmt = select(func.count()).where(Learnware.status == LearnwareStatus.accepted)
    return s.scalar(stmt) or 0


# -- jobs -----------------------------------------------------------------------------------


def create_job(
    s: Session,
    kind: JobKind | str,
    *,
    owner_id: int | None = None,
    learnware_id: int | None = None,
    request: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
) -> Job:
    """A queued job; ``parent_id``: the bulk submission a check job belongs to."""
    job = Job(
        kind=JobKind(kind),
        state=JobState.queued,
        owner_id=owner_id,
        learnware_id=learnware_id,
        parent_id=parent_id,
        request=dict(request or {}),
        progress=0.0,
        attempts=0,
    )
    s.add(job)
    s.flush()
    return job


def get_job(s: Session, job_id: str) -> Job | None:
    return s.get(Job, job_id)


def lock_job(s: Session, job_id: str) -> Job | None:
    """Load a job for change, locking its row on PostgreSQL until the commit (on SQLite a
    read-write session holds the database's write lock already)."""
    return s.get(Job, job_id, with_for_update=True, populate_existing=True)


def unfinished_checks(s: Session, owner_id: int) -> int:
    """How many check jobs of ``owner_id`` are queued or running."""
    stmt = select(func.count()).where(
        Job.owner_id == owner_id, Job.kind == JobKind.check, Job.state.in_(_UNFINISHED)
    )
    return s.scalar(stmt) or 0


def unfinished_jobs(s: Session, owner_id: int, kind: JobKind | str) -> list[Job]:
    """The queued or running jobs of ``owner_id`` of one kind."""
    stmt = select(Job).where(
        Job.owner_id == owner_id, Job.kind == JobKind(kind), Job.state.in_(_UNFINISHED)
    )
    return list(s.scalars(stmt))


def child_jobs(s: Session, parent_id: str) -> list[Job]:
    """The jobs of a bulk submission (their ``parent_id``), oldest first."""
    stmt = select(Job).where(Job.parent_id == parent_id).order_by(Job.created_at, Job.id)
    return list(s.scalars(stmt))


def child_job_counts(s: Session, parent_id: str) -> dict[JobState, int]:
    """How many jobs of a bulk submission are in each state."""
    stmt = select(Job.state, func.count()).where(Job.parent_id == parent_id).group_by(Job.state)
    return {JobState(state): int(n) for state, n in s.execute(stmt)}


def _job_update(s: Session, job_id: str, states: Iterable[JobState], **values: Any) -> bool:
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(list(states)))
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def start_job(s: Session, job_id: str, worker: str | None = None) -> Job | None:
    """``queued`` → ``running``, held by ``worker`` (``"host:pid"``); ``None`` unless queued.

    A job already running is held by a live worker, or by a lost one: only
    :func:`take_over_job` starts it again.
    """
    now = utcnow()
    started = _job_update(
        s,
        job_id,
        (JobState.queued,),
        state=JobState.running,
        attempts=Job.attempts + 1,
        started_at=now,
        worker=worker,
        heartbeat_at=now,
    )
    return s.get(Job, job_id, populate_existing=True) if started else None


def take_over_job(s: Session, job_id: str, worker: str, *, holder: str | None) -> Job | None:
    """Start a running job again under ``worker``, its last ``holder`` having died: one more
    worker loss. ``None`` if the job is no longer running under ``holder`` (someone else took
    it over, or it ended)."""
    now = utcnow()
    held = Job.worker.is_(None) if holder is None else Job.worker == holder
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running, held)
        .values(
            attempts=Job.attempts + 1,
            worker_losses=Job.worker_losses + 1,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
        )
        .execution_options(synchronize_session="fetch")
    )
    return s.get(Job, job_id, populate_existing=True) if result.rowcount == 1 else None


def beat(s: Session, job_id: str, worker: str) -> bool:
    """A running job's sign of life from the worker holding it."""
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running, Job.worker == worker)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def silent_jobs(s: Session, before: datetime, kinds: Iterable[JobKind]) -> list[Job]:
    """Running jobs of ``kinds`` with no sign of life since ``before``."""
    stmt = select(Job).where(
        Job.state == JobState.running,
        Job.kind.in_(list(kinds)),
        func.coalesce(Job.heartbeat_at, Job.started_at) < before,
    )
    return list(s.scalars(stmt))


def requeue_job(s: Session, job_id: str, *, holder: str | None, lost: bool) -> bool:
    """``running`` → ``queued`` (sent again): after a retry, or after its ``holder`` was lost
    (``lost``: counted). ``False`` if it is no longer running under ``holder``."""
    held = Job.worker.is_(None) if holder is None else Job.worker == holder
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.running, held)
        .values(
            state=JobState.queued,
            worker=None,
            heartbeat_at=None,
            worker_losses=Job.worker_losses + (1 if lost else 0),
        )
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount == 1


def set_progress(s: Session, job_id: str, progress: float, stage: str | None = None) -> bool:
    """Report progress (0 … 1) and the current stage of a running job."""
    if not (isinstance(progress, int | float) and 0.0 <= progress <= 1.0):
        raise ValueError(f"progress must be between 0 and 1, got {progress!r}")
    values: dict[str, Any] = {"progress": float(progress)}
    if stage is not None:
        values["stage"] = stage[:200]
    return _job_update(s, job_id, (JobState.running,), **values)


def advance_progress(s: Session, job_id: str, delta: float, *, cap: float = 0.99) -> bool:
    """Add ``delta`` to a running job's progress (at most ``cap``) in one ``UPDATE``, so
    tasks working on parts of one job in parallel each report theirs without a race."""
    if not (isinstance(delta, int | float) and 0.0 <= delta <= 1.0 and 0.0 <= cap <= 1.0):
        raise ValueError(f"delta and cap must be between 0 and 1, got {delta!r}, {cap!r}")
    value = case((Job.progress + delta > cap, cap), else_=Job.progress + delta)
    return _job_update(s, job_id, (JobState.running,), progress=value)


def finish_job(s: Session, job_id: str, result: Mapping[str, Any] | None = None) -> bool:
    """Mark a job succeeded with its (small, JSON) result; ``False`` if already finished."""
    return _job_ended(
        s,
        job_id,
        _job_update(
            s,
            job_id,
            _UNFINISHED,
            state=JobState.succeeded,
            progress=1.0,
            result=None if result is None else dict(result),
            error=None,
            finished_at=utcnow(),
        ),
    )


def fail_job(s: Session, job_id: str, error: str) -> bool:
    """Mark a job failed with a message a person can act on; ``False`` if already finished."""
    return _job_ended(
        s,
        job_id,
        _job_update(
            s, job_id, _UNFINISHED, state=JobState.failed, error=error, finished_at=utcnow()
        ),
    )


#: Where a session keeps the ids of the jobs it ended, announced once it commits
#: (:attr:`Catalog.on_jobs_ended`).
ENDED_JOBS = "wharf_ended_jobs"


def _job_ended(s: Session, job_id: str, ended: bool) -> bool:
    if ended:
        s.info.setdefault(ENDED_JOBS, set()).add(job_id)
    return ended


def latest_job_for(s: Session, learnware_id: int, kind: JobKind | str) -> Job | None:
    stmt = (
        select(Job)
        .where(Job.learnware_id == learnware_id, Job.kind == JobKind(kind))
        .order_by(Job.created_at.desc())
        .limit(1)
    )
    return s.scalar(stmt)


# -- figures for monitoring -----------------------------------------------------------------


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
