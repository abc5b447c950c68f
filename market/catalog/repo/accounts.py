"""Accounts for the pages: passwords (argon2id), the user's state, sign-in sessions.

A password is checked by :func:`check_login`, which spends one argon2 verification whether or
not the email is known, so the time of an answer does not tell whether an account exists.
A session's secret goes to the browser; the catalog keeps only its SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..account_tables import WebSession
from ..models import ApiToken, User, UserState, utcnow
from .users import get_user_by_email

#: argon2id with the library's defaults (RFC 9106's second recommended profile: 64 MiB,
#: 3 passes), re-hashed on sign-in when the parameters change.
_hasher = PasswordHasher()
PASSWORD_MIN = 10
#: Longer passwords are refused before hashing (each byte costs hashing time).
PASSWORD_MAX = 1024


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that an unknown email costs what a wrong
    password does (made on first use: importing the catalog hashes nothing)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def password_problem(password: str, email: str = "") -> str | None:
    """Why ``password`` is not acceptable, or ``None``."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        return f"a password has at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"a password has at most {PASSWORD_MAX} characters"
    if email and password.strip().lower() == email.strip().lower():
        return "a password is not the account's email"
    return None


def set_password(s: Session, user: User, password: str) -> None:
    """Store ``password``'s hash (the caller checked :func:`password_problem`)."""
    user.password_hash = _hasher.hash(password)
    s.flush()


def check_login(s: Session, email: str, password: str) -> User | None:
    """The user whose email and password these are, whatever their state, or ``None``.

    One argon2 verification is always spent. A hash made with older parameters is made
    again with the current ones.
    """
    if not isinstance(password, str) or len(password) > PASSWORD_MAX:
        password = ""
    user = get_user_by_email(s, email) if isinstance(email, str) else None
    stored = user.password_hash if user is not None and user.password_hash else None
    try:
        _hasher.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        set_password(s, user, password)
    return user


def set_state(s: Session, user: User, state: UserState) -> None:
    """Make ``user`` active, pending or disabled. A user who is no longer active is signed
    out everywhere and their API tokens are revoked (a disabled account keeps no way in)."""
    user.state = UserState(state)
    if user.state != UserState.active:
        end_sessions(s, user.id)
        s.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    s.flush()


def list_users(s: Session, *, state: UserState | None = None, limit: int = 500) -> list[User]:
    stmt = select(User).order_by(User.id).limit(limit)
    if state is not None:
        stmt = stmt.where(User.state == state)
    return list(s.scalars(stmt))


# -- sessions -------------------------------------------------------------------------------


def hash_session(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def start_session(s: Session, user_id: int, lifetime: timedelta) -> str:
    """A new session for ``user_id``: its secret, for the cookie (shown nowhere else)."""
    secret = secrets.token_urlsafe(32)
    s.add(
        WebSession(
            user_id=user_id, session_hash=hash_session(secret), expires_at=utcnow() + lifetime
        )
    )
    s.flush()
    return secret


def session_user(s: Session, secret: str, *, now: datetime | None = None) -> User | None:
    """The active user a session's secret signs in, or ``None`` (unknown, expired, or a user
    who is not active). Read-only."""
    if not isinstance(secret, str) or not secret or len(secret) > 128:
        return None
    row = s.execute(
        select(User, WebSession.expires_at)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.session_hash == hash_session(secret))
    ).one_or_none()
    if row is None or row[1] <= (now or utcnow()) or row[0].state != UserState.active:
        return None
    return row[0]


def end_session(s: Session, secret: str) -> None:
    if isinstance(secret, str) and secret:
        s.execute(delete(WebSession).where(WebSession.session_hash == hash_session(secret)))


def end_sessions(s: Session, user_id: int) -> int:
    """Sign ``user_id`` out of every browser (a password change, a disabled account)."""
    return s.execute(delete(WebSession).where(WebSession.user_id == user_id)).rowcount or 0


def purge_sessions(s: Session, *, now: datetime | None = None) -> int:
    """Remove expired sessions."""
    stmt = delete(WebSession).where(WebSession.expires_at <= (now or utcnow()))
    return s.execute(stmt).rowcount or 0
