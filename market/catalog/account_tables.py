"""The pages' sign-in sessions: one row per signed-in browser, found by the SHA-256 of the
cookie's secret (the secret itself is never stored, so a leaked table signs no one in)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Identity, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime, utcnow


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Past this the session signs no one in, whatever the cookie's own lifetime.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    def __repr__(self) -> str:
        return f"WebSession(id={self.id}, user_id={self.user_id})"
