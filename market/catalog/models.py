"""The catalog's tables as typed SQLAlchemy 2 declarative models.

The catalog is the source of truth of the market: every search index is a rebuildable cache
of the ``accepted`` rows here. ``migrations/versions`` must create exactly this schema (a test
compares them), so a change here needs a new migration.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint and index names, identical on SQLite and PostgreSQL, so later
# migrations can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class Role(enum.StrEnum):
    user = "user"
    admin = "admin"


class UserState(enum.StrEnum):
    """``pending``: signed up on a market whose admins approve accounts, not yet approved;
    ``disabled``: turned off by an admin. Only ``active`` users may sign in."""

    active = "active"
    pending = "pending"
    disabled = "disabled"


class LearnwareStatus(enum.StrEnum):
    pending = "pending"
    checking = "checking"
    accepted = "accepted"
    rejected = "rejected"


class JobKind(enum.StrEnum):
    check = "check"
    search = "search"
    index = "index"


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"  # by its owner or an admin (DELETE /v1/jobs/{id})


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as UTC
    wall time and marked UTC again when read. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: catalog timestamps must be aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> JSON:
    # JSONB on PostgreSQL (compact, comparable); Python ``None`` is SQL NULL, not JSON null.
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # VARCHAR, not a native enum type: adding a state later is a plain code change.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    # A unique index rather than a constraint: adding it to a SQLite catalog needs no copy of
    # the table (which its foreign keys would forbid).
    __table_args__ = (
        Index("ix_users_email", "email", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: Lower case; what the learnware client logs in with (``/api/auth/login_by_token``).
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.user)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who may sign in to the pages (:class:`UserState`); API tokens of a user who is not
    #: active are revoked when the state changes.
    state: Mapped[UserState] = mapped_column(
        _enum(UserState, "user_state"), default=UserState.active, server_default="active"
    )
    #: The argon2id hash of the pages' password; ``None``: no password (tokens only).
    password_hash: Mapped[str | None] = mapped_column(String(255))

    def __repr__(self) -> str:
        return f"User(id={self.id}, name={self.name!r}, role={self.role})"


class ApiToken(Base):
    """An API token; only the sha256 of the secret is stored, so a leaked table grants nothing."""

    __tablename__ = "api_tokens"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id}, user_id={self.user_id}, name={self.name!r})"


class Learnware(Base):
    """A submitted learnware.

    The ``id`` is never reused (SQLite ``AUTOINCREMENT``, a PostgreSQL identity), so a deleted
    learnware's id cannot come to name a different model. The filter columns (``name`` …
    ``scenarios``) are copies of the semantic spec kept in step by ``repo``; ``scenarios`` is
    also in :class:`LearnwareScenario`, one indexed row per tag, for the "any of" filter.

    ``spec_shape`` is the shape of one RKME point (``z.shape[1:]``, e.g. ``[64]``), ``spec_points``
    the number K of points and ``num_points`` the rows of the data the spec summarises.
    ``stat_spec`` (the RKME JSON, possibly megabytes) is loaded only when read.
    """

    __tablename__ = "learnwares"
    __table_args__ = (
        Index("ix_learnwares_partition", "status", "spec_type", "spec_gamma"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    status: Mapped[LearnwareStatus] = mapped_column(
        _enum(LearnwareStatus, "learnware_status"), default=LearnwareStatus.pending
    )
    semantic_spec: Mapped[dict[str, Any]] = mapped_column(_json())

    name: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    data_type: Mapped[str | None] = mapped_column(String(64), index=True)
    task_type: Mapped[str | None] = mapped_column(String(64), index=True)
    model_type: Mapped[str | None] = mapped_column(String(64), index=True)
    library: Mapped[str | None] = mapped_column(String(64), index=True)
    license: Mapped[str | None] = mapped_column(String(64), index=True)
    scenarios: Mapped[list[str]] = mapped_column(_json(), default=list)

    spec_type: Mapped[str | None] = mapped_column(String(64))
    spec_shape: Mapped[list[int] | None] = mapped_column(_json())
    spec_gamma: Mapped[float | None] = mapped_column(Double)
    spec_points: Mapped[int | None] = mapped_column(Integer)
    num_points: Mapped[int | None] = mapped_column(Integer)
    stat_spec: Mapped[str | None] = mapped_column(Text, deferred=True)

    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    package_key: Mapped[str] = mapped_column(String(1024), index=True)
    package_size: Mapped[int] = mapped_column(BigInteger)
    #: Where the package starts inside the object ``package_key`` when that object is a pack
    #: (a trusted bulk import's bundle); ``None`` when the object is the package.
    package_offset: Mapped[int | None] = mapped_column(BigInteger)
    check_log: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    scenario_links: Mapped[list[LearnwareScenario]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Learnware(id={self.id}, status={self.status}, name={self.name!r})"


class LearnwareScenario(Base):
    """One ``Scenario`` tag of a learnware: an indexed row, so "any of these" is a join."""

    __tablename__ = "learnware_scenarios"

    learnware_id: Mapped[int] = mapped_column(
        ForeignKey("learnwares.id", ondelete="CASCADE"), primary_key=True
    )
    scenario: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Job(Base):
    """An asynchronous job (check, search, index) that clients poll.

    The check jobs of a bulk submission name it as their ``parent_id``: the bulk job's
    progress is the share of them that ended, and it ends with the last of them.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_learnware_lookup", "learnware_id", "kind", "created_at"),
        # A user's unfinished checks, counted against their quota of pending checks.
        Index("ix_jobs_owner_kind_state", "owner_id", "kind", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    state: Mapped[JobState] = mapped_column(
        _enum(JobState, "job_state"), default=JobState.queued, index=True
    )
    stage: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    learnware_id: Mapped[int | None] = mapped_column(
        ForeignKey("learnwares.id", ondelete="SET NULL")
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    request: Mapped[dict[str, Any]] = mapped_column(_json(), default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(_json())
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker process running it ("host:pid"), its last sign of life, and how many
    # workers died running it (market.catalog.repo.start_job, workers.liveness). While the
    # job is queued, ``heartbeat_at`` is when its message was last sent to the broker, or is
    # due (a retry's countdown); ``None``: when it was created (workers.reconcile).
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"Job(id={self.id}, kind={self.kind}, state={self.state})"


class IndexChange(Base):
    """One entry of the append-only log of changes to the set of accepted learnwares.

    Written in the transaction that accepts a learnware, imports one, withdraws one (a new
    package) or deletes one. Search workers keep their indexes in step by reading the entries
    after the last ``seq`` they applied and re-reading those learnwares: an entry says *that*
    a learnware changed, and the catalog says what it is now. ``seq`` is assigned when the
    row is inserted, so a slow transaction can commit an entry below one already read;
    readers therefore keep the gaps they saw open for a while (``market.index.sync``).
    """

    __tablename__ = "index_changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    learnware_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(8))  # "add" or "remove": for people reading the log
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
