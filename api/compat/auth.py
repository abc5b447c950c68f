"""``/auth``: log in with an email and an API token, log out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, Field

from ..deps import CurrentUser, IdentityFirstRoute, SessionDep, forget_token
from . import sessions
from .envelope import BAD_CLIENT_TOKEN, CompatError, ok

router = APIRouter(prefix="/auth", tags=["learnware client"], route_class=IdentityFirstRoute)


class TokenLogin(BaseModel):
    email: str = Field(min_length=1, max_length=254)
    token: str = Field(min_length=1, max_length=256)


@router.post("/login_by_token")
def login_by_token(session: SessionDep, body: TokenLogin) -> dict[str, Any]:
    """``data.token``: a session token for ``Authorization: Bearer``, valid for a day."""
    token = sessions.login(session, body.email, body.token)
    if token is None:
        raise CompatError(
            BAD_CLIENT_TOKEN,
            "the email and token do not match an active API token of this market "
            "(wharf admin token create, or an admin of this market, gives one)",
            status=401,
        )
    session.commit()
    return ok({"token": token})


@router.post("/logout")
def logout(
    session: SessionDep, user: CurrentUser, authorization: Annotated[str, Header()]
) -> dict[str, Any]:
    """Revoke the session token the request carries."""
    revoked = sessions.logout(session, authorization.partition(" ")[2].strip())
    session.commit()
    if revoked is not None:
        forget_token(revoked)
    return ok()
