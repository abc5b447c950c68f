"""Session tokens: what ``/auth/login_by_token`` exchanges a user's email and API token for.

The deployed market answers a login with a token that lives a day. Here a session is an API
token of the user's (stored hashed, revocable, in the same table), named
:data:`SESSION_NAME`, that expires after :data:`SESSION_HOURS` or with the token it came from,
whichever is first; ``/auth/logout`` revokes it, and every ``/v1`` rule for tokens applies.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session
from wharf.market.catalog import ApiToken, repo
from wharf.market.catalog.models import utcnow

SESSION_NAME = "learnware client session"
SESSION_HOURS = 24


def login(s: Session, email: str, token: str) -> str | None:
    """A new session token for the user with ``email`` whose active API token is ``token``;
    ``None`` when they do not match (which of the two is wrong is not told)."""
    user = repo.get_user_by_email(s, email)
    found = repo.lookup_token(s, token)
    if user is None or found is None or found[0].id != user.id:
        return None
    now = utcnow()
    # A user's expired sessions go as they log in again, so they do not pile up.
    s.execute(
        delete(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.name == SESSION_NAME,
            ApiToken.expires_at <= now,
        )
    )
    expires = now + timedelta(hours=SESSION_HOURS)
    parent_expiry = found[1].expires_at
    if parent_expiry is not None:
        expires = min(expires, parent_expiry)
    plaintext, _ = repo.create_token(s, user.id, SESSION_NAME, expires_at=expires)
    return plaintext


def logout(s: Session, token: str) -> str | None:
    """Revoke the session ``token`` (an API token used this way is left alone); the hash of
    what was revoked, for the API processes' token caches."""
    found = repo.find_token(s, token)
    if found is None or found[1].name != SESSION_NAME:
        return None
    repo.revoke_token(s, found[1].id)
    return found[1].token_hash
