"""The heterogeneous market's tables: the map's versions and each learnware's spec per version.

A version is made ``training``, becomes ``computing`` once its map is in the object store,
and ``ready`` once every eligible learnware has its spec in it; searches use the newest
``ready`` version only, so no search ever compares specs of two maps. ``failed`` ends a
version that could not be trained (its ``error`` says why).

A spec row names the package (``content_sha256``) whose RKME it maps: a learnware given a new
package has no valid spec until it is accepted again and mapped again.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, _enum, utcnow


class MapState(enum.StrEnum):
    training = "training"
    computing = "computing"
    ready = "ready"
    failed = "failed"


class HeteroMapVersion(Base):
    """One trained (or training) map."""

    __tablename__ = "hetero_maps"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[MapState] = mapped_column(_enum(MapState, "hetero_map_state"), index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # "admin" or "auto"
    object_key: Mapped[str | None] = mapped_column(String(1024))
    learnwares: Mapped[int] = mapped_column(Integer, default=0)  # eligible when trained
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    info: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"HeteroMapVersion(version={self.version}, state={self.state})"


class HeteroSpec(Base):
    """A learnware's ``HeteroMapTableSpecification`` (reference JSON) under one map version."""

    __tablename__ = "hetero_specs"
    __table_args__ = (Index("ix_hetero_specs_map_version", "map_version", "learnware_id"),)

    learnware_id: Mapped[int] = mapped_column(
        ForeignKey("learnwares.id", ondelete="CASCADE"), primary_key=True
    )
    map_version: Mapped[int] = mapped_column(
        ForeignKey("hetero_maps.version", ondelete="CASCADE"), primary_key=True
    )
    content_sha256: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
