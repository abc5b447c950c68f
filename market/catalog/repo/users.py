"""Users and their API tokens (only a token's SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import EmailTaken, NameTaken
from ..models import (
    ApiToken,
    Role,
    User,
    utcnow,
)

TOKEN_PREFIX = "wharf_"
#: ``last_used_at`` is written at most this often, so a busy client does not write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def default_email(name: str) -> str:
    """The email of a user created without one."""
    return f"{name}@localhost".lower()


def normal_email(email: str) -> str:
    """``email`` as stored: trimmed, lower case; :class:`ValueError` if it is no address."""
    email = email.strip().lower() if isinstance(email, str) else ""
    local, at, domain = email.rpartition("@")
    if not (at and local and domain) or len(email) > 254 or any(c.isspace() for c in email):
        raise ValueError("an email is one address such as alice@example.org (254 characters)")
    return email


def create_user(s: Session, name: str, role: Role = Role.user, email: str | None = None) -> User:
    """Add a user (``email`` defaults to :func:`default_email`); :class:`NameTaken` or
    :class:`EmailTaken` if another user has that name or email."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValueError("a user name is 1 to 100 characters, not blank")
    email = normal_email(email if email is not None else default_email(name))
    if get_user_by_name(s, name) is not None:
        raise NameTaken(name)
    if get_user_by_email(s, email) is not None:
        raise EmailTaken(email)
    user = User(name=name, role=Role(role), email=email)
    try:
        with s.begin_nested():
            s.add(user)
            s.flush()
    except IntegrityError:
        if get_user_by_name(s, name) is None:
            raise EmailTaken(email) from None
        raise NameTaken(name) from None
    return user


def get_user(s: Session, user_id: int) -> User | None:
    return s.get(User, user_id)


def get_user_by_name(s: Session, name: str) -> User | None:
    return s.scalar(select(User).where(User.name == name))


def get_user_by_email(s: Session, email: str) -> User | None:
    try:
        email = normal_email(email)
    except ValueError:
        return None
    return s.scalar(select(User).where(User.email == email))


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
